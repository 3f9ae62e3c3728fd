"""n2n_core: a small deep-learning framework on plain torch tensors, with no autograd.

Every layer computes its own forward pass and its own vector-Jacobian product.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from n2n_core import _moved

_moved.install(__name__)  # the flat module paths of 0.1 (n2n_core.inference.infer, n2n_core.training.train, ...) keep working

# Exported names and the submodule each lives in. They are imported on first use (PEP 562), so that
# `import n2n_core` (and the `n2n` command's --help) does not pay for torch, numpy and PIL.
_EXPORTS = {
    **dict.fromkeys(["Cast", "Concat", "Conv2d", "Identity", "LeakyReLU", "MaxPool2d", "NearestUpsampling",
                     "ReLU", "Residual", "SelfEnsemble", "Sequential", "Sigmoid", "TransposeConv2d"], "nn.layers"),
    "NoiseAdaptive": "inference.noise_adaptive",
    "denoise": "inference.infer",
    "denoise_picture": "inference.infer",
    "MSE": "nn.loss",
    "psnr": "training.metrics",
    "ssim": "training.metrics",
    "Module": "nn.module",
    "SGD": "nn.optim",
    "Adam": "nn.optim",
    "Optimizer": "nn.optim",
    "load": "weights",
    "save": "nn.serialize",
}

if TYPE_CHECKING:  # what type checkers and IDEs see: the eager imports of before
    from n2n_core.inference.infer import denoise, denoise_picture
    from n2n_core.nn.layers import Cast, Concat, Conv2d, Identity, LeakyReLU, MaxPool2d, NearestUpsampling, ReLU, Residual, SelfEnsemble, Sequential, Sigmoid, TransposeConv2d
    from n2n_core.inference.noise_adaptive import NoiseAdaptive
    from n2n_core.nn.loss import MSE
    from n2n_core.training.metrics import psnr, ssim
    from n2n_core.nn.module import Module
    from n2n_core.nn.optim import SGD, Adam, Optimizer
    from n2n_core.nn.serialize import save
    from n2n_core.weights import load


def __getattr__(name: str) -> Any:
    """An exported name (imported from its submodule on first use), or a submodule such as ``n2n_core.nn.layers``."""
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
