"""Registered models: the shipped ones and those trained here, and which one /denoise uses.

Trained models live in ``<data_dir>/models/<id>.safetensors`` with a card ``<id>.json``; both
are written to temporary files and renamed, the card last, so a model is listed only once whole.
The active model id is kept in ``<data_dir>/active.json`` (atomic), and switching it swaps one
reference under a lock: requests in flight finish on the model they started with.
"""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from n2n_core import weights as shipped_weights
from n2n_core.atomic import atomic_write, atomic_write_text
from n2n_core.module import Module
from n2n_core.serialize import load_with_metadata, read_metadata

from .messages import without_paths


class UnknownModel(KeyError):
    pass


class NoActiveModel(RuntimeError):
    pass


class BrokenModel(RuntimeError):
    """A registered weights file that cannot be loaded."""


@dataclass
class Entry:
    id: str
    path: Path
    shipped: bool


class ModelRegistry:
    def __init__(self, data_dir: Path, device: torch.device, startup: str | None = None,
                 cache_bytes: int = 1 << 30) -> None:
        self.dir = Path(data_dir) / "models"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.active_file = Path(data_dir) / "active.json"
        self.device = device
        self.cache_bytes = cache_bytes
        self._lock = threading.Lock()  # guards _loaded and _active; never held while calling out
        self._load_lock = threading.Lock()  # one load at a time, so a model is read once
        self._loaded: OrderedDict[str, Module] = OrderedDict()  # least recently used first
        self._extra: dict[str, Path] = {}
        self._active: tuple[int, str | None] = (-1, None)  # (mtime_ns of active.json, id)
        self._startup = startup

    @property
    def active_id(self) -> str | None:
        """The active model id; active.json is the source of truth (a finished job may switch it)."""
        try:
            mtime = self.active_file.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        with self._lock:
            if mtime != self._active[0]:
                try:
                    self._active = (mtime, json.loads(self.active_file.read_text()).get("active"))
                except (OSError, ValueError):
                    pass
            return self._active[1]

    # -- listing -----------------------------------------------------------------------------
    def entries(self) -> dict[str, Entry]:
        out = {name: Entry(name, p, True) for name, p in shipped_weights.shipped().items()}
        out.update({k: Entry(k, p, True) for k, p in self._extra.items()})
        for card in sorted(self.dir.glob("*.json")):
            w = card.with_suffix(".safetensors")
            if w.exists():
                out[card.stem] = Entry(card.stem, w, False)
        return out

    def entry(self, model_id: str) -> Entry:
        e = self.entries().get(model_id)
        if e is None:
            raise UnknownModel(model_id)
        return e

    def card(self, model_id: str) -> dict[str, Any]:
        e = self.entry(model_id)
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
        return [{"id": e.id, "shipped": e.shipped, "active": e.id == self.active_id, "card": self.card(e.id)}
                for e in self.entries().values()]

    # -- loading and activation ------------------------------------------------------------------
    def get(self, model_id: str | None = None) -> tuple[str, Module]:
        """(id, model) for the given id or the active one; loads on first use (blocking: call it off the
        event loop). Loaded models are kept while their parameters fit in ``cache_bytes``, least recently
        used evicted first; the active model and the one just asked for always stay."""
        active = self.active_id
        mid = model_id or active
        if mid is None:
            raise NoActiveModel("no model is active")
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
                raise BrokenModel(f"model {mid!r} cannot be loaded: {without_paths(str(e))}") from None
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

    def loaded_ids(self) -> list[str]:
        with self._lock:
            return list(self._loaded)

    def activate(self, model_id: str) -> None:
        self.get(model_id)  # load first: a broken model never becomes active
        write_active(self.active_file, model_id, self._startup)

    def load_startup_model(self) -> str:
        """The model to serve at start.

        An activation made through the API (active.json) survives restarts, unless N2N_WEIGHTS
        changed since it was made; otherwise N2N_WEIGHTS (a shipped name or a path), else 'default'.
        """
        spec = self._startup
        if spec and Path(spec).is_file():
            self._extra[Path(spec).name.removesuffix(".safetensors")] = Path(spec)
        saved = {}
        if self.active_file.exists():
            try:
                saved = json.loads(self.active_file.read_text())
            except (OSError, ValueError):
                saved = {}
        if saved.get("active") in self.entries() and saved.get("setting") == spec:
            mid = saved["active"]
        elif spec:
            mid = Path(spec).name.removesuffix(".safetensors") if Path(spec).is_file() else spec
        else:
            mid = shipped_weights.DEFAULT
        self.get(mid)
        write_active(self.active_file, mid, spec)
        return mid

    # -- registration --------------------------------------------------------------------------
    def register(self, weights: Path, card: dict[str, Any]) -> str:
        """Copy a trained model in under a fresh id; weights first, card last, each atomically."""
        return register_model(self.dir, weights, card)


def model_bytes(model: Module) -> int:
    """Memory held by a model's parameters."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


def write_active(active_file: Path, model_id: str, setting: str | None = None) -> None:
    """Persist the active model id, with the N2N_WEIGHTS setting it was chosen under."""
    if setting is None and active_file.exists():
        try:
            setting = json.loads(active_file.read_text()).get("setting")
        except (OSError, ValueError):
            setting = None
    atomic_write_text(active_file, json.dumps({"active": model_id, "setting": setting}))


def register_model(models_dir: Path, weights: Path, card: dict[str, Any]) -> str:
    model_id = "m-" + uuid.uuid4().hex[:10]
    models_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(models_dir / f"{model_id}.safetensors", lambda tmp: shutil.copyfile(weights, tmp))
    atomic_write_text(models_dir / f"{model_id}.json", json.dumps({**card, "id": model_id}, indent=2))
    return model_id
