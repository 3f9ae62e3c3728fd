"""Tests of training and denoise jobs (app.jobs)."""
