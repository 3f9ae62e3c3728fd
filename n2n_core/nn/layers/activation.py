"""Element-wise activations. Any input shape; outputs keep the input's layout.

Each is ``Pointwise`` for the layer protocol (no reach, no own activations, streamed band by band)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from n2n_core.nn.module import VJP, Module, Pointwise, empty_like_grad


def _check(layer: Module, x: Any) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise ValueError(f"{layer!r}: expected a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")


class ReLU(Pointwise, Module):
    """y = max(x, 0);  dx = dy * [y > 0] = dy * sign(y)  (y >= 0, so sign(y) is the 0/1 mask)."""

    supports_inplace = True

    def forward(self, x: Tensor) -> Tensor:
        _check(self, x)
        return x.clamp_min(0)

    def forward_inplace(self, x: Tensor) -> Tensor:
        _check(self, x)
        return x.clamp_min_(0)

    def epilogue(self) -> Callable[[Tensor], Tensor]:
        return self.forward_inplace

    def _forward_and_vjp(self, x: Tensor) -> tuple[Tensor, VJP]:
        return self._vjp_from_output(self.forward(x))

    def _forward_and_vjp_inplace(self, x: Tensor) -> tuple[Tensor, VJP]:
        return self._vjp_from_output(self.forward_inplace(x))

    @staticmethod
    def _vjp_from_output(y: Tensor) -> tuple[Tensor, VJP]:
        def vjp(dy: Tensor, need_input_grad: bool = True) -> tuple[Tensor, Tensor, Tensor]:
            e = empty_like_grad(dy)
            return y.sign().mul_(dy), e, e

        return y, vjp


class LeakyReLU(Pointwise, Module):
    """y = x * f,  dx = dy * f,  with f = 1 where x > 0 and f = a elsewhere.

    For 0 <= a <= 1, f = max(sign(x), a) exactly (two cheap element-wise ops, no boolean masks).
    """

    supports_inplace = True

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)):
            raise ValueError(f"LeakyReLU: negative_slope must be a number, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def config(self) -> dict[str, Any]:
        return {"type": "LeakyReLU", "negative_slope": self.negative_slope}

    def _factor(self, x: Tensor) -> Tensor:
        a = self.negative_slope
        if 0.0 <= a <= 1.0:
            return x.sign().clamp_min_(a)
        return torch.full_like(x, a).masked_fill_(x > 0, 1.0)

    def forward(self, x: Tensor) -> Tensor:
        _check(self, x)
        a = self.negative_slope
        return torch.maximum(x, x * a) if 0.0 <= a <= 1.0 else x * self._factor(x)

    def forward_inplace(self, x: Tensor) -> Tensor:
        _check(self, x)
        a = self.negative_slope
        return torch.maximum(x, x * a, out=x) if 0.0 <= a <= 1.0 else x.mul_(self._factor(x))

    def epilogue(self) -> Callable[[Tensor], Tensor]:
        return self.forward_inplace

    def _forward_and_vjp(self, x: Tensor) -> tuple[Tensor, VJP]:
        return self._scaled_with_vjp(x, inplace=False)

    def _forward_and_vjp_inplace(self, x: Tensor) -> tuple[Tensor, VJP]:
        return self._scaled_with_vjp(x, inplace=True)

    def _scaled_with_vjp(self, x: Tensor, inplace: bool) -> tuple[Tensor, VJP]:
        _check(self, x)
        factor = self._factor(x)
        y = x.mul_(factor) if inplace else x * factor

        def vjp(dy: Tensor, need_input_grad: bool = True) -> tuple[Tensor, Tensor, Tensor]:
            e = empty_like_grad(dy)
            return dy * factor, e, e

        return y, vjp


class Sigmoid(Pointwise, Module):
    """y = 1 / (1 + exp(-x));  dx = dy * (1 - y) * y."""

    supports_inplace = True

    def forward(self, x: Tensor) -> Tensor:
        _check(self, x)
        return torch.sigmoid(x)

    def forward_inplace(self, x: Tensor) -> Tensor:
        _check(self, x)
        return x.sigmoid_()

    def epilogue(self) -> Callable[[Tensor], Tensor]:
        return self.forward_inplace

    def _forward_and_vjp(self, x: Tensor) -> tuple[Tensor, VJP]:
        return self._vjp_from_output(self.forward(x))

    def _forward_and_vjp_inplace(self, x: Tensor) -> tuple[Tensor, VJP]:
        return self._vjp_from_output(self.forward_inplace(x))

    @staticmethod
    def _vjp_from_output(y: Tensor) -> tuple[Tensor, VJP]:
        def vjp(dy: Tensor, need_input_grad: bool = True) -> tuple[Tensor, Tensor, Tensor]:
            e = empty_like_grad(dy)
            return (1 - y).mul_(y).mul_(dy), e, e

        return y, vjp


class Identity(Pointwise, Module):
    """y = x;  dx = dy."""

    def forward(self, x: Tensor) -> Tensor:
        return x

    def _forward_and_vjp(self, x: Tensor) -> tuple[Tensor, VJP]:
        def vjp(dy: Tensor, need_input_grad: bool = True) -> tuple[Tensor, Tensor, Tensor]:
            e = empty_like_grad(dy)
            return dy, e, e

        return x, vjp
