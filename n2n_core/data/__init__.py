"""Photographs and training data: files in and out (images.py, with HEIC/AVIF in heif.py, camera RAW in raw.py,
animated frames in frames.py, metadata.py, image_errors.py), noise models (noise.py), the noise level of a
photo (noise_level.py) and training sets (datasets.py).

May import the framework (n2n_core.nn); knows nothing of training loops, inference or HTTP.
"""

from __future__ import annotations

import importlib
from typing import Any

_SUBMODULES = {"datasets", "frames", "heif", "image_errors", "images", "metadata", "noise", "noise_level", "raw"}


def __getattr__(name: str) -> Any:
    """The names of datasets.py, which was the module ``n2n_core.data`` of 0.1 (``from n2n_core.data import
    open_dataset`` keeps working). New code imports them from ``n2n_core.data.datasets``."""
    if name.startswith("__") or name in _SUBMODULES:  # a submodule not imported yet: the import system finds it
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    datasets = importlib.import_module(f"{__name__}.datasets")
    try:
        return getattr(datasets, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
