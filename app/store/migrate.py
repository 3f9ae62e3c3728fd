"""Alembic migrations, run programmatically (no alembic.ini) by the API and by ``n2n worker`` on start.

Several processes may start at once: on PostgreSQL an advisory lock, on SQLite a lock file next to
the database, lets one of them upgrade while the others wait and then find the schema at head.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from .database import Database

MIGRATIONS = Path(__file__).parent / "migrations"
PG_LOCK_KEY = 0x6E326E  # "n2n": the advisory lock that serialises migrations


def alembic_config(db: Database, data_dir: Path) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = db.engine
    cfg.attributes["data_dir"] = Path(data_dir)  # the first migrations import files found there
    return cfg


def upgrade(db: Database, data_dir: Path) -> None:
    """Bring the schema to the newest version (a no-op when it is there already)."""
    with _migration_lock(db):
        command.upgrade(alembic_config(db, data_dir), "head")


@contextmanager
def _migration_lock(db: Database):
    if db.is_postgres:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PG_LOCK_KEY})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_LOCK_KEY})
                conn.commit()
    else:
        lock_path = Path(str(db.url.database) + ".migrate.lock")
        with open(lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
