"""Save and load models as safetensors (no pickle) with the architecture as JSON in the header.

File layout: the tensors of ``model.state_dict()``; header metadata
``{"n2n_architecture": json(model.config()), "n2n_metadata": json(metadata)}``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from .atomic import atomic_write
from .module import Module

ARCH_KEY = "n2n_architecture"
META_KEY = "n2n_metadata"


def save(model: Module, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (weights + architecture) and JSON-able ``metadata`` atomically to ``path``."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    header = {ARCH_KEY: json.dumps(model.config()), META_KEY: json.dumps(metadata or {})}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))


def read_metadata(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(architecture, metadata) from the file's header, without reading the tensors."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no weights file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a safetensors file: {e}") from None
    if ARCH_KEY not in header:
        raise ValueError(f"{path} has no n2n architecture description")
    return json.loads(header[ARCH_KEY]), json.loads(header.get(META_KEY, "{}"))


def load(path: str | os.PathLike[str], device: torch.device | str | None = None,
         dtype: torch.dtype | None = None) -> Module:
    """Rebuild the model saved at ``path`` from that file alone."""
    return load_with_metadata(path, device, dtype)[0]


def load_with_metadata(path: str | os.PathLike[str], device: torch.device | str | None = None,
                       dtype: torch.dtype | None = None) -> tuple[Module, dict[str, Any]]:
    arch, meta = read_metadata(path)
    try:
        model = Module.from_config(arch)
        state = load_file(str(path))
    except (TypeError, KeyError, AttributeError, SafetensorError) as e:
        raise ValueError(f"{path}: broken model file ({type(e).__name__}: {e})") from None
    model.load_state_dict({k: v.to(model.state_dict()[k].dtype) if k in model.state_dict() else v
                           for k, v in state.items()})
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model, meta
