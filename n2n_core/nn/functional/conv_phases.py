"""Stride-1 convolution as GEMMs over the padded input itself: no column matrix is built.

In a contiguous NHWC buffer of padded width Wr, the kw horizontal neighbours of a pixel, all their
channels, are kw*C consecutive values. Output column j of output row i reads, for kernel row u,
the kw*C values that start at pixel (i + u, j). Take the output columns of one phase r (j = kw*q + r)
and let Wr be a multiple of kw: then the row of values that output (i, kw*q + r) reads for kernel row u
starts at ((i + u) * Wr + r + kw*q) * C = base + m * (kw*C) with m = i*Wr/kw + q. That is a plain
row-major matrix of kw*C columns, a view of the buffer:

    A[u, r] = buffer.flat[((i0 + u) * Wr + r) * C :].view(M, kw*C)          (zero-copy)
    y[:, r::kw] += A[u, r] @ W[u],   W[u][v*C + c, o] = w[o, c, u, v]      (kh * kw GEMMs)

with the output a strided view of leading dimension kw*O. Every output column j < Wr is computed, the
columns Wo <= j < Wr from padding and whatever lies beyond it; the caller keeps y[:, :, :Wo]. The
last phase reads kw - 1 values past the buffer's end: ``phase_buffer`` allocates them.

Cost against im2col (``conv._conv_gemm``): the same multiply-adds (plus the (Wr - Wo)/Wr discarded
columns), no copy of kh*kw*C values per output pixel, GEMMs with K = kw*C instead of kh*kw*C, each
output block accumulated kh times while it is in cache.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Epilogue = Callable[[Tensor], Tensor]  # an elementwise function applied in place to a block of outputs

#: bytes of one block of output rows, accumulated kh times by its GEMMs while it stays in cache
BLOCK_BYTES = 1 << 20


def phase_width(width: int, kernel_width: int) -> int:
    """The buffer width for ``width`` padded columns: the next multiple of the kernel width."""
    return -(-width // kernel_width) * kernel_width


def phase_buffer(like: Tensor, n: int, height: int, width: int, channels: int, kernel_width: int) -> Tensor:
    """An uninitialised (N, height, phase_width(width, kw), C) buffer of ``like``'s type and device whose
    storage holds kw values of slack after its end (read only by discarded outputs)."""
    padded = phase_width(width, kernel_width)
    storage = like.new_empty(n * height * padded * channels + kernel_width * channels)
    return storage[: n * height * padded * channels].view(n, height, padded, channels)


def is_phase_buffer(buffer: Tensor, kernel_width: int) -> bool:
    """Whether ``buffer`` (N, Hp, Wr, C) has what ``conv2d_phases`` reads: contiguous rows, Wr a multiple of
    the kernel width and kw - 1 values of storage after its end."""
    n, height, padded, channels = buffer.shape
    contiguous = tuple(buffer.stride()[1:]) == (padded * channels, channels, 1) and (
        n == 1 or buffer.stride(0) == height * padded * channels)
    spare = buffer.untyped_storage().nbytes() // buffer.element_size() - buffer.storage_offset() - buffer.numel()
    return padded % kernel_width == 0 and contiguous and spare >= (kernel_width - 1) * channels


def weight_rows(weight: Tensor) -> Tensor:
    """(O, C, kh, kw) -> (kh, kw*C, O): W[u][v*C + c, o] = w[o, c, u, v], one GEMM operand per kernel row."""
    out_channels, channels, kh, kw = weight.shape
    return weight.permute(2, 3, 1, 0).reshape(kh, kw * channels, out_channels)


def conv2d_phases(buffer: Tensor, weight: Tensor, bias: Tensor | None, out_rows: int,
                  epilogue: Epilogue | None = None) -> Tensor:
    """y = conv2d(buffer, w, b), stride 1, no dilation, no further padding, every phase column computed.

    buffer: (N, Hp, Wr, C) from ``phase_buffer`` (Wr a multiple of kw, Hp >= out_rows + kh - 1),
    weight: (O, C, kh, kw) -> y: (N, out_rows, Wr, O) contiguous, of which the caller keeps the first
    Wp - kw + 1 columns (Wp the padded width it filled). ``epilogue`` runs in place on the whole y.
    """
    n, height, padded, channels = buffer.shape
    out_channels, _, kh, kw = weight.shape
    if not is_phase_buffer(buffer, kw) or height < out_rows + kh - 1:
        raise ValueError(f"conv2d_phases: buffer of shape {tuple(buffer.shape)} is not a phase_buffer for "
                         f"{out_rows} output rows of a kernel {kh}x{kw}")
    rows = weight_rows(weight)
    y = buffer.new_empty((n, out_rows, padded, out_channels))
    block = max(1, BLOCK_BYTES // max(1, padded * out_channels * y.element_size()))
    source = buffer.storage_offset()
    flat_in = buffer.as_strided((buffer.untyped_storage().nbytes() // buffer.element_size(),), (1,), 0)
    flat_out = y.view(-1)
    for image in range(n):
        for top in range(0, out_rows, block):
            count = min(block, out_rows - top)
            m = count * padded // kw
            for phase in range(kw):
                start = ((image * out_rows + top) * padded + phase) * out_channels
                dst = flat_out.as_strided((m, out_channels), (kw * out_channels, 1), start)
                for u in range(kh):
                    first = source + ((image * height + top + u) * padded + phase) * channels
                    lhs = flat_in.as_strided((m, kw * channels), (kw * channels, 1), first)
                    if u:
                        dst.addmm_(lhs, rows[u])
                    elif bias is None:
                        torch.mm(lhs, rows[0], out=dst)
                    else:
                        torch.addmm(bias, lhs, rows[0], out=dst)
    if epilogue is not None:
        epilogue(y)
    return y
