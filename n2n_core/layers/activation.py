"""Element-wise activations. Any input shape; outputs keep the input's layout."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..module import VJP, Module, empty_like_grad


def _check(layer: Module, x: Any) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise ValueError(f"{layer!r}: expected a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")


class ReLU(Module):
    """y = max(x, 0);  dx = dy * [y > 0]."""

    def forward(self, x: Tensor) -> Tensor:
        _check(self, x)
        return x.clamp_min(0)

    def forward_and_vjp(self, x: Tensor) -> tuple[Tensor, VJP]:
        y = self.forward(x)

        def vjp(dy: Tensor, need_input_grad: bool = True) -> tuple[Tensor, Tensor, Tensor]:
            e = empty_like_grad(dy)
            return dy.masked_fill(y <= 0, 0), e, e

        return y, vjp


class LeakyReLU(Module):
    """y = x if x > 0 else a*x;  dx = dy if x > 0 else a*dy."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)):
            raise ValueError(f"LeakyReLU: negative_slope must be a number, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def config(self) -> dict[str, Any]:
        return {"type": "LeakyReLU", "negative_slope": self.negative_slope}

    def forward(self, x: Tensor) -> Tensor:
        _check(self, x)
        return torch.where(x > 0, x, x * self.negative_slope)

    def forward_and_vjp(self, x: Tensor) -> tuple[Tensor, VJP]:
        y = self.forward(x)
        positive = x > 0

        def vjp(dy: Tensor, need_input_grad: bool = True) -> tuple[Tensor, Tensor, Tensor]:
            e = empty_like_grad(dy)
            return torch.where(positive, dy, dy * self.negative_slope), e, e

        return y, vjp


class Sigmoid(Module):
    """y = 1 / (1 + exp(-x));  dx = dy * (1 - y) * y."""

    def forward(self, x: Tensor) -> Tensor:
        _check(self, x)
        return torch.sigmoid(x)

    def forward_and_vjp(self, x: Tensor) -> tuple[Tensor, VJP]:
        y = self.forward(x)

        def vjp(dy: Tensor, need_input_grad: bool = True) -> tuple[Tensor, Tensor, Tensor]:
            e = empty_like_grad(dy)
            return dy * (1 - y) * y, e, e

        return y, vjp


class Identity(Module):
    """y = x;  dx = dy."""

    def forward(self, x: Tensor) -> Tensor:
        return x

    def forward_and_vjp(self, x: Tensor) -> tuple[Tensor, VJP]:
        def vjp(dy: Tensor, need_input_grad: bool = True) -> tuple[Tensor, Tensor, Tensor]:
            e = empty_like_grad(dy)
            return dy, e, e

        return x, vjp
