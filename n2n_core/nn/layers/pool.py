"""Max pooling over non-overlapping windows (stride = kernel size)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from n2n_core.nn.checks import Pair, check_image_batch, to_pair
from n2n_core.nn.functional.dependency import gather_mask
from n2n_core.nn.functional.pad import pad_zeros
from n2n_core.nn.module import VJP, Mask, Module, empty_like_grad


def maxpool2d_forward(x: Tensor, kernel: Pair) -> tuple[Tensor, Tensor]:
    """y[n, c, i, j] = max_{u<kh, v<kw} x[n, c, kh*i + u, kw*j + v]  (trailing rows/cols dropped).

    x: (N, C, H, W) -> y: (N, C, H//kh, W//kw) and the window index of each maximum (first on ties).
    """
    n, c, h, w = x.shape
    kh, kw = kernel
    ho, wo = h // kh, w // kw
    xh = x.permute(0, 2, 3, 1)[:, : ho * kh, : wo * kw]
    windows = xh.reshape(n, ho, kh, wo, kw, c).permute(0, 1, 3, 2, 4, 5).reshape(n, ho, wo, kh * kw, c)
    y, idx = windows.max(dim=3)
    return y.permute(0, 3, 1, 2), idx


def maxpool2d_values(x: Tensor, kernel: Pair) -> Tensor:
    """The y of ``maxpool2d_forward`` without the window indices (inference): the elementwise maximum of
    the kh*kw strided views x[:, :, u::kh, v::kw], computed channels-last.

    x: (N, C, H, W) -> y: (N, C, H//kh, W//kw) with channels_last strides.
    """
    n, c, h, w = x.shape
    kh, kw = kernel
    ho, wo = h // kh, w // kw
    xh = x.permute(0, 2, 3, 1)
    views = [xh[:, u : u + (ho - 1) * kh + 1 : kh, v : v + (wo - 1) * kw + 1 : kw] for u in range(kh) for v in range(kw)]
    if len(views) == 1:
        return views[0].contiguous().permute(0, 3, 1, 2)
    y = torch.maximum(views[0], views[1])
    for view in views[2:]:
        torch.maximum(y, view, out=y)
    return y.permute(0, 3, 1, 2)


def maxpool2d_vjp(dy: Tensor, idx: Tensor, kernel: Pair, input_size: Pair) -> Tensor:
    """dx receives dy at the position of each window's maximum, zero elsewhere."""
    n, c, ho, wo = dy.shape
    kh, kw = kernel
    h, w = input_size
    dyh = dy.permute(0, 2, 3, 1).unsqueeze(3)
    spread = dyh.new_zeros((n, ho, wo, kh * kw, c)).scatter_(3, idx.unsqueeze(3), dyh)
    blocks = spread.view(n, ho, wo, kh, kw, c).permute(0, 1, 3, 2, 4, 5).reshape(n, ho * kh, wo * kw, c)
    if (ho * kh, wo * kw) != (h, w):
        blocks = pad_zeros(blocks, {1: (0, h - ho * kh), 2: (0, w - wo * kw)})
    return blocks.permute(0, 3, 1, 2)


class MaxPool2d(Module):
    """Max pooling with stride equal to ``kernel_size`` (an int or an (h, w) pair)."""

    fresh_output = True
    row_streaming = "pool"

    def __init__(self, kernel_size: Any = 2) -> None:
        super().__init__()
        self.kernel_size: Pair = to_pair("MaxPool2d", "kernel_size", kernel_size, 1)

    # -- layer protocol ------------------------------------------------------------------
    def reach(self, scale: float) -> tuple[float, float]:
        """r = (max(k) - 1) * scale (the window), scale' = scale * max(k)."""
        return (max(self.kernel_size) - 1) * scale, scale * max(self.kernel_size)

    def activation_values(self, scale: float, channels: int) -> tuple[float, float, int]:
        """scale' = scale * max(k): channels / scale'^2 values, the channels kept."""
        scale *= max(self.kernel_size)
        return channels / scale**2, scale, channels

    def dependency_mask(self, mask: Mask) -> Mask:
        """Output (i, j) depends on the k_h x k_w window at (i k_h, j k_w) (a convolution of stride k)."""
        return gather_mask(mask, self.kernel_size, self.kernel_size, (0, 0), (1, 1))

    def size_multiple(self) -> int:
        """lcm(k_h, k_w): the windows must tile the input."""
        return math.lcm(*self.kernel_size)

    def config(self) -> dict[str, Any]:
        return {"type": "MaxPool2d", "kernel_size": list(self.kernel_size)}

    def _check(self, x: Tensor) -> None:
        check_image_batch(repr(self), x)
        if x.shape[2] < self.kernel_size[0] or x.shape[3] < self.kernel_size[1]:
            raise ValueError(f"{self!r}: input of shape {tuple(x.shape)} is smaller than the window")

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        return maxpool2d_values(x, self.kernel_size)

    def _forward_and_vjp(self, x: Tensor) -> tuple[Tensor, VJP]:
        self._check(x)
        y, idx = maxpool2d_forward(x, self.kernel_size)
        size = (x.shape[2], x.shape[3])

        def vjp(dy: Tensor, need_input_grad: bool = True) -> tuple[Tensor, Tensor, Tensor]:
            e = empty_like_grad(dy)
            return maxpool2d_vjp(dy, idx, self.kernel_size, size), e, e

        return y, vjp
