"""Where the shipped models live and how to find one by name or path."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

PACKAGE = "n2n_weights"  # the repository's weights/ folder as installed by a wheel (pyproject.toml: package-dir)


def _shipped_dir() -> Path:
    """N2N_WEIGHTS_DIR when set; else the repository's ``weights/`` in a source checkout (and an editable
    install); else the installed package ``n2n_weights`` (a wheel ships ``weights/`` as package data)."""
    if "N2N_WEIGHTS_DIR" in os.environ:
        return Path(os.environ["N2N_WEIGHTS_DIR"])
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / "weights").is_dir():
        return checkout / "weights"
    spec = importlib.util.find_spec(PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return checkout / "weights"  # a tree without pyproject.toml (e.g. copied by hand): weights/ beside n2n_core


WEIGHTS_DIR = _shipped_dir()
DEFAULT = "default"


def shipped() -> dict[str, Path]:
    """name -> path of every shipped ``weights/*.safetensors``."""
    if not WEIGHTS_DIR.is_dir():
        return {}
    return {p.name[: -len(".safetensors")]: p for p in sorted(WEIGHTS_DIR.glob("*.safetensors"))
            if not p.name.endswith(".ckpt.safetensors")}


def resolve(spec: str | os.PathLike[str] | None = None) -> Path:
    """A path, or a shipped model's name (default: ``default``) -> an existing weights file."""
    spec = DEFAULT if spec is None else spec
    path = Path(spec)
    if path.is_file():
        return path
    named = shipped().get(str(spec))
    if named is not None:
        return named
    raise ValueError(f"no weights at {spec!r} (shipped models: {', '.join(shipped()) or 'none'})")


def weights_file(spec: str | os.PathLike[str]) -> str | os.PathLike[str]:
    """``spec`` itself when it is a file; else the shipped model it names; else a ValueError naming both."""
    if isinstance(spec, (str, os.PathLike)) and not Path(spec).is_file():
        names = shipped()
        if str(spec) in names:
            return names[str(spec)]
        raise ValueError(f"no weights file at {spec}, and no shipped model of that name (shipped: "
                         f"{', '.join(names) or 'none'})")
    return spec


def load_with_metadata(spec: str | os.PathLike[str] = DEFAULT, device: Any = None, dtype: Any = None) -> tuple[Any, dict]:
    """(model, metadata) of a weights file or a shipped model's name (``default``, ``best``, ``blind``, ...),
    as the CLI's --weights takes it: ``n2n_core.nn.serialize.load_with_metadata`` after the name is resolved,
    with the product's own layer types (``NoiseAdaptive``) known."""
    from n2n_core.inference import noise_adaptive  # noqa: F401  (registers NoiseAdaptive for Module.from_config)
    from n2n_core.nn import serialize

    return serialize.load_with_metadata(weights_file(spec), device, dtype)


def load(spec: str | os.PathLike[str] = DEFAULT, device: Any = None, dtype: Any = None) -> Any:
    """The model of a weights file or a shipped model's name (``n2n_core.load``); see ``load_with_metadata``."""
    return load_with_metadata(spec, device, dtype)[0]
