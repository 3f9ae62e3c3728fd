"""Tests of inference (n2n_core.inference)."""
