"""The layers of the framework."""

from .activation import Identity, LeakyReLU, ReLU, Sigmoid
from .adaptive import NoiseAdaptive
from .cast import Cast
from .container import Concat, Residual, Sequential
from .conv import Conv2d, TransposeConv2d
from .ensemble import SelfEnsemble
from .pool import MaxPool2d
from .upsample import NearestUpsampling

__all__ = ["Conv2d", "TransposeConv2d", "ReLU", "LeakyReLU", "Sigmoid", "Identity", "NearestUpsampling", "Sequential",
           "Concat", "Residual", "MaxPool2d", "SelfEnsemble", "NoiseAdaptive", "Cast"]
