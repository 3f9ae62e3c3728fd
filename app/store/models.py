"""The model registry's rows and the active model, in the shared database.

Weights live on the shared volume (``path`` is relative to N2N_DATA_DIR, so hosts may mount it
anywhere); the card and the active model live here, so every replica sees the same registry.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from .database import Database
from .tables import models, settings

ACTIVE_KEY = "active_model"


class ModelRows:
    def __init__(self, db: Database) -> None:
        self.engine = db.engine

    def all(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """{id: (path relative to the data directory, card)}"""
        with self.engine.connect() as c:
            rows = c.execute(select(models.c.id, models.c.path, models.c.card).order_by(models.c.id)).all()
        return {mid: (path, json.loads(card)) for mid, path, card in rows}

    def add(self, model_id: str, rel_path: str, card: dict[str, Any]) -> bool:
        """Register a model; False when the id is taken already (left as it was)."""
        try:
            with self.engine.begin() as c:
                c.execute(models.insert().values(id=model_id, path=rel_path, card=json.dumps(card),
                                                 created_at=time.time()))
        except IntegrityError:
            return False
        return True

    def adopt_files(self, data_dir: Path, known: set[str]) -> None:
        """Register model files put under ``<data_dir>/models`` by hand (a card <id>.json beside
        <id>.safetensors) that have no row yet."""
        for card in (Path(data_dir) / "models").glob("*.json"):
            weights = card.with_suffix(".safetensors")
            if card.stem in known or not weights.exists():
                continue
            try:
                content = json.loads(card.read_text())
            except (OSError, ValueError):
                content = {}
            self.add(card.stem, f"models/{weights.name}", content)

    # -- the active model --------------------------------------------------------------------------
    def active(self) -> dict[str, Any]:
        """{"active": id or None, "setting": the N2N_WEIGHTS it was chosen under}"""
        with self.engine.connect() as c:
            value = c.execute(select(settings.c.value).where(settings.c.key == ACTIVE_KEY)).scalar()
        try:
            return json.loads(value) if value else {}
        except ValueError:
            return {}

    def set_active(self, model_id: str, setting: str | None = None, keep_setting: bool = True) -> None:
        """Make ``model_id`` the active model; with ``keep_setting``, the N2N_WEIGHTS it was chosen under
        stays what it was (unless ``setting`` is given)."""
        with self.engine.begin() as c:
            old = c.execute(select(settings.c.value).where(settings.c.key == ACTIVE_KEY)).scalar()
            if setting is None and keep_setting and old:
                try:
                    setting = json.loads(old).get("setting")
                except ValueError:
                    setting = None
            value = json.dumps({"active": model_id, "setting": setting, "at": time.time()})
            if old is None:
                try:
                    with c.begin_nested():  # another replica may insert the first row at the same moment
                        c.execute(settings.insert().values(key=ACTIVE_KEY, value=value))
                    return
                except IntegrityError:
                    pass
            c.execute(update(settings).where(settings.c.key == ACTIVE_KEY).values(value=value))
