"""Where the shipped models live and how to find one by name or path."""

from __future__ import annotations

import os
from pathlib import Path

WEIGHTS_DIR = Path(os.environ.get("N2N_WEIGHTS_DIR", Path(__file__).resolve().parents[1] / "weights"))
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
