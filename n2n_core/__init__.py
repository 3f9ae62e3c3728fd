"""n2n_core: a small deep-learning framework on plain torch tensors, with no autograd.

Every layer computes its own forward pass and its own vector-Jacobian product.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Exported names and the submodule each lives in. They are imported on first use (PEP 562), so that
# `import n2n_core` (and the `n2n` command's --help) does not pay for torch, numpy and PIL.
_EXPORTS = {
    **dict.fromkeys(["Cast", "Concat", "Conv2d", "Identity", "LeakyReLU", "MaxPool2d", "NearestUpsampling", "NoiseAdaptive",
                     "ReLU", "Residual", "SelfEnsemble", "Sequential", "Sigmoid", "TransposeConv2d"], "layers"),
    "denoise": "infer",
    "denoise_picture": "infer",
    "MSE": "loss",
    "psnr": "metrics",
    "ssim": "metrics",
    "Module": "module",
    "SGD": "optim",
    "Adam": "optim",
    "Optimizer": "optim",
    "load": "serialize",
    "save": "serialize",
}

if TYPE_CHECKING:  # what type checkers and IDEs see: the eager imports of before
    from .infer import denoise, denoise_picture
    from .layers import (Cast, Concat, Conv2d, Identity, LeakyReLU, MaxPool2d, NearestUpsampling, NoiseAdaptive, ReLU,
                         Residual, SelfEnsemble, Sequential, Sigmoid, TransposeConv2d)
    from .loss import MSE
    from .metrics import psnr, ssim
    from .module import Module
    from .optim import SGD, Adam, Optimizer
    from .serialize import load, save


def __getattr__(name: str) -> Any:
    """An exported name (imported from its submodule on first use), or a submodule such as ``n2n_core.layers``."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if not name.startswith("_"):
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":  # the submodule exists but an import inside it failed
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__version__ = "0.1.0"

__all__ = [
    "Module", "Conv2d", "TransposeConv2d", "ReLU", "LeakyReLU", "Sigmoid", "Identity", "NearestUpsampling",
    "Sequential", "Concat", "Residual", "SelfEnsemble", "NoiseAdaptive", "Cast", "MaxPool2d", "MSE", "SGD", "Adam", "Optimizer", "save", "load",
    "denoise", "denoise_picture", "psnr", "ssim",
]
