"""Tests of what the service's rooms share (app.core)."""
