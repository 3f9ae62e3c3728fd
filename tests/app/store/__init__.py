"""Tests of the job and model store (app.store) and start-up."""
