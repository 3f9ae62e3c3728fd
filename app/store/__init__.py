"""The shared state: one SQLAlchemy Core layer over SQLite (default) or PostgreSQL, with Alembic
migrations beside it. Jobs, the model registry with its cards, datasets' metadata and the active
model live in the database; large files (datasets, checkpoints, weights) under N2N_DATA_DIR.
"""

from __future__ import annotations

from pathlib import Path

from .database import Database, StoreConfigError, open_database
from .datasets import DatasetRows
from .jobs import JobStore
from .migrate import upgrade
from .models import ModelGone, ModelInUse, ModelRows

__all__ = ["Database", "DatasetRows", "JobStore", "ModelGone", "ModelInUse", "ModelRows", "StoreConfigError",
           "open_database", "open_store"]


def open_store(url: str | None, data_dir: Path) -> Database:
    """The configured database, connected and migrated to the newest schema (what every process runs
    on start). Raises StoreConfigError (one line, no password) when N2N_DATABASE_URL is wrong."""
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    db = open_database(url, data_dir)
    upgrade(db, data_dir)
    return db
