"""Convolutions lowered by hand to matrix multiplication.

Public functions take and return NCHW tensors of any strides. The work is done channels-last
(NHWC): the windows of the zero-padded input are a strided view, copied into a column matrix
``cols`` of shape (rows, kh*kw*C) and multiplied with the weight reshaped to (kh*kw*C, O).
The columns are built block by block (``CHUNK_ELEMENTS`` float32 values, or as many bytes, each) so
that each block is still in cache when the GEMM reads it; the GEMM writes straight into the output. Nothing but the
padded input is kept for the vjp, which rebuilds the blocks. Outputs are NCHW views of NHWC
storage (``torch.channels_last`` strides), so the next layer reads them without a copy.

Definitions (per spatial dimension; s stride, p padding, d dilation, k kernel index):

    conv2d:            y[n, o, i, j]  = b[o] + sum_{c,u,v} x[n, c, s*i - p + d*u, s*j - p + d*v] w[o, c, u, v]
    conv_transpose2d:  y[n, o, s*i - p + d*u, s*j - p + d*v] += x[n, c, i, j] w[c, o, u, v]   (+ b[o])

The transposed convolution is the input-vjp of conv2d and vice versa, so four primitives
cover both layers: ``_im2col`` (gather windows), a matmul, ``_scatter_taps`` (col2im as
kh*kw strided adds) and ``_gather_phases`` (sub-pixel decomposition: one stride-1
convolution per output phase, no scatter).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from n2n_core.nn.functional.conv_phases import Epilogue, conv2d_phases, is_phase_buffer, phase_buffer
from n2n_core.nn.functional.pad import pad_zeros

Pair = tuple[int, int]

#: float32 values in one block of columns (4 MiB); a narrower type gets as many bytes (2x the values for
#: bfloat16). Measured on 2 cores (unet-m, 512x512): 2 MiB blocks cost 5 % (float32) and 20 % (bfloat16)
#: more time than 4 MiB ones, whose GEMMs are larger; 8 MiB blocks lose again, out of cache.
CHUNK_ELEMENTS = 1 << 20
#: on a GPU, blocks only bound memory: large GEMMs keep it busy (64 Mi values = 256 MiB of float32).
CUDA_CHUNK_ELEMENTS = 1 << 26


def conv2d_output_size(size: Pair, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Pair:
    """Ho = floor((H + 2p - d(k-1) - 1) / s) + 1, per dimension."""
    return tuple(  # type: ignore[return-value]
        (size[i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(2)
    )


def conv_transpose2d_output_size(
    size: Pair, kernel: Pair, stride: Pair, padding: Pair, output_padding: Pair, dilation: Pair
) -> Pair:
    """Ho = (H - 1)s - 2p + d(k-1) + op + 1, per dimension."""
    return tuple(  # type: ignore[return-value]
        (size[i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (kernel[i] - 1) + output_padding[i] + 1
        for i in range(2)
    )


# ----------------------------------------------------------------------------- layout helpers


def _nhwc(x: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, H, W, C) view."""
    return x.permute(0, 2, 3, 1)


def _nchw(x: Tensor) -> Tensor:
    """(N, H, W, C) -> (N, C, H, W) view (channels_last strides when x is contiguous)."""
    return x.permute(0, 3, 1, 2)


def _pad_nhwc(x: Tensor, top: int, bottom: int, left: int, right: int) -> Tensor:
    """Zero-pad the H and W dims of an NHWC tensor; returns a contiguous tensor."""
    if top == bottom == left == right == 0:
        return x.contiguous()
    return pad_zeros(x, {1: (top, bottom), 2: (left, right)})


def _window_pads(size: Pair, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, out: Pair) -> tuple[int, ...]:
    """(top, bottom, left, right) zero padding that the windows of ``out`` positions actually read.

    Padded rows s*i + d*u (i < Ho, u < kh) are read; bottom padding beyond the last one is skipped.
    """
    pads = []
    for i in range(2):
        last = stride[i] * (out[i] - 1) + dilation[i] * (kernel[i] - 1)
        pads += [padding[i], max(0, last - (padding[i] + size[i] - 1))]
    return tuple(pads)


