"""Tests of the services (app.services)."""
