"""Losses: value and vjp with respect to the prediction."""

from __future__ import annotations

from torch import Tensor

from .checks import check_same_shape
from .module import as_data


def _checked_pair(y: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """(y, target) detached, after checking they have one non-empty shape."""
    check_same_shape("MSE", y, target, "prediction and target")
    if y.numel() == 0:
        raise ValueError(f"MSE: empty prediction and target of shape {tuple(y.shape)}: the mean of no values is "
                         "undefined (a batch needs N >= 1)")
    return as_data(y), as_data(target)


class MSE:
    """L = mean((y - t)^2);  dL/dy = 2 (y - t) / numel.

    y and target: tensors of one shape with at least one element (an empty batch is a ValueError);
    tensors with requires_grad are taken as plain data.
    """

    def __call__(self, y: Tensor, target: Tensor) -> Tensor:
        y, target = _checked_pair(y, target)
        return (y - target).square().mean()

    def vjp(self, y: Tensor, target: Tensor) -> Tensor:
        y, target = _checked_pair(y, target)
        return (y - target).mul_(2.0 / y.numel())

    def __repr__(self) -> str:
        return "MSE()"
