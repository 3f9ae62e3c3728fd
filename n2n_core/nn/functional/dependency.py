"""Dependency masks: which output positions of a windowed layer depend on which input positions.

A mask is a bool tensor (N, H, W). Each function maps masks exactly as its layer maps values, with
"depends on any tap" in place of the weighted sum (see ``Module.dependency_mask``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def gather_mask(mask: Tensor, kernel: Any, stride: Any, padding: Any, dilation: Any) -> Tensor:
    """A convolution or pooling: output (i, j) depends on input (i*s - p + t*d) for every tap t, an OR
    over the taps. (N, H, W) -> (N, Ho, Wo), Ho = floor((H + 2p - d(k-1) - 1)/s) + 1."""
    n, h, w = mask.shape
    padded = torch.zeros((n, h + 2 * padding[0], w + 2 * padding[1]), dtype=torch.bool)
    padded[:, padding[0] : padding[0] + h, padding[1] : padding[1] + w] = mask
    out_h = (h + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    out_w = (w + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    out = torch.zeros((n, out_h, out_w), dtype=torch.bool)
    for ti in range(kernel[0]):
        for tj in range(kernel[1]):
            r0, c0 = ti * dilation[0], tj * dilation[1]
            out |= padded[:, r0 : r0 + (out_h - 1) * stride[0] + 1 : stride[0],
                          c0 : c0 + (out_w - 1) * stride[1] + 1 : stride[1]]
    return out


def scatter_mask(mask: Tensor, kernel: Any, stride: Any, padding: Any, dilation: Any, output_padding: Any) -> Tensor:
    """A transposed convolution: input (i, j) reaches output (i*s - p + t*d) for every tap t.
    (N, H, W) -> (N, Ho, Wo), Ho = (H - 1)s - 2p + d(k-1) + op + 1."""
    n, h, w = mask.shape
    full_h = (h - 1) * stride[0] + dilation[0] * (kernel[0] - 1) + 1 + output_padding[0]
    full_w = (w - 1) * stride[1] + dilation[1] * (kernel[1] - 1) + 1 + output_padding[1]
    full = torch.zeros((n, full_h, full_w), dtype=torch.bool)
    for ti in range(kernel[0]):
        for tj in range(kernel[1]):
            r0, c0 = ti * dilation[0], tj * dilation[1]
            full[:, r0 : r0 + (h - 1) * stride[0] + 1 : stride[0], c0 : c0 + (w - 1) * stride[1] + 1 : stride[1]] |= mask
    out_h, out_w = full_h - 2 * padding[0], full_w - 2 * padding[1]
    return full[:, padding[0] : padding[0] + out_h, padding[1] : padding[1] + out_w]
