"""Tests of the HTTP layer (app.api): routes, errors, limits, headers."""
