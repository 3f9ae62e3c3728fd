"""n2n_core: a small deep-learning framework on plain torch tensors, with no autograd.

Every layer computes its own forward pass and its own vector-Jacobian product.
"""

from .layers import (
    Concat,
    Conv2d,
    Identity,
    LeakyReLU,
    MaxPool2d,
    NearestUpsampling,
    ReLU,
    Residual,
    SelfEnsemble,
    Sequential,
    Sigmoid,
    TransposeConv2d,
)
from .infer import denoise
from .loss import MSE
from .metrics import psnr, ssim
from .module import Module
from .optim import SGD, Adam, Optimizer
from .serialize import load, save

__version__ = "0.1.0"

__all__ = [
    "Module", "Conv2d", "TransposeConv2d", "ReLU", "LeakyReLU", "Sigmoid", "Identity", "NearestUpsampling",
    "Sequential", "Concat", "Residual", "SelfEnsemble", "MaxPool2d", "MSE", "SGD", "Adam", "Optimizer", "save", "load",
    "denoise", "psnr", "ssim",
]
