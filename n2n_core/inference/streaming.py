"""Row-streamed forward passes: a network run over an image band by band, every value computed once.

A stream takes the rows of its input in consecutive bands, top to bottom, and gives back the rows of
its output that those rows already determine. It keeps only what later rows still need:

    convolution   the last d(k-1) + 1 - s rows of its (zero-padded) input: output row i reads padded
                  input rows s*i .. s*i + d(k-1)
    max pooling   the rows of an unfinished window (output row i reads rows k*i .. k*i + k-1)
    upsampling    nothing (output rows s*i .. s*i + s-1 copy input row i)
    concat, sum   the rows one branch has produced and the other has not reached yet
    pointwise     nothing

Pushing an image in bands and stacking the output bands gives the forward pass of the whole image,
equal up to the float rounding of the matrix products, with memory set by the band height and the
network's lag (the U-Net's skip connections hold about its receptive radius in rows), not by the
image height, and without the margins that overlapping tiles recompute.

    stream = row_stream(model)
    for k, band in enumerate(bands):       # (N, C, r, W) each, r >= 1
        rows = stream.push(band, last=k == len(bands) - 1)   # (N, C', r', W') or None (no row yet)

Streams work on 4-d batches of the model's dtype and device. Each layer declares how it is streamed
(``Module.row_streaming``, one of ``n2n_core.nn.module.ROW_STREAMING_KINDS``); ``row_stream`` raises
ValueError for a layer that has no row-wise form (a transposed convolution, a self-ensemble's
rotations: ``row_streaming`` None).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from n2n_core.nn.functional.conv import conv2d_nhwc_padded, nhwc_input_buffer
from n2n_core.nn.layers.pool import maxpool2d_values
from n2n_core.nn.layers.upsample import upsample_nearest_forward
from n2n_core.nn.module import Module
from n2n_core.analysis import receptive_radius

if TYPE_CHECKING:  # the stream classes name the layers they stream; row_stream picks them by declared kind
    from n2n_core.nn.layers import Cast, Concat, Conv2d, MaxPool2d, NearestUpsampling, Residual, Sequential


class RowStream:
    """Consumes input rows in bands, top to bottom; gives back the output rows they complete."""

    def push(self, rows: Tensor | None, last: bool = False) -> Tensor | None:
        """Take the next band (N, C, r, W) (None: no new rows); ``last`` marks the end of the input.
        Returns the next output rows (N, C', r', W'), or None when none is complete yet."""
        raise NotImplementedError

    def held(self) -> int:
        """Values this stream (with its children) keeps between pushes."""
        return 0


class _Pointwise(RowStream):
    def __init__(self, module: Module, inplace: bool) -> None:
        self.module, self.inplace = module, inplace

    def push(self, rows: Tensor | None, last: bool = False) -> Tensor | None:
        if rows is None:
            return None
        return self.module.forward_inplace(rows) if self.inplace else self.module(rows)


class _Conv(RowStream):
    """Conv2d by rows, channels-last: the kept rows and the new band are copied once into a buffer with
    the horizontal zero padding (and zero rows above the first band and below the last for the
    vertical padding), convolved without further padding, and the rows that the next output row still
    reads are kept (already laid out and padded)."""

    def __init__(self, conv: Conv2d, epilogue: Callable[[Tensor], Tensor] | None = None) -> None:
        self.conv = conv
        self.epilogue = epilogue  # the following activation, applied block by block (Sequential.fused_steps)
        self.kept: Tensor | None = None  # (N, rows, W' >= W + 2 pad, C)
        self.width = 0  # W + 2 pad: the columns of the buffer that hold the padded input
        self.started = False

    def push(self, rows: Tensor | None, last: bool = False) -> Tensor | None:
        conv = self.conv
        pad_rows, pad_cols = conv.padding
        kept = 0 if self.kept is None else self.kept.shape[1]
        top = pad_rows if rows is not None and not self.started else 0
        new = 0 if rows is None else rows.shape[2]
        bottom = pad_rows if last else 0
        height = kept + top + new + bottom
        reach = conv.dilation[0] * (conv.kernel_size[0] - 1)  # rows below an output row's first input row
        stride = conv.stride[0]
        count = (height - reach - 1) // stride + 1 if height > reach else 0
        if count == 0 and rows is None:
            if last:
                self.kept = None
            return None
        like = rows if rows is not None else self.kept
        n, channels = like.shape[0], conv.in_channels
        width = rows.shape[3] + 2 * pad_cols if rows is not None else self.width
        buffer = nhwc_input_buffer(like, n, height, width, channels, conv.kernel_size, conv.stride, conv.dilation)
        if kept:
            buffer[:, :kept] = self.kept
        if top:
            buffer[:, kept : kept + top].zero_()
        if rows is not None:
            band = buffer[:, kept + top : kept + top + new]
            if pad_cols:
                band[:, :, :pad_cols].zero_()
                band[:, :, width - pad_cols :].zero_()
            band[:, :, pad_cols : width - pad_cols] = rows.permute(0, 2, 3, 1)
            self.started, self.width = True, width
        if bottom:
            buffer[:, height - bottom :].zero_()
        self.kept = None if last else buffer[:, count * stride :].clone()
        if count == 0:
            return None
        window = buffer[:, : (count - 1) * stride + reach + 1]
        return conv2d_nhwc_padded(window, conv.weight, conv.bias, conv.stride, conv.dilation, self.epilogue, width)

    def held(self) -> int:
        return 0 if self.kept is None else self.kept.numel()


class _MaxPool(RowStream):
    """MaxPool2d by rows: whole windows of k rows are pooled; a partial window waits (dropped at the end,
    as the whole-image pooling drops trailing rows)."""

    def __init__(self, pool: MaxPool2d) -> None:
        self.pool = pool
        self.kept: Tensor | None = None

    def push(self, rows: Tensor | None, last: bool = False) -> Tensor | None:
        parts = [t for t in (self.kept, rows) if t is not None]
        if not parts:
            return None
        stacked = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
        window = self.pool.kernel_size[0]
        count = stacked.shape[2] // window
        self.kept = stacked[:, :, count * window:].clone() if not last and stacked.shape[2] % window else None
        if count == 0:
            return None
        return maxpool2d_values(stacked[:, :, : count * window], self.pool.kernel_size)

    def held(self) -> int:
        return 0 if self.kept is None else self.kept.numel()


class _Upsample(RowStream):
    def __init__(self, upsample: NearestUpsampling) -> None:
        self.scale = upsample.scale_factor

    def push(self, rows: Tensor | None, last: bool = False) -> Tensor | None:
        return None if rows is None else upsample_nearest_forward(rows, self.scale)


class _Chain(RowStream):
    """Sequential by rows; a child works in place where the layer-by-layer forward lets it.

    Rows that reach a child in a larger block than ``piece_pixels`` (the end of the image, when every
    level gives back the rows it held) go down the rest of the chain a piece at a time, so that no
    layer works on more than about a band."""

    def __init__(self, sequential: Sequential, piece_pixels: int | None) -> None:
        self.children = [_Conv(m, epilogue) if epilogue is not None and m.row_streaming == "conv"  # type: ignore[arg-type]
                         else _fused(row_stream(m, inplace, piece_pixels), m, epilogue)
                         for m, epilogue, inplace in sequential.fused_steps()]
        self.piece_pixels = piece_pixels

    def push(self, rows: Tensor | None, last: bool = False) -> Tensor | None:
        return self._push_from(0, rows, last)

    def _push_from(self, index: int, rows: Tensor | None, last: bool) -> Tensor | None:
        if index == len(self.children):
            return rows
        pieces: list[Tensor | None] = [rows]
        if rows is not None and self.piece_pixels is not None:
            height = max(1, self.piece_pixels // max(1, rows.shape[3]))
            pieces = list(rows.split(height, dim=2)) if rows.shape[2] > height else [rows]
        outputs = []
        for k, piece in enumerate(pieces):
            final = last and k == len(pieces) - 1
            out = self._push_from(index + 1, self.children[index].push(piece, final), final)
            if out is not None:
                outputs.append(out)
        return _stack(outputs) if outputs else None

    def held(self) -> int:
        return sum(child.held() for child in self.children)


class _Then(RowStream):
    """A stream followed by an elementwise epilogue applied in place to its output rows."""

    def __init__(self, stream: RowStream, epilogue: Callable[[Tensor], Tensor]) -> None:
        self.stream, self.epilogue = stream, epilogue

    def push(self, rows: Tensor | None, last: bool = False) -> Tensor | None:
        out = self.stream.push(rows, last)
        return None if out is None else self.epilogue(out)

    def held(self) -> int:
        return self.stream.held()


def _fused(stream: RowStream, module: Module, epilogue: Callable[[Tensor], Tensor] | None) -> RowStream:
    """``stream`` of ``module``, followed by the epilogue that ``Sequential.fused_steps`` joined to it."""
    return stream if epilogue is None else _Then(stream, epilogue)


class _Pending:
    """Rows produced by one branch and not yet combined: a queue of bands, taken from the top."""

    def __init__(self) -> None:
        self.bands: list[Tensor] = []
        self.rows = 0

    def add(self, band: Tensor | None) -> None:
        if band is not None and band.shape[2]:
            self.bands.append(band)
            self.rows += band.shape[2]

    def take(self, count: int) -> list[Tensor]:
        """The first ``count`` rows, as views of the queued bands (top to bottom)."""
        taken, need = [], count
        while need:
            band = self.bands[0]
            if band.shape[2] <= need:
                taken.append(self.bands.pop(0))
                need -= band.shape[2]
            else:
                taken.append(band[:, :, :need])
                self.bands[0] = band[:, :, need:]
                need = 0
        self.rows -= count
        return taken

    def held(self) -> int:
        return sum(band.numel() for band in self.bands)


class _Concat(RowStream):
    """Concat by rows: each branch's rows wait until every branch has produced them."""

    def __init__(self, concat: Concat, piece_pixels: int | None) -> None:
        self.branches = [row_stream(m, piece_pixels=piece_pixels) for m in concat.branches]
        self.pending = [_Pending() for _ in self.branches]

    def push(self, rows: Tensor | None, last: bool = False) -> Tensor | None:
        for branch, pending in zip(self.branches, self.pending):
            pending.add(branch.push(rows, last))
        count = min(p.rows for p in self.pending)
        if count == 0:
            return None
        parts = [p.take(count) for p in self.pending]
        first = parts[0][0]
        channels = sum(bands[0].shape[1] for bands in parts)
        out = first.new_empty((first.shape[0], count, first.shape[3], channels)).permute(0, 3, 1, 2)
        channel = 0
        for bands in parts:
            row, width = 0, bands[0].shape[1]
            for band in bands:
                out[:, channel : channel + width, row : row + band.shape[2]] = band
                row += band.shape[2]
            channel += width
        return out

    def held(self) -> int:
        return sum(b.held() for b in self.branches) + sum(p.held() for p in self.pending)


class _Residual(RowStream):
    """Residual by rows: input rows wait for the body's output rows, then y = body(x) + x."""

    def __init__(self, residual: Residual, piece_pixels: int | None) -> None:
        self.body = row_stream(residual.body, piece_pixels=piece_pixels)
        self.inputs, self.outputs = _Pending(), _Pending()

    def push(self, rows: Tensor | None, last: bool = False) -> Tensor | None:
        self.inputs.add(rows)
        self.outputs.add(self.body.push(rows, last))
        count = min(self.inputs.rows, self.outputs.rows)
        if count == 0:
            return None
        body = _stack(self.outputs.take(count))
        return body + _stack(self.inputs.take(count))

    def held(self) -> int:
        return self.body.held() + self.inputs.held() + self.outputs.held()


class _Cast(RowStream):
    """Cast by rows: each band goes into the body in the body's type and comes out in the caller's."""

    def __init__(self, cast: Cast, piece_pixels: int | None) -> None:
        self.body = row_stream(cast.body, piece_pixels=piece_pixels)
        self.dtype = cast.dtype
        self.outer: torch.dtype | None = None

    def push(self, rows: Tensor | None, last: bool = False) -> Tensor | None:
        if rows is not None:
            self.outer = rows.dtype
            rows = rows.to(self.dtype)
        out = self.body.push(rows, last)
        return None if out is None else out.to(self.outer)

    def held(self) -> int:
        return self.body.held()


def _stack(bands: list[Tensor]) -> Tensor:
    return bands[0] if len(bands) == 1 else torch.cat(bands, dim=2)


#: the stream of each kind of ``Module.row_streaming``: (module, inplace, piece_pixels) -> stream
STREAMS: dict[str, Callable[[Module, bool, int | None], RowStream]] = {
    "pointwise": lambda m, inplace, piece_pixels: _Pointwise(m, inplace and m.supports_inplace),
    "conv": lambda m, inplace, piece_pixels: _Conv(m),  # type: ignore[arg-type]
    "pool": lambda m, inplace, piece_pixels: _MaxPool(m),  # type: ignore[arg-type]
    "upsample": lambda m, inplace, piece_pixels: _Upsample(m),  # type: ignore[arg-type]
    "sequential": lambda m, inplace, piece_pixels: _Chain(m, piece_pixels),  # type: ignore[arg-type]
    "concat": lambda m, inplace, piece_pixels: _Concat(m, piece_pixels),  # type: ignore[arg-type]
    "residual": lambda m, inplace, piece_pixels: _Residual(m, piece_pixels),  # type: ignore[arg-type]
    "cast": lambda m, inplace, piece_pixels: _Cast(m, piece_pixels),  # type: ignore[arg-type]
}


def row_stream(model: Module, inplace: bool = False, piece_pixels: int | None = None) -> RowStream:
    """A fresh stream that computes ``model`` by rows (see the module docstring); ValueError for a layer
    without a row-wise form. ``inplace``: a pointwise layer may overwrite its input band.
    ``piece_pixels``: the most pixels a layer works on at once (None: whatever arrives)."""
    kind = model.row_streaming
    if kind is None:
        raise ValueError(f"row_stream: {type(model).__name__} has no row-by-row form")
    if kind not in STREAMS:
        raise ValueError(f"row_stream: {type(model).__name__} declares an unknown row_streaming kind {kind!r} "
                         f"(known: {', '.join(STREAMS)})")
    return STREAMS[kind](model, inplace, piece_pixels)


def streamable(model: Module) -> bool:
    """Whether ``row_stream`` can run every layer of ``model``."""
    try:
        row_stream(model)
    except ValueError:
        return False
    return True


def state_per_column(model: Module) -> float:
    """The most values a stream of ``model`` keeps between pushes, per input column (its lag: about the
    receptive radius in rows, at every level). Measured once per architecture on a narrow probe pushed
    in bands of one size multiple."""
    return _state_per_column(json.dumps(model.config(), sort_keys=True))


@functools.lru_cache(maxsize=64)
def _state_per_column(config: str) -> float:
    with torch.random.fork_rng(devices=[]):
        model = Module.from_config(json.loads(config))
    mult = model.size_multiple()
    width = 4 * mult
    height = -(-(4 * receptive_radius(model) + 8 * mult) // mult) * mult
    channels = _input_channels(model)
    stream = row_stream(model)
    most = 0
    for top in range(0, height, mult):
        stream.push(torch.zeros((1, channels, mult, width)), last=top + mult >= height)
        most = max(most, stream.held())
    return most / width


def _input_channels(model: Module) -> int:
    first = next((m for m in model.modules() if m.row_streaming == "conv"), None)
    return first.in_channels if first is not None else 3  # type: ignore[attr-defined]
