"""Padding with plain tensor ops: zeros, reflection and replication along chosen dimensions.

``widths`` maps a dimension (negative counts from the end) to its (before, after) widths, e.g.
``{1: (top, bottom), 2: (left, right)}`` for an NHWC tensor. Every output value is a copy of an
input value or an exact zero, so the results are bit-identical to PyTorch's ``pad``:

    zeros:      y[i] = x[i - b] for 0 <= i - b < n, else 0
    reflect:    y[i] = x[r(i - b)], r(j) = |j| mirrored again at n - 1 (the edge is not repeated)
    replicate:  y[i] = x[clamp(i - b, 0, n - 1)]

along each padded dimension, with b its ``before`` width and n its size.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

Widths = Mapping[int, tuple[int, int]]
MODES = ("zeros", "reflect", "replicate")


def pad(x: Tensor, widths: Widths, mode: str = "zeros") -> Tensor:
    """x padded by ``widths`` ({dim: (before, after)}, widths >= 0) in ``mode`` (one of ``MODES``).

    zeros: a new contiguous tensor (also when every width is 0). reflect / replicate: x itself when
    every width is 0, else a new tensor; reflect needs widths < the size of the dimension.
    """
    if mode not in MODES:
        raise ValueError(f"pad: mode must be one of {MODES}, got {mode!r}")
    dims = _checked_widths(x, widths, mode)
    if mode == "zeros":
        return pad_zeros(x, dims)
    for dim, (before, after) in dims.items():
        if before or after:
            x = x.index_select(dim, _edge_indices(x.shape[dim], before, after, mode, x.device))
    return x


def pad_zeros(x: Tensor, widths: Widths) -> Tensor:
    """Zero padding: a new contiguous tensor of the padded shape, x copied into its interior.

    Only the border slabs are zeroed (each value is written once); ``widths`` as in ``pad``, unchecked.
    """
    shape = list(x.shape)
    interior: list[slice] = [slice(None)] * x.dim()
    for dim, (before, after) in widths.items():
        shape[dim] += before + after
        interior[dim] = slice(before, before + x.shape[dim])
    out = x.new_empty(shape)
    for dim, (before, after) in widths.items():
        out.narrow(dim, 0, before).zero_()
        out.narrow(dim, before + x.shape[dim], after).zero_()
    out[tuple(interior)] = x
    return out


def _edge_indices(size: int, before: int, after: int, mode: str, device: torch.device) -> Tensor:
    """Source index of each padded position: i - before, reflected (without repeating the edge) or clamped."""
    idx = torch.arange(-before, size + after, device=device)
    if mode == "reflect":
        idx = idx.abs()
        return torch.where(idx > size - 1, 2 * (size - 1) - idx, idx)
    return idx.clamp(0, size - 1)


def _checked_widths(x: Tensor, widths: Widths, mode: str) -> dict[int, tuple[int, int]]:
    """{non-negative dim: (before, after)}; ValueError naming the shape on a bad dimension or width."""
    shape = tuple(x.shape)
    dims: dict[int, tuple[int, int]] = {}
    for dim, pair in widths.items():
        if not -x.dim() <= dim < x.dim():
            raise ValueError(f"pad: dimension {dim} does not exist in a tensor of shape {shape}")
        before, after = pair
        if min(before, after) < 0:
            raise ValueError(f"pad: widths must be >= 0, got {pair} for dimension {dim} of shape {shape}")
        size = shape[dim]
        if mode != "zeros" and (before or after) and size == 0:
            raise ValueError(f"pad: cannot {mode}-pad the empty dimension {dim} of shape {shape}")
        if mode == "reflect" and max(before, after) >= size:
            raise ValueError(f"pad: reflect widths {pair} must be smaller than size {size} "
                             f"of dimension {dim} (shape {shape})")
        dims[dim % x.dim()] = (before, after)
    return dims
