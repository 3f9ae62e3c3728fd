"""Alembic environment: the engine and the data directory come from ``app.store.migrate`` (no alembic.ini)."""

from __future__ import annotations

from alembic import context

from app.store.tables import metadata

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
