"""Registered models: the shipped ones and those trained here, and which one /denoise uses.

Trained models' weights live in ``<data_dir>/models/<id>.safetensors`` (the shared volume), written
to a temporary file and renamed; their cards and the active model id live in the shared database
(``app.store``), the row written last, so a model is listed only once whole. Every replica reads the
active model from the database at most ``ACTIVE_POLL_SECONDS`` apart, so an activation made on any
replica reaches all of them within that time, without a restart. Switching swaps one reference:
requests in flight finish on the model they started with.

Deleting a trained model (``delete``) removes its row first, in a transaction that refuses the active
model (and one a queued or running job starts from): from that commit on, no replica lists or serves it
(each one checks a trained model's row before serving it from its cache). Its files go afterwards: a crash
in between leaves unlisted files behind, never a listed model without its weights.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from n2n_core import weights as shipped_weights
from n2n_core.nn.atomic import atomic_write
from n2n_core.nn.module import Module
from n2n_core.nn.serialize import read_metadata
from n2n_core.weights import load_with_metadata

from app.core.messages import scrub_paths, without_paths
from app.store import Database, ModelGone, ModelInUse, ModelRows, open_store

ACTIVE_POLL_SECONDS = 1.0  # how stale a replica's view of the active model may be
JOB_ID = re.compile(r"j-[0-9a-f]{12}")  # the training job folders a deleted model's files may be in
SIDECARS = (".json", ".history.json", ".history.png", ".ckpt.safetensors")  # beside a model's weights file
log = logging.getLogger("n2n")


class UnknownModel(KeyError):
    pass


class NoActiveModel(RuntimeError):
    pass


class BrokenModel(RuntimeError):
    """A registered weights file that cannot be loaded."""


class ModelProtected(RuntimeError):
    """A model that cannot be deleted (shipped, the active one, or in use); the message says why."""


@dataclass
class Entry:
    id: str
    path: Path
    shipped: bool


class ModelRegistry:
    def __init__(self, data_dir: Path, device: torch.device, startup: str | None = None,
                 cache_bytes: int = 1 << 30, db: Database | None = None) -> None:
        """``db``: the shared store (default: SQLite in ``data_dir``, opened and migrated here)."""
        self.data_dir = Path(data_dir)
        self.dir = self.data_dir / "models"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rows = ModelRows(db or open_store(None, self.data_dir))
        self.device = device
        self.cache_bytes = cache_bytes
        self._lock = threading.Lock()  # guards _loaded and _active; never held while calling out
        self._load_lock = threading.Lock()  # one load at a time, so a model is read once
        self._loaded: OrderedDict[str, Module] = OrderedDict()  # least recently used first
        self._extra: dict[str, Path] = {}
        self._active: tuple[float, str | None] = (-1.0, None)  # (monotonic time read, id)
        self._startup = startup

    @property
    def active_id(self) -> str | None:
        """The active model id. The database is the source of truth (another replica, or a finished job,
        may switch it); it is read again once the last reading is ACTIVE_POLL_SECONDS old."""
        with self._lock:
            read_at, active = self._active
        if time.monotonic() - read_at < ACTIVE_POLL_SECONDS:
            return active
        try:
            active = self.rows.active().get("active")
        except Exception:  # noqa: BLE001 - the database is away: keep serving the model we have
            return active
        with self._lock:
            self._active = (time.monotonic(), active)
        return active

    # -- listing -----------------------------------------------------------------------------
    def entries(self) -> dict[str, Entry]:
        out = {name: Entry(name, p, True) for name, p in shipped_weights.shipped().items()}
        out.update({k: Entry(k, p, True) for k, p in self._extra.items()})
        rows = self.rows.all()
        if self._unlisted_files(rows):
            self.rows.adopt_files(self.data_dir, set(rows))
            rows = self.rows.all()
        for model_id, (rel_path, _card) in rows.items():
            w = self.data_dir / rel_path
            if w.exists():
                out[model_id] = Entry(model_id, w, False)
        return out

    def _unlisted_files(self, rows: dict[str, Any]) -> bool:
        """Whether model files were put under models/ by hand without a row (they are then registered)."""
        return any(card.stem not in rows for card in self.dir.glob("*.json"))

    def entry(self, model_id: str) -> Entry:
        e = self.entries().get(model_id)
        if e is None:
            raise UnknownModel(model_id)
        return e

    def card(self, model_id: str) -> dict[str, Any]:
        e = self.entry(model_id)
        if not e.shipped:
            card = self.rows.all().get(model_id, ("", {}))[1]
        else:
            card_path = e.path.with_suffix(".json")
            card = json.loads(card_path.read_text()) if card_path.exists() else {}
        if not card:
            arch, meta = read_metadata(e.path)
            card = {"name": model_id, "architecture": arch.get("type"), "metadata": meta}
        return card

    def is_loaded(self, model_id: str | None) -> bool:
        with self._lock:
            return model_id in self._loaded

    def describe(self) -> list[dict[str, Any]]:
        """Every model: id, name, shipped, active, card and created_at (None for shipped ones)."""
        rows = self.rows.details()
        active = self.active_id
        out = []
        for e in self.entries().values():
            row = rows.get(e.id) if not e.shipped else None
            card = row["card"] if row is not None else self.card(e.id)
            name = row["name"] if row is not None else str(card.get("name") or e.id)
            out.append({"id": e.id, "name": name, "shipped": e.shipped, "active": e.id == active, "card": card,
                        "created_at": row["created_at"] if row is not None else None})
        return out

    # -- loading and activation ------------------------------------------------------------------
    def get(self, model_id: str | None = None) -> tuple[str, Module]:
        """(id, model) for the given id or the active one; loads on first use (blocking: call it off the
        event loop). Loaded models are kept while their parameters fit in ``cache_bytes``, least recently
        used evicted first; the active model and the one just asked for always stay."""
        active = self.active_id
        mid = model_id or active
        if mid is None:
            raise NoActiveModel("no model is active")
        if not self._still_registered(mid):  # deleted, maybe on another replica: never served again
            self._drop(mid)
            if model_id is not None:
                raise UnknownModel(mid)
            with self._lock:  # this replica's view of the active model is stale: read it again
                self._active = (-1.0, self._active[1])
            fresh = self.active_id
            if fresh is None or fresh == mid:
                raise NoActiveModel(f"the active model {mid!r} is no longer registered")
            return self.get(fresh)
        cached = self._cached(mid)
        if cached is not None:
            return mid, cached
        with self._load_lock:
            cached = self._cached(mid)  # loaded by another request while this one waited
            if cached is not None:
                return mid, cached
            entry = self.entry(mid)
            try:
                model, _ = load_with_metadata(entry.path, device=self.device)
            except (ValueError, OSError) as e:
                why = without_paths(scrub_paths(str(e), self.dir.parent))
                raise BrokenModel(f"model {mid!r} cannot be loaded: {why}") from None
            with self._lock:
                self._loaded[mid] = model
                self._evict(keep={mid, active})
            return mid, model

    def _cached(self, model_id: str) -> Module | None:
        with self._lock:
            model = self._loaded.get(model_id)
            if model is not None:
                self._loaded.move_to_end(model_id)
            return model

    def _evict(self, keep: set[str | None]) -> None:
        """Drop least recently used models (not in ``keep``) until the cache fits; caller holds _lock."""
        for model_id in list(self._loaded):
            if sum(model_bytes(m) for m in self._loaded.values()) <= self.cache_bytes:
                return
            if model_id not in keep:
                del self._loaded[model_id]

    def _still_registered(self, model_id: str) -> bool:
        """Whether the model may be served: a shipped one (or N2N_WEIGHTS), or a trained one whose row is
        still in the database (or files put under models/ by hand, registered here). When the database is
        away, what this replica has keeps being served."""
        if model_id in self._extra or model_id in shipped_weights.shipped():
            return True
        try:
            return self.rows.exists(model_id) or model_id in self.entries()
        except Exception:  # noqa: BLE001 - the database is away: keep serving the models we have
            return True

    def _drop(self, model_id: str) -> None:
        """Forget a loaded model (it was deleted)."""
        with self._lock:
            self._loaded.pop(model_id, None)

    def loaded_ids(self) -> list[str]:
        with self._lock:
            return list(self._loaded)

    def activate(self, model_id: str) -> None:
        self.get(model_id)  # load first: a broken model never becomes active
        try:  # a trained model must still have its row: it may be deleted on another replica meanwhile
            self.rows.set_active(model_id, self._startup, must_exist=not self.entry(model_id).shipped)
        except ModelGone:
            self._drop(model_id)
            raise UnknownModel(model_id) from None
        with self._lock:
            self._active = (time.monotonic(), model_id)

    # -- deletion --------------------------------------------------------------------------------
    def delete(self, model_id: str) -> None:
        """Delete a trained model: its row (the commit point, see the module's docstring), then its files
        (weights and the files beside them, and the folder of the training job that made it).

        UnknownModel for an unknown id; ModelProtected (saying why) for a shipped model, the model the
        service was started with (N2N_WEIGHTS), the active model, or one a queued or running job starts from."""
        entry = self.entry(model_id)
        if model_id in self._extra:
            raise ModelProtected(f"model {model_id!r} is the one the service was started with (N2N_WEIGHTS): "
                                 "it cannot be deleted")
        if entry.shipped:
            raise ModelProtected(f"model {model_id!r} is shipped with the service (weights/): it cannot be deleted")
        if self.rows.active().get("active") == model_id:  # checked again with the row's deletion
            raise ModelProtected(f"model {model_id!r} is the active model: activate another one first "
                                 "(POST /models/{id}/activate)")
        job_id = self.rows.details().get(model_id, {}).get("card", {}).get("job_id")
        # A card file beside the weights (models put there by hand, or by an older n2n) goes first: a
        # leftover weights file without one is never registered again (see entries()).
        try:
            entry.path.with_suffix(".json").unlink(missing_ok=True)
            self.rows.delete(model_id)
        except ModelInUse as e:
            raise ModelProtected(str(e)) from None
        except ModelGone:
            raise UnknownModel(model_id) from None
        self._drop(model_id)
        self._remove_files(entry.path, job_id)

    def _remove_files(self, weights: Path, job_id: Any) -> None:
        """Best effort: a file that cannot be removed is logged (by name only) and left unlisted."""
        targets = [weights] + [weights.with_name(weights.name.removesuffix(".safetensors") + s) for s in SIDECARS]
        for path in targets:
            if path.resolve().parent != self.dir.resolve():
                continue  # only ever files under <data_dir>/models
            try:
                path.unlink(missing_ok=True)
            except OSError as e:
                log.warning("deleted model: could not remove %s: %s", path.name, type(e).__name__)
        if isinstance(job_id, str) and JOB_ID.fullmatch(job_id):
            shutil.rmtree(self.data_dir / "jobs" / job_id, ignore_errors=True)

    def load_startup_model(self) -> str:
        """The model to serve at start.

        An activation made through the API (kept in the database) survives restarts, unless N2N_WEIGHTS
        changed since it was made; otherwise N2N_WEIGHTS (a shipped name or a path), else 'default'.
        """
        spec = self._startup
        if spec and Path(spec).is_file():
            self._extra[Path(spec).name.removesuffix(".safetensors")] = Path(spec)
        saved = self.rows.active()
        if saved.get("active") in self.entries() and saved.get("setting") == spec:
            mid = saved["active"]
        elif spec:
            mid = Path(spec).name.removesuffix(".safetensors") if Path(spec).is_file() else spec
        else:
            mid = shipped_weights.DEFAULT
        self.get(mid)
        if saved.get("active") != mid or saved.get("setting") != spec:
            self.rows.set_active(mid, spec, keep_setting=False)
        with self._lock:
            self._active = (time.monotonic(), mid)
        return mid

    # -- registration --------------------------------------------------------------------------
    def register(self, weights: Path, card: dict[str, Any], name: str | None = None) -> str:
        """Copy a trained model in under a fresh id; weights first, the row last."""
        return register_model(self.data_dir, self.rows, weights, card, name)


def model_bytes(model: Module) -> int:
    """Memory held by a model's parameters."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


def register_model(data_dir: Path, rows: ModelRows, weights: Path, card: dict[str, Any],
                   name: str | None = None) -> str:
    """Copy ``weights`` under ``<data_dir>/models/<new id>.safetensors`` (atomically), then register it
    with its card and ``name`` (default: the card's) in the database: any replica can serve it from then on."""
    model_id = "m-" + uuid.uuid4().hex[:10]
    models_dir = Path(data_dir) / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(models_dir / f"{model_id}.safetensors", lambda tmp: shutil.copyfile(weights, tmp))
    rows.add(model_id, f"models/{model_id}.safetensors", {**card, "id": model_id}, name)
    return model_id
