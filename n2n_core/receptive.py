"""How far an output pixel of a network sees: the margin that keeps tiled inference exact.

``receptive_radius`` propagates dependency masks through the architecture: a boolean image per
probe, true where a value depends on the probed input pixel. Each layer maps masks exactly as it
maps values, with "depends on any tap" in place of the weighted sum, so the result is the
dependency cone of the network for any weights (no numerics, no cancellation). Probes at every
phase of the pooling grid give the farthest dependency; for the U-Nets it is about half of the
layer-by-layer ``receptive_bound``.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

import torch
from torch import Tensor

from .layers import (Cast, Concat, Conv2d, MaxPool2d, NearestUpsampling, NoiseAdaptive, Residual, SelfEnsemble, Sequential,
                     TransposeConv2d)
from .layers.ensemble import apply, symmetries, undo
from .module import Module

Mask = Tensor  # bool (N, H, W): which values depend on the probed pixel


def receptive_bound(model: Module) -> int:
    """An upper bound, in input pixels, on how far an output pixel sees (each layer's full extent, summed)."""

    def walk(m: Module, scale: float) -> tuple[float, float]:
        if isinstance(m, Sequential):
            r = 0.0
            for c in m:
                dr, scale = walk(c, scale)
                r += dr
            return r, scale
        if isinstance(m, Concat):
            results = [walk(b, scale) for b in m.branches]
            return max(r for r, _ in results), results[0][1]
        if isinstance(m, NoiseAdaptive):
            r, scale = walk(m.body, scale)
            return r * m.passes, scale
        if isinstance(m, (Residual, SelfEnsemble, Cast)):
            return walk(m.body, scale)
        if isinstance(m, Conv2d):
            r = max(m.dilation[i] * (m.kernel_size[i] - 1) for i in range(2)) * scale
            return r, scale * max(m.stride)
        if isinstance(m, TransposeConv2d):
            r = max(m.dilation[i] * (m.kernel_size[i] - 1) for i in range(2)) * scale / min(m.stride)
            return r + scale, scale / min(m.stride)
        if isinstance(m, MaxPool2d):
            return (max(m.kernel_size) - 1) * scale, scale * max(m.kernel_size)
        if isinstance(m, NearestUpsampling):
            return scale, scale / min(m.scale_factor)
        return 0.0, scale

    return math.ceil(walk(model, 1.0)[0])


def activation_values_per_pixel(model: Module, channels: int = 3) -> float:
    """Sum over layers of output channels / scale^2: all activations of a forward pass, per input pixel.

    An upper bound on the values alive at once (a forward pass frees most of them as it goes), used
    to size tiles from a memory budget.
    """

    def walk(m: Module, scale: float, ch: int) -> tuple[float, float, int]:
        if isinstance(m, Sequential):
            total = 0.0
            for c in m:
                t, scale, ch = walk(c, scale, ch)
                total += t
            return total, scale, ch
        if isinstance(m, Concat):
            results = [walk(b, scale, ch) for b in m.branches]
            out = sum(c for _, _, c in results)
            return sum(t for t, _, _ in results) + out / scale**2, results[0][1], out
        if isinstance(m, Cast):
            return walk(m.body, scale, ch)
        if isinstance(m, (Residual, SelfEnsemble, NoiseAdaptive)):
            total, _, _ = walk(m.body, scale, ch)
            return total + ch / scale**2, scale, ch
        if isinstance(m, Conv2d):
            scale *= max(m.stride)
            return m.out_channels / scale**2, scale, m.out_channels
        if isinstance(m, TransposeConv2d):
            scale /= min(m.stride)
            return m.out_channels / scale**2, scale, m.out_channels
        if isinstance(m, MaxPool2d):
            scale *= max(m.kernel_size)
            return ch / scale**2, scale, ch
        if isinstance(m, NearestUpsampling):
            scale /= min(m.scale_factor)
            return ch / scale**2, scale, ch
        return 0.0, scale, ch  # pointwise layers work in place or free their input

    return walk(model, 1.0, channels)[0] + channels


def receptive_radius(model: Module) -> int:
    """The largest |row offset| or |column offset| between an output pixel and an input pixel it depends
    on, over every phase of the network's pooling grid. Cached per architecture."""
    return _radius(json.dumps(model.config(), sort_keys=True))


@functools.lru_cache(maxsize=64)
def _radius(config: str) -> int:
    from .models import size_multiple

    model = Module.from_config(json.loads(config))
    mult = size_multiple(model)
    side = -(-(2 * receptive_bound(model) + 2 * mult + 1) // mult) * mult
    centre = side // 2 // mult * mult
    probes = torch.zeros((mult, side, side), dtype=torch.bool)
    for phase in range(mult):
        probes[phase, centre + phase, centre + phase] = True
    reached = propagate(model, probes)
    radius = 0
    for phase in range(mult):
        rows, cols = torch.nonzero(reached[phase], as_tuple=True)
        if rows.numel():
            radius = max(radius, int(torch.cat([rows - centre - phase, cols - centre - phase]).abs().max()))
    return radius


def propagate(m: Module, mask: Mask) -> Mask:
    """The output positions of ``m`` that depend on the input positions marked in ``mask`` (N, H, W)."""
    if isinstance(m, Sequential):
        for child in m:
            mask = propagate(child, mask)
        return mask
    if isinstance(m, Concat):
        masks = [propagate(b, mask) for b in m.branches]
        return functools.reduce(torch.logical_or, masks)
    if isinstance(m, Residual):
        return mask | propagate(m.body, mask)
    if isinstance(m, Cast):
        return propagate(m.body, mask)
    if isinstance(m, NoiseAdaptive):
        for _ in range(m.passes):  # the most passes: each reads the whole output of the one before
            mask = propagate(m.body, mask)
        return mask
    if isinstance(m, SelfEnsemble):
        outs = [undo(propagate(m.body, apply(mask[:, None], t)[:, 0]), t) for t in symmetries(m.count)]
        return functools.reduce(torch.logical_or, outs)
    if isinstance(m, Conv2d):
        return _gather(mask, m.kernel_size, m.stride, m.padding, m.dilation)
    if isinstance(m, MaxPool2d):
        return _gather(mask, m.kernel_size, m.kernel_size, (0, 0), (1, 1))
    if isinstance(m, TransposeConv2d):
        return _scatter(mask, m.kernel_size, m.stride, m.padding, m.dilation, m.output_padding)
    if isinstance(m, NearestUpsampling):
        fh, fw = m.scale_factor
        return mask.repeat_interleave(fh, dim=1).repeat_interleave(fw, dim=2)
    return mask  # pointwise layers


def _gather(mask: Mask, kernel: Any, stride: Any, padding: Any, dilation: Any) -> Mask:
    """Output (i, j) depends on input (i*s - p + t*d) for every tap t: an OR over the taps."""
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


def _scatter(mask: Mask, kernel: Any, stride: Any, padding: Any, dilation: Any, output_padding: Any) -> Mask:
    """Input (i, j) reaches output (i*s - p + t*d) for every tap t (a transposed convolution)."""
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
