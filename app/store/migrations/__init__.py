"""Alembic migrations of the shared store (run by app.store.migrate)."""
