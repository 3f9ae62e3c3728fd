"""The shared state: one SQLAlchemy Core layer over SQLite (default) or PostgreSQL, with Alembic
migrations beside it. Jobs, the model registry with its cards, datasets' metadata and the active
model live in the database; large files (datasets, checkpoints, weights) under N2N_DATA_DIR.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from app.store.database import Database, StoreConfigError, database_url, open_database
from app.store.datasets import DatasetRows
from app.store.jobs import JobStore
from app.store.migrate import sqlite_lock, upgrade, upgrade_locked
from app.store.models import ModelGone, ModelInUse, ModelRows
from app.store.status import FINISHED, STATUSES, JobRow, JobStatus, statuses_document

__all__ = ["FINISHED", "STATUSES", "Database", "DatasetRows", "JobRow", "JobStatus", "JobStore", "ModelGone",
           "ModelInUse", "ModelRows", "StoreConfigError", "open_database", "open_store", "statuses_document"]


def open_store(url: str | None, data_dir: Path) -> Database:
    """The configured database, connected and migrated to the newest schema (what every process runs
    on start). Raises StoreConfigError (one line, no password) when N2N_DATABASE_URL is wrong.

    Processes that start together open it one at a time: on SQLite the first connection (which turns a
    new file to WAL mode) and the migration run under a file lock beside the database, on PostgreSQL the
    migration under an advisory lock; the others wait for it (see ``migrate``)."""
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    sa_url = database_url(url, data_dir)
    if sa_url.get_backend_name() == "sqlite":
        with sqlite_lock(sa_url):
            return _opened_and_migrated(url, data_dir, upgrade_locked)
    return _opened_and_migrated(url, data_dir, upgrade)


def _opened_and_migrated(url: str | None, data_dir: Path, migrate: Callable[..., object]) -> Database:
    """The database opened and brought to the newest schema by ``migrate``; closed again if that fails."""
    db = open_database(url, data_dir)
    try:
        migrate(db, data_dir)
    except BaseException:
        db.dispose()
        raise
    return db