def _im2col(xp: Tensor, kernel: Pair, stride: Pair, dilation: Pair, out: Pair, offset: Pair = (0, 0)) -> Tensor:
    """Windows of a contiguous NHWC tensor as a column matrix.

    xp: (N, Hp, Wp, C) -> cols: (N*Ho*Wo, kh*kw*C) with
    cols[(n, i, j), (u, v, c)] = xp[n, oy + s*i + d*u, ox + s*j + d*v, c].
    """
    n, _, _, c = xp.shape
    sn, sh, sw, sc = xp.stride()
    windows = xp.as_strided(
        (n, out[0], out[1], kernel[0], kernel[1], c),
        (sn, stride[0] * sh, stride[1] * sw, dilation[0] * sh, dilation[1] * sw, sc),
        xp.storage_offset() + offset[0] * sh + offset[1] * sw,
    )
    return windows.reshape(n * out[0] * out[1], kernel[0] * kernel[1] * c)


Block = tuple[slice, slice, slice]  # images, output rows, output columns


def _blocks(n: int, out: Pair, k: int, device: torch.device, element_size: int = 4) -> list[Block]:
    """Split the (N, Ho, Wo) output positions into blocks of about CHUNK_ELEMENTS * 4 bytes of columns.

    A block is whole images, whole rows of one image, or part of one row (an image too wide for one
    row's columns to stay in cache), so its output positions are contiguous in NHWC.
    """
    ho, wo = out
    limit = CHUNK_ELEMENTS if device.type == "cpu" else max(CHUNK_ELEMENTS, CUDA_CHUNK_ELEMENTS)
    limit = max(1, limit * 4 // element_size)
    every = slice(0, wo)
    if wo * k > limit:
        width = max(1, limit // max(1, k))
        return [(slice(i, i + 1), slice(r, r + 1), slice(c, min(wo, c + width)))
                for i in range(n) for r in range(ho) for c in range(0, wo, width)]
    rows = max(1, limit // max(1, wo * k))
    if rows >= ho:
        step = max(1, rows // ho)
        return [(slice(i, min(n, i + step)), slice(0, ho), every) for i in range(0, n, step)]
    return [(slice(i, i + 1), slice(r, min(ho, r + rows)), every) for i in range(n) for r in range(0, ho, rows)]


def _block_cols(xp: Tensor, block: Block, kernel: Pair, stride: Pair, dilation: Pair, offset: Pair) -> Tensor:
    images, rows, columns = block
    return _im2col(xp[images], kernel, stride, dilation, (rows.stop - rows.start, columns.stop - columns.start),
                   (offset[0] + rows.start * stride[0], offset[1] + columns.start * stride[1]))


def _conv_gemm(xp: Tensor, wt: Tensor, bias: Tensor | None, kernel: Pair, stride: Pair, dilation: Pair, out: Pair,
               offset: Pair = (0, 0), epilogue: Epilogue | None = None) -> Tensor:
    """y = epilogue(im2col(xp) @ wt (+ bias)), block by block, the epilogue (an elementwise activation,
    in place) once over the whole output: per block, its two small parallel passes cost more than the
    cache they save (measured on 2 cores: 0.266 s against 0.230 s for a 512x512 bfloat16 unet-m).

    xp: (N, Hp, Wp, C) contiguous, wt: (kh*kw*C, O) -> y: (N, Ho, Wo, O) contiguous.
    """
    n, o = xp.shape[0], wt.shape[1]
    y = xp.new_empty((n, out[0], out[1], o))
    for block in _blocks(n, out, wt.shape[0], xp.device, xp.element_size()):
        cols = _block_cols(xp, block, kernel, stride, dilation, offset)
        dst = y[block].view(-1, o)
        if bias is None:
            torch.mm(cols, wt, out=dst)
        else:
            torch.addmm(bias, cols, wt, out=dst)
    if epilogue is not None:
        epilogue(y)
    return y


def _conv_weight_grad(xp: Tensor, g: Tensor, kernel: Pair, stride: Pair, dilation: Pair,
                      wt: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """gw = sum over positions of g^T @ im2col(xp), block by block; with ``wt`` also y = im2col(xp) @ wt.

    xp: (N, Hp, Wp, C) contiguous, g: (N, Ho, Wo, O), wt: (kh*kw*C, P) -> gw: (O, kh*kw*C), y: (N, Ho, Wo, P).
    Each block of columns is built once and used by both GEMMs.
    """
    n, ho, wo, o = g.shape
    acc = None
    y = xp.new_empty((n, ho, wo, wt.shape[1])) if wt is not None else None
    for block in _blocks(n, (ho, wo), kernel[0] * kernel[1] * xp.shape[3], xp.device, xp.element_size()):
        cols = _block_cols(xp, block, kernel, stride, dilation, (0, 0))
        gt = g[block].reshape(-1, o).t()
        acc = gt @ cols if acc is None else acc.addmm_(gt, cols)
        if y is not None:
            torch.mm(cols, wt, out=y[block].view(-1, y.shape[3]))
    return acc, y  # type: ignore[return-value]


def _weight_matrix(weight: Tensor) -> Tensor:
    """(A, B, kh, kw) -> (A, kh*kw*B), the column order of ``_im2col``."""
    a = weight.shape[0]
    return weight.permute(0, 2, 3, 1).reshape(a, -1)


def _weight_from_matrix(m: Tensor, shape: torch.Size) -> Tensor:
    """Inverse of ``_weight_matrix``: (A, kh*kw*B) -> contiguous (A, B, kh, kw)."""
    a, b, kh, kw = shape
    return m.reshape(a, kh, kw, b).permute(0, 3, 1, 2).contiguous()


# ----------------------------------------------------------------------------- transposed conv on NHWC


def _phase_taps(r: int, k: int, s: int, p: int, d: int) -> tuple[int, int, list[int]]:
    """Kernel taps that reach output rows o = s*q + r.

    Row o receives x[i] w[u] when s*i - p + d*u = o, i.e. i = q + (r + p - d*u) / s. The taps are
    evenly spaced (step s/g, g = gcd(s, d)); listed from the largest u down, their input offsets
    ascend by d/g. Returns (largest tap, tap step, input offsets) with no taps as (0, 1, []).
    """
    taps = [u for u in range(k) if (r + p - d * u) % s == 0]
    if not taps:
        return 0, 1, []
    return taps[-1], s // math.gcd(s, d), [(r + p - d * u) // s for u in reversed(taps)]


def _gather_phases(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: Pair, padding: Pair, dilation: Pair, out: Pair
) -> Tensor:
    """Transposed convolution as s_h*s_w stride-1 convolutions, one per output phase.

    x: (N, H, W, Cin) NHWC, weight: (Cin, Cout, kh, kw) -> y: (N, Ho, Wo, Cout) contiguous.
    Phase (ry, rx) holds y[:, ry::s_h, rx::s_w]; its taps are evenly spaced, so its columns are
    one dilated ``_im2col`` of the zero-padded input (dilation d / gcd(s, d)), and its weight is
    a strided slice of the spatially flipped kernel.
    """
    n, h, w, cin = x.shape
    _, cout, kh, kw = weight.shape
    plans = []
    for dim, size in enumerate((h, w)):
        s, p, d, k = stride[dim], padding[dim], dilation[dim], weight.shape[2 + dim]
        phases = [(r, len(range(r, out[dim], s)), *_phase_taps(r, k, s, p, d)) for r in range(s)]
        live = [(q, offs) for _, q, _, _, offs in phases if q and offs]
        lo = max([0] + [-offs[0] for _, offs in live])
        hi = max([0] + [q - 1 + offs[-1] - (size - 1) for q, offs in live])
        plans.append((phases, lo, hi, d // math.gcd(s, d)))
    (ph_y, lo_y, hi_y, dil_y), (ph_x, lo_x, hi_x, dil_x) = plans
    xp = _pad_nhwc(x, lo_y, hi_y, lo_x, hi_x)
    wf = weight.permute(2, 3, 0, 1).flip(0, 1)  # (kh, kw, Cin, Cout), taps reversed

    y = x.new_empty((n, out[0], out[1], cout))
    for ry, qy, uy, sy, oy in ph_y:
        for rx, qx, ux, sx, ox in ph_x:
            if not (qy and qx):
                continue
            dst = y[:, ry :: stride[0], rx :: stride[1]]
            if not (oy and ox):
                dst.copy_(bias.expand_as(dst) if bias is not None else torch.zeros_like(dst))
                continue
            sub = wf[kh - 1 - uy :: sy, kw - 1 - ux :: sx][: len(oy), : len(ox)].reshape(-1, cout)
            res = _conv_gemm(xp, sub, bias, (len(oy), len(ox)), (1, 1), (dil_y, dil_x), (qy, qx),
                             (lo_y + oy[0], lo_x + ox[0]))
            if stride == (1, 1):
                return res
            dst.copy_(res)
    return y


def _scatter_taps(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: Pair, padding: Pair, dilation: Pair, out: Pair
) -> Tensor:
    """Transposed convolution as one GEMM then col2im by kh*kw strided adds.

    x: (N, H, W, Cin), weight: (Cin, Cout, kh, kw) -> y: (N, Ho, Wo, Cout) contiguous.
    cols = x @ w: (N, H, W, kh, kw, Cout); acc[:, s*i + d*u, s*j + d*v] += cols[:, i, j, u, v];
    y = acc[:, p:p+Ho, p:p+Wo] + b. Cheaper than phases when Cout < Cin.
    """
    n, h, w, cin = x.shape
    _, cout, kh, kw = weight.shape
    (sh, sw), (pt, pl), (dh, dw) = stride, padding, dilation
    cols = (x.reshape(n * h * w, cin) @ weight.permute(0, 2, 3, 1).reshape(cin, -1)).view(n, h, w, kh, kw, cout)
    full_h, full_w = (h - 1) * sh + 1, (w - 1) * sw + 1
    acc_h = max(full_h + dh * (kh - 1), pt + out[0])
    acc_w = max(full_w + dw * (kw - 1), pl + out[1])
    acc = x.new_zeros((n, acc_h, acc_w, cout))
    for u in range(kh):
        for v in range(kw):
            acc[:, u * dh : u * dh + full_h : sh, v * dw : v * dw + full_w : sw] += cols[:, :, :, u, v]
    y = acc[:, pt : pt + out[0], pl : pl + out[1]]
    return y + bias if bias is not None else y.contiguous()


def _transpose_nhwc(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: Pair, padding: Pair, dilation: Pair, out: Pair,
    method: str = "auto",
) -> Tensor:
    """Dispatch: scatter when the output has fewer channels than the input, else phases."""
    if method == "auto":
        method = "scatter" if weight.shape[1] < weight.shape[0] else "gather"
    fn = _scatter_taps if method == "scatter" else _gather_phases
    return fn(x, weight, bias, stride, padding, dilation, out)


# ----------------------------------------------------------------------------- conv2d


def conv2d_forward(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: Pair, padding: Pair, dilation: Pair,
    epilogue: Epilogue | None = None,
) -> tuple[Tensor, Tensor]:
    """y = conv2d(x, w, b), then ``epilogue`` (in place, elementwise) if given.

    x: (N, C, H, W), weight: (O, C, kh, kw), bias: (O,) or None.
    Returns y: (N, O, Ho, Wo) and xp, the zero-padded NHWC input that ``conv2d_vjp`` needs (a view of a
    ``phase_buffer`` where the convolution runs as phase GEMMs, ``uses_phases``).
    """
    kernel = (weight.shape[2], weight.shape[3])
    if uses_phases(kernel, stride, dilation, x.dtype):
        buffer, width = _padded_phase_buffer(x, kernel, padding)
        return conv2d_nhwc_padded(buffer, weight, bias, stride, dilation, epilogue, width), buffer[:, :, :width]
    out = conv2d_output_size((x.shape[2], x.shape[3]), kernel, stride, padding, dilation)
    pads = _window_pads((x.shape[2], x.shape[3]), kernel, stride, padding, dilation, out)
    xp = _pad_nhwc(_nhwc(x), *pads)
    y = _conv_gemm(xp, _weight_matrix(weight).t(), bias, kernel, stride, dilation, out, epilogue=epilogue)
    return _nchw(y), xp


def _padded_phase_buffer(x: Tensor, kernel: Pair, padding: Pair) -> tuple[Tensor, int]:
    """x (N, C, H, W) zero-padded into a ``phase_buffer`` (NHWC); returns it and its padded width W + 2p."""
    n, channels, h, w = x.shape
    top, left = padding
    height, width = h + 2 * top, w + 2 * left
    buffer = phase_buffer(x, n, height, width, channels, kernel[1])
    if top:
        buffer[:, :top].zero_()
        buffer[:, top + h :].zero_()
    if left:
        buffer[:, top : top + h, :left].zero_()
    buffer[:, top : top + h, left + w :].zero_()  # the right padding and the columns past it
    buffer[:, top : top + h, left : left + w] = _nhwc(x)
    return buffer, width


def uses_phases(kernel: Pair, stride: Pair, dilation: Pair, dtype: torch.dtype) -> bool:
    """Whether a convolution runs as phase GEMMs over its padded input (``conv_phases``): stride 1, no
    dilation, a kernel wider than one column, float32 or float64. Measured on 2 cores (unet-m, 512x512,
    interleaved): 0.417 s against 0.494 s with im2col in float32; in bfloat16 both took 0.263 s, and the
    phases would round each output kh times to bfloat16 (their GEMMs accumulate in the output), so
    bfloat16 and float16 keep the one im2col GEMM, which accumulates in float32."""
    return stride == (1, 1) and dilation == (1, 1) and kernel[1] > 1 and dtype in (torch.float32, torch.float64)


def nhwc_input_buffer(like: Tensor, n: int, height: int, width: int, channels: int, kernel: Pair, stride: Pair,
                      dilation: Pair) -> Tensor:
    """An uninitialised (N, height, W', C) buffer, W' >= width, for a caller that lays out and pads the input
    of ``conv2d_nhwc_padded`` itself: W' and spare storage as the convolution's GEMMs want them (a
    ``phase_buffer``). The caller fills columns [0, width); the columns beyond are never read by a kept output."""
    if uses_phases(kernel, stride, dilation, like.dtype):
        return phase_buffer(like, n, height, width, channels, kernel[1])
    return like.new_empty((n, height, width, channels))


def conv2d_nhwc_padded(xp: Tensor, weight: Tensor, bias: Tensor | None, stride: Pair, dilation: Pair,
                       epilogue: Epilogue | None = None, width: int | None = None) -> Tensor:
    """y = conv2d(x, w, b) with no further padding, of an input already laid out NHWC and padded.

    xp: (N, Hp, W', C) with rows of stride W'*C, its first ``width`` (default W') columns the padded input,
    weight: (O, C, kh, kw) -> y: (N, O, Ho, Wo) (an NCHW view of NHWC storage),
    Ho = floor((Hp - d(kh-1) - 1) / s) + 1, Wo likewise from ``width``. For callers that build the padded
    input themselves (a row stream stacks its kept rows and a new band straight into a
    ``nhwc_input_buffer``: one copy, not two).
    """
    kernel = (weight.shape[2], weight.shape[3])
    width = xp.shape[2] if width is None else width
    out = conv2d_output_size((xp.shape[1], width), kernel, stride, (0, 0), dilation)
    if uses_phases(kernel, stride, dilation, xp.dtype) and is_phase_buffer(xp, kernel[1]):
        return _nchw(conv2d_phases(xp, weight, bias, out[0], epilogue)[:, :, : out[1]])
    return _nchw(_conv_gemm(xp[:, :, :width], _weight_matrix(weight).t(), bias, kernel, stride, dilation, out,
                            epilogue=epilogue))


def conv2d_vjp(
    dy: Tensor, xp: Tensor, weight: Tensor, input_size: Pair, stride: Pair, padding: Pair, dilation: Pair,
    need_input_grad: bool = True, method: str = "auto",
) -> tuple[Tensor | None, Tensor, Tensor]:
    """Vector-Jacobian product of conv2d.

    dy: (N, O, Ho, Wo), xp: from ``conv2d_forward``.
    dx = conv_transpose2d(dy, w) cropped to input_size   (None unless need_input_grad)
    dw = dy^T @ im2col(xp) reshaped to (O, C, kh, kw);  db = sum_{n,i,j} dy.
    """
    kernel = (weight.shape[2], weight.shape[3])
    dyh = _nhwc(dy).contiguous()
    dw = _weight_from_matrix(_conv_weight_grad(xp, dyh, kernel, stride, dilation)[0], weight.shape)
    db = dyh.sum((0, 1, 2))
    dx = None
    if need_input_grad:
        dx = _nchw(_transpose_nhwc(dyh, weight, None, stride, padding, dilation, input_size, method))
    return dx, dw, db


# ----------------------------------------------------------------------------- conv_transpose2d


def conv_transpose2d_forward(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: Pair, padding: Pair, output_padding: Pair,
    dilation: Pair, method: str = "auto",
) -> Tensor:
    """y = conv_transpose2d(x, w, b).

    x: (N, Cin, H, W), weight: (Cin, Cout, kh, kw), bias: (Cout,) or None -> y: (N, Cout, Ho, Wo),
    Ho = (H - 1)s - 2p + d(kh-1) + op + 1.
    """
    kernel = (weight.shape[2], weight.shape[3])
    out = conv_transpose2d_output_size((x.shape[2], x.shape[3]), kernel, stride, padding, output_padding, dilation)
    return _nchw(_transpose_nhwc(_nhwc(x), weight, bias, stride, padding, dilation, out, method))


def conv_transpose2d_vjp(
    dy: Tensor, x: Tensor, weight: Tensor, stride: Pair, padding: Pair, dilation: Pair,
    need_input_grad: bool = True,
) -> tuple[Tensor | None, Tensor, Tensor]:
    """Vector-Jacobian product of conv_transpose2d.

    dy: (N, Cout, Ho, Wo), x: (N, Cin, H, W), weight: (Cin, Cout, kh, kw).
    With cols = im2col(dy) of shape (N*H*W, kh*kw*Cout):
    dx = conv2d(dy, w) = cols @ w^T;  dw = x^T @ cols;  db = sum_{n,i,j} dy.
    """
    h, w = x.shape[2], x.shape[3]
    kernel = (weight.shape[2], weight.shape[3])
    pads = _window_pads((dy.shape[2], dy.shape[3]), kernel, stride, padding, dilation, (h, w))
    dyp = _pad_nhwc(_nhwc(dy), *pads)
    wt = _weight_matrix(weight).t() if need_input_grad else None
    gw, dxh = _conv_weight_grad(dyp, _nhwc(x), kernel, stride, dilation, wt)
    dx = _nchw(dxh) if dxh is not None else None
    return dx, _weight_from_matrix(gw, weight.shape), dy.sum((0, 2, 3))
