"""Tests of training (n2n_core.training)."""
