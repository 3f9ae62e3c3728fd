"""Tests of the framework (n2n_core.nn)."""
