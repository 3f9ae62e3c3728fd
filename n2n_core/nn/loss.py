"""Losses: value and vjp with respect to the prediction."""

from __future__ import annotations

from torch import Tensor

from n2n_core.nn.checks import check_same_shape
from n2n_core.nn.module import as_data


def _checked_pair(y: Tensor, target: Tensor, loss: str = "MSE") -> tuple[Tensor, Tensor]:
    """(y, target) detached, after checking they have one non-empty shape."""
    check_same_shape(loss, y, target, "prediction and target")
    if y.numel() == 0:
        raise ValueError(f"{loss}: empty prediction and target of shape {tuple(y.shape)}: the mean of no values is "
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


class Neighbor2NeighborLoss:
    """The Neighbor2Neighbor loss (Huang et al., 2021) of the network's output y on one sub-sampled image:

        L  = mean((y - t)^2) + gamma * mean((y - t - r)^2)
        dL/dy = 2 (y - t) / numel + 2 gamma (y - t - r) / numel

    t: the other sub-sampled image (the noisy target); r = g1(f(x)) - g2(f(x)), the same two
    sub-samplings of the network's output on the whole image, taken as a constant (no gradient flows
    through it, as in the paper). The second term, the regulariser, makes up for the two sub-images
    not showing exactly the same scene. y, t and r share one shape.
    """

    def __init__(self, gamma: float) -> None:
        if not gamma >= 0:
            raise ValueError(f"Neighbor2NeighborLoss: gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)

    def _checked(self, y: Tensor, target: Tensor, regulariser_target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        y, target = _checked_pair(y, target, "Neighbor2NeighborLoss")
        check_same_shape("Neighbor2NeighborLoss", y, regulariser_target, "prediction and regulariser target")
        return y, target, as_data(regulariser_target)

    def __call__(self, y: Tensor, target: Tensor, regulariser_target: Tensor) -> Tensor:
        y, target, reg = self._checked(y, target, regulariser_target)
        diff = y - target
        return diff.square().mean() + self.gamma * (diff - reg).square().mean()

    def vjp(self, y: Tensor, target: Tensor, regulariser_target: Tensor) -> Tensor:
        y, target, reg = self._checked(y, target, regulariser_target)
        diff = y - target
        return (diff - reg).mul_(self.gamma).add_(diff).mul_(2.0 / y.numel())

    def __repr__(self) -> str:
        return f"Neighbor2NeighborLoss(gamma={self.gamma:g})"
