"""Uploaded datasets' metadata in the shared database (their files are under N2N_DATA_DIR/datasets)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from app.store.database import Database
from app.store.tables import datasets


class DatasetRows:
    def __init__(self, db: Database) -> None:
        self.engine = db.engine

    def add(self, info: dict[str, Any]) -> None:
        with self.engine.begin() as c:
            c.execute(datasets.insert().values(id=info["id"], kind=info["kind"], images=info["images"],
                                               bytes=info["bytes"], created_at=time.time()))

    def all(self) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            rows = c.execute(select(datasets.c.id, datasets.c.kind, datasets.c.images, datasets.c.bytes)
                             .order_by(datasets.c.id)).all()
        return [dict(r._mapping) for r in rows]

    def kind(self, dataset_id: str) -> str | None:
        """'clean' or 'pairs'; None for an unknown dataset."""
        with self.engine.connect() as c:
            return c.execute(select(datasets.c.kind).where(datasets.c.id == dataset_id)).scalar()

    def exists(self, dataset_id: str) -> bool:
        with self.engine.connect() as c:
            return c.execute(select(datasets.c.id).where(datasets.c.id == dataset_id)).first() is not None
