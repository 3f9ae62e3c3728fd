"""Losses: value and vjp with respect to the prediction."""

from __future__ import annotations

from torch import Tensor

from .checks import check_same_shape


class MSE:
    """L = mean((y - t)^2);  dL/dy = 2 (y - t) / numel."""

    def __call__(self, y: Tensor, target: Tensor) -> Tensor:
        check_same_shape("MSE", y, target, "prediction and target")
        return (y - target).square().mean()

    def vjp(self, y: Tensor, target: Tensor) -> Tensor:
        check_same_shape("MSE", y, target, "prediction and target")
        return (y - target).mul_(2.0 / y.numel())

    def __repr__(self) -> str:
        return "MSE()"
