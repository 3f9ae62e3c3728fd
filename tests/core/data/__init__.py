"""Tests of photographs and data (n2n_core.data)."""
