"""Training methods: what one step computes from a batch, given the network.

- ``Noise2Noise`` (Lehtinen et al., 2018): the batch is (noisy input, another noisy shot of the same
  patch); L = mean((f(input) - target)^2).
- ``Neighbor2Neighbor`` (Huang et al., 2021): the batch holds single noisy patches x. Two images are
  sub-sampled from each (``functional.neighbor``), g1(x) and g2(x), and

      L = mean((f(g1 x) - g2 x)^2) + gamma_t * mean((f(g1 x) - g2 x - (g1 f(x) - g2 f(x)))^2)

  with f(x), the network on the whole patch, a constant (no gradient), and gamma_t ramped linearly
  from 0 at the first step to ``gamma`` at the last, as in the paper.

A step's randomness comes from (seed, step) alone and is drawn for the whole global batch before a
rank takes its rows, so one process and several reach the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from n2n_core.nn.functional.neighbor import check_cell, neighbour_indices, subsample
from n2n_core.nn.loss import MSE, Neighbor2NeighborLoss
from n2n_core.nn.module import Module

METHODS = ("noise2noise", "neighbor2neighbor")
_SUBSAMPLER_STREAM = 0x4E32_4E42  # keeps the sub-sampler's draws apart from the batch loader's


@dataclass(frozen=True)
class StepContext:
    """Where a step sits: its index in a run of ``steps``, the run's seed, and this rank's rows [lo, hi)
    of a global batch of ``batch_size``."""

    step: int
    steps: int
    seed: int
    batch_size: int
    rows: tuple[int, int]


class TrainingMethod(Protocol):
    name: str

    def train_step(self, model: Module, inputs: Tensor, targets: Tensor, context: StepContext) -> Tensor:
        """Run the forward pass and vjp (the model's gradients are stored) and return the loss, a 0-d tensor."""
        ...

    def network_patch(self, patch: int) -> int:
        """The side of the images the network trains on, for batches of ``patch`` x ``patch`` crops."""
        ...

    def settings(self) -> dict[str, Any]:
        """The method and its settings, as a model card records them."""
        ...


class Noise2Noise:
    """L = mean((f(input) - target)^2), the target another noisy shot of the same scene."""

    name = "noise2noise"

    def __init__(self) -> None:
        self.loss = MSE()

    def train_step(self, model: Module, inputs: Tensor, targets: Tensor, context: StepContext) -> Tensor:
        y = model.forward_and_backward(inputs, lambda out: self.loss.vjp(out, targets))
        return self.loss(y, targets)

    def network_patch(self, patch: int) -> int:
        return patch

    def settings(self) -> dict[str, Any]:
        return {"method": self.name}


class Neighbor2Neighbor:
    """Single noisy photos: two neighbour sub-samplings of each patch, and the regulariser (module docstring).

    gamma: the regulariser's final weight (the paper's 2); cell: the sub-sampling cell's side (2 in the
    paper, even; wider cells take pixels further apart, against spatially correlated noise).
    """

    name = "neighbor2neighbor"

    def __init__(self, gamma: float = 2.0, cell: int = 2) -> None:
        if not gamma >= 0:
            raise ValueError(f"neighbor2neighbor: gamma must be >= 0, got {gamma}")
        check_cell(cell, cell, cell, "neighbor2neighbor")
        self.gamma, self.cell = float(gamma), int(cell)

    def gamma_at(self, step: int, steps: int) -> float:
        """gamma_t = gamma * step / steps: 0 at the first step, ``gamma`` at the last."""
        return self.gamma * step / max(1, steps)

    def train_step(self, model: Module, inputs: Tensor, targets: Tensor, context: StepContext) -> Tensor:
        batch, _, height, width = inputs.shape
        check_cell(self.cell, height, width, "neighbor2neighbor")
        generator = torch.Generator().manual_seed(context.seed * 1_000_003 + context.step + _SUBSAMPLER_STREAM)
        first, second = neighbour_indices(context.batch_size, height, width, self.cell, generator)
        lo, hi = context.rows
        first, second = first[lo:hi].to(inputs.device), second[lo:hi].to(inputs.device)
        whole = model(inputs)  # the regulariser's f(x): forward only, no gradient
        regulariser_target = subsample(whole, first).sub_(subsample(whole, second))
        del whole
        sub_input, sub_target = subsample(inputs, first), subsample(inputs, second)
        loss = Neighbor2NeighborLoss(self.gamma_at(context.step, context.steps))
        y = model.forward_and_backward(sub_input, lambda out: loss.vjp(out, sub_target, regulariser_target))
        return loss(y, sub_target, regulariser_target)

    def network_patch(self, patch: int) -> int:
        return patch // self.cell

    def settings(self) -> dict[str, Any]:
        return {"method": self.name, "gamma": self.gamma, "cell": self.cell,
                "gamma_schedule": "linear from 0 at the first step to gamma at the last"}


def make_method(name: str, gamma: float = 2.0, cell: int = 2) -> TrainingMethod:
    """The training method called ``name`` (one of ``METHODS``)."""
    if name == "noise2noise":
        return Noise2Noise()
    if name == "neighbor2neighbor":
        return Neighbor2Neighbor(gamma, cell)
    raise ValueError(f"unknown training method {name!r}; use one of {', '.join(METHODS)}")
