"""The model registry's rows and the active model, in the shared database.

Weights live on the shared volume (``path`` is relative to N2N_DATA_DIR, so hosts may mount it
anywhere); the card and the active model live here, so every replica sees the same registry.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from app.services.model_names import name_of_card
from app.store.database import Database
from app.store.status import UNFINISHED
from app.store.tables import jobs, models, settings

ACTIVE_KEY = "active_model"


class ModelInUse(RuntimeError):
    """A model that may not be deleted now; the message says why."""


class ModelGone(LookupError):
    """A model id without a row (never registered, or deleted meanwhile)."""


class ModelRows:
    def __init__(self, db: Database) -> None:
        self.engine = db.engine

    def all(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """{id: (path relative to the data directory, card)}"""
        with self.engine.connect() as c:
            rows = c.execute(select(models.c.id, models.c.path, models.c.card).order_by(models.c.id)).all()
        return {mid: (path, json.loads(card)) for mid, path, card in rows}

    def details(self) -> dict[str, dict[str, Any]]:
        """{id: {"path", "card", "name", "created_at"}}, ordered by id."""
        with self.engine.connect() as c:
            rows = c.execute(select(models.c.id, models.c.path, models.c.card, models.c.name, models.c.created_at)
                             .order_by(models.c.id)).all()
        return {r.id: {"path": r.path, "card": json.loads(r.card), "created_at": r.created_at,
                       "name": r.name or name_of_card(json.loads(r.card), r.created_at)} for r in rows}

    def exists(self, model_id: str) -> bool:
        with self.engine.connect() as c:
            return c.execute(select(models.c.id).where(models.c.id == model_id)).first() is not None

    def add(self, model_id: str, rel_path: str, card: dict[str, Any], name: str | None = None) -> bool:
        """Register a model under ``name`` (default: from its card, see ``name_of_card``), which the stored
        card carries too; False when the id is taken already (left as it was)."""
        now = time.time()
        name = name or name_of_card(card, now)
        try:
            with self.engine.begin() as c:
                c.execute(models.insert().values(id=model_id, path=rel_path, card=json.dumps({**card, "name": name}),
                                                 created_at=now, name=name))
        except IntegrityError:
            return False
        return True

    def delete(self, model_id: str) -> None:
        """Remove the model's row: the moment it is gone for every replica. Refused (ModelInUse, saying
        why) while it is the active model or the init_model of a queued or running job; ModelGone when
        there is no such row.

        The transaction first locks the active-model setting (PostgreSQL: FOR UPDATE; SQLite: every
        transaction is BEGIN IMMEDIATE), as ``set_active`` does, so a model cannot be activated on one
        replica while it is deleted on another."""
        with self.engine.begin() as c:
            value = c.execute(select(settings.c.value).where(settings.c.key == ACTIVE_KEY).with_for_update()).scalar()
            if _active_of(value) == model_id:
                raise ModelInUse(f"model {model_id!r} is the active model: activate another one first "
                                 "(POST /models/{id}/activate)")
            users = [job_id for job_id, params in c.execute(
                select(jobs.c.id, jobs.c.params).where(jobs.c.status.in_([s.value for s in UNFINISHED]))).all()
                if _init_model_of(params) == model_id]
            if users:
                raise ModelInUse(f"model {model_id!r} is the init_model of job{'s' if len(users) > 1 else ''} "
                                 f"{', '.join(sorted(users))}, not finished yet: cancel or wait for "
                                 f"{'them' if len(users) > 1 else 'it'} first")
            if c.execute(delete(models).where(models.c.id == model_id)).rowcount == 0:
                raise ModelGone(model_id)

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

    def set_active(self, model_id: str, setting: str | None = None, keep_setting: bool = True,
                   must_exist: bool = False) -> None:
        """Make ``model_id`` the active model; with ``keep_setting``, the N2N_WEIGHTS it was chosen under
        stays what it was (unless ``setting`` is given). ``must_exist``: a model with a row (a trained one),
        checked under the same lock as ``delete`` takes: ModelGone when it was deleted meanwhile."""
        with self.engine.begin() as c:
            old = c.execute(select(settings.c.value).where(settings.c.key == ACTIVE_KEY).with_for_update()).scalar()
            if must_exist and c.execute(select(models.c.id).where(models.c.id == model_id)).first() is None:
                raise ModelGone(model_id)
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


def _active_of(value: str | None) -> str | None:
    """The model id in the stored active-model setting."""
    try:
        return json.loads(value).get("active") if value else None
    except (ValueError, AttributeError):
        return None


def _init_model_of(params: str) -> str | None:
    """The init_model in a job's stored params."""
    try:
        return json.loads(params).get("init_model")
    except (ValueError, AttributeError):
        return None
