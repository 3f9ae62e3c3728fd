"""The layers of the framework."""

from n2n_core.nn.layers.activation import Identity, LeakyReLU, ReLU, Sigmoid
from n2n_core.nn.layers.cast import Cast
from n2n_core.nn.layers.container import Concat, Residual, Sequential
from n2n_core.nn.layers.conv import Conv2d, TransposeConv2d
from n2n_core.nn.layers.ensemble import SelfEnsemble
from n2n_core.nn.layers.pool import MaxPool2d
from n2n_core.nn.layers.upsample import NearestUpsampling

__all__ = ["Conv2d", "TransposeConv2d", "ReLU", "LeakyReLU", "Sigmoid", "Identity", "NearestUpsampling", "Sequential",
           "Concat", "Residual", "MaxPool2d", "SelfEnsemble", "Cast"]
