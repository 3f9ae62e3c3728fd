"""Alembic migrations, run programmatically (no alembic.ini) by the API and by ``n2n worker`` on start.

Several processes may start at once (replicas and workers of one cluster, issue 22): one of them
upgrades while the others wait, then find the schema at head. On PostgreSQL an advisory lock
serialises the migrations; on SQLite an exclusive lock on a file next to the database serialises
the whole opening (``open_store``): the first connection, which turns a new file to WAL mode, and the
migration.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import URL

from app.store.database import Database

MIGRATIONS = Path(__file__).parent / "migrations"
PG_LOCK_KEY = 0x6E326E  # "n2n": the advisory lock that serialises migrations
log = logging.getLogger("n2n")


def alembic_config(db: Database, data_dir: Path) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = db.engine
    cfg.attributes["data_dir"] = Path(data_dir)  # the first migrations import files found there
    return cfg


def upgrade(db: Database, data_dir: Path) -> None:
    """Bring the schema to the newest version (a no-op when it is there already), one process at a time."""
    with pg_migration_lock(db) if db.is_postgres else sqlite_lock(db.url):
        upgrade_locked(db, data_dir)


def upgrade_locked(db: Database, data_dir: Path) -> None:
    """``upgrade`` for a caller that holds the lock already."""
    command.upgrade(alembic_config(db, data_dir), "head")


def sqlite_lock_path(url: URL) -> Path | None:
    """The lock file beside an SQLite database file (None for an in-memory database)."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(str(url.database) + ".migrate.lock")


@contextmanager
def sqlite_lock(url: URL) -> Iterator[None]:
    """An exclusive ``flock`` on the lock file beside the SQLite database, held by one process at a time
    (the kernel drops it when its holder dies); the others wait, saying so once."""
    path = sqlite_lock_path(url)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another n2n process to open the store")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def pg_migration_lock(db: Database) -> Iterator[None]:
    """A session-level advisory lock on PostgreSQL, on a connection of its own for the migration's time."""
    with db.engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PG_LOCK_KEY})
        conn.commit()  # the lock belongs to the session, not to a transaction left open meanwhile
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_LOCK_KEY})
            conn.commit()
