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

from n2n_core.nn.atomic import atomic_write
from n2n_core.nn.module import Module

ARCH_KEY = "n2n_architecture"
META_KEY = "n2n_metadata"
#: deepest nesting of objects and arrays accepted in the header's JSON (the shipped U-Nets need 34;
#: 200 levels are about 100 nested modules, which Module.from_config rebuilds well within Python's
#: recursion limit).
MAX_JSON_DEPTH = 200


def save(model: Module, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (weights + architecture) and JSON-able ``metadata`` atomically to ``path``.

    A tensor held at several places (a shared module, tied weights) is written once per name.
    """
    tensors = separate_cpu_tensors(model.state_dict())
    header = {ARCH_KEY: json.dumps(model.config()), META_KEY: json.dumps(metadata or {})}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))


def separate_cpu_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, copied where two names would share memory (safetensors refuses that)."""
    out: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for k, v in state.items():
        t = v.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in storages:
            t = t.clone()
            ptr = t.untyped_storage().data_ptr()
        storages.add(ptr)
        out[k] = t
    return out


def _json_depth(value: Any) -> int:
    """Nesting depth of objects and arrays in a parsed JSON value (iterative: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def _parse_header_json(path: Path, what: str, text: str) -> dict[str, Any]:
    """The JSON object ``text`` (the file's ``what``); ValueError naming the file if it is anything else.

    Invalid JSON, JSON nested deeper than ``MAX_JSON_DEPTH`` (which would exhaust the recursion
    limit of the parser or of ``Module.from_config``) and non-objects are all rejected.
    """
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{path}: the {what} in the header is not valid JSON ({type(e).__name__}: {e})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: the {what} in the header must be a JSON object, got {type(value).__name__}")
    if _json_depth(value) > MAX_JSON_DEPTH:
        raise ValueError(f"{path}: the {what} in the header is nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def read_metadata(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(architecture, metadata) from the file's header, without reading the tensors.

    Both must be JSON objects; anything else (invalid or too deeply nested JSON included) is a
    ValueError naming the file.
    """
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
    arch = _parse_header_json(path, "architecture", header[ARCH_KEY])
    return arch, _parse_header_json(path, "metadata", header.get(META_KEY, "{}"))


def load(path: str | os.PathLike[str], device: torch.device | str | None = None,
         dtype: torch.dtype | None = None) -> Module:
    """Rebuild the model saved at ``path`` from that file alone (``n2n_core.load`` also takes a shipped
    model's name)."""
    return load_with_metadata(path, device, dtype)[0]


def load_with_metadata(path: str | os.PathLike[str], device: torch.device | str | None = None,
                       dtype: torch.dtype | None = None) -> tuple[Module, dict[str, Any]]:
    """(model, metadata) rebuilt from the weights file ``path``; any flaw of the file is a ValueError naming it.

    Only public layer types (``Module.registry``) are built from the architecture.
    """
    if not Path(path).is_file():
        raise ValueError(f"no weights file at {path}")
    arch, meta = read_metadata(path)
    try:
        model = Module.from_config(arch)
        state = load_file(str(path))
        own = model.state_dict()
        model.load_state_dict({k: v.to(own[k].dtype) if k in own else v for k, v in state.items()})
    except (TypeError, KeyError, AttributeError, ValueError, RecursionError, SafetensorError) as e:
        raise ValueError(f"{path}: broken model file ({type(e).__name__}: {e})") from None
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model, meta
