"""Parameter initialisation, drawing from torch's global generator exactly as torch.nn does.

With the same seed, a layer built here holds the same numbers as its torch.nn twin.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def kaiming_uniform(shape: tuple[int, ...], fan_in: int) -> Tensor:
    """U(-b, b) with b = sqrt(3) * gain / sqrt(fan_in), gain = sqrt(2 / (1 + a^2)), a = sqrt(5).

    This is torch.nn's default for convolution weights (b = 1/sqrt(fan_in)).
    """
    gain = math.sqrt(2.0 / (1 + math.sqrt(5) ** 2))
    std = gain / math.sqrt(fan_in) if fan_in > 0 else 0.0
    bound = math.sqrt(3.0) * std
    return torch.empty(shape).uniform_(-bound, bound)


def bias_uniform(shape: tuple[int, ...], fan_in: int) -> Tensor:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch.nn's default for convolution biases."""
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return torch.empty(shape).uniform_(-bound, bound)
