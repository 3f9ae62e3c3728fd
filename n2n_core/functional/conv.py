"""Convolutions lowered by hand to matrix multiplication.

Public functions take and return NCHW tensors of any strides. The work is done channels-last
(NHWC): the windows of the zero-padded input are a strided view, copied once into a column
matrix ``cols`` of shape (N*Ho*Wo, kh*kw*C) and multiplied with the weight reshaped to
(kh*kw*C, O). Outputs are NCHW views of NHWC storage (``torch.channels_last`` strides), so the
next layer reads them without a copy.

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
import torch.nn.functional as F
from torch import Tensor

Pair = tuple[int, int]


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
    return F.pad(x, (0, 0, left, right, top, bottom))


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


def _weight_matrix(weight: Tensor) -> Tensor:
    """(A, B, kh, kw) -> (A, kh*kw*B), the column order of ``_im2col``."""
    a = weight.shape[0]
    return weight.permute(0, 2, 3, 1).reshape(a, -1)


def _weight_from_matrix(m: Tensor, shape: torch.Size) -> Tensor:
    """Inverse of ``_weight_matrix``: (A, kh*kw*B) -> contiguous (A, B, kh, kw)."""
    a, b, kh, kw = shape
    return m.reshape(a, kh, kw, b).permute(0, 3, 1, 2).contiguous()


def _linear(cols: Tensor, wt: Tensor, bias: Tensor | None) -> Tensor:
    """cols @ wt (+ bias), fused into one GEMM when there is a bias."""
    if bias is None:
        return cols @ wt
    return torch.addmm(bias, cols, wt)


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
            cols = _im2col(xp, (len(oy), len(ox)), (1, 1), (dil_y, dil_x), (qy, qx), (lo_y + oy[0], lo_x + ox[0]))
            sub = wf[kh - 1 - uy :: sy, kw - 1 - ux :: sx][: len(oy), : len(ox)].reshape(-1, cout)
            res = _linear(cols, sub, bias).view(n, qy, qx, cout)
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
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: Pair, padding: Pair, dilation: Pair
) -> tuple[Tensor, Tensor]:
    """y = conv2d(x, w, b).

    x: (N, C, H, W), weight: (O, C, kh, kw), bias: (O,) or None.
    Returns y: (N, O, Ho, Wo) and cols: (N*Ho*Wo, kh*kw*C), which ``conv2d_vjp`` needs.
    """
    n = x.shape[0]
    kernel = (weight.shape[2], weight.shape[3])
    ho, wo = conv2d_output_size((x.shape[2], x.shape[3]), kernel, stride, padding, dilation)
    pads = _window_pads((x.shape[2], x.shape[3]), kernel, stride, padding, dilation, (ho, wo))
    cols = _im2col(_pad_nhwc(_nhwc(x), *pads), kernel, stride, dilation, (ho, wo))
    y = _linear(cols, _weight_matrix(weight).t(), bias)
    return _nchw(y.view(n, ho, wo, -1)), cols


def conv2d_vjp(
    dy: Tensor, cols: Tensor, weight: Tensor, input_size: Pair, stride: Pair, padding: Pair, dilation: Pair,
    need_input_grad: bool = True, method: str = "auto",
) -> tuple[Tensor | None, Tensor, Tensor]:
    """Vector-Jacobian product of conv2d.

    dy: (N, O, Ho, Wo), cols: from ``conv2d_forward``.
    dx = conv_transpose2d(dy, w) cropped to input_size   (None unless need_input_grad)
    dw = dy^T @ cols reshaped to (O, C, kh, kw);  db = sum_{n,i,j} dy.
    """
    n, o, ho, wo = dy.shape
    dy2 = _nhwc(dy).reshape(n * ho * wo, o)
    dw = _weight_from_matrix(dy2.t() @ cols, weight.shape)
    db = dy2.sum(0)
    dx = None
    if need_input_grad:
        dxh = _transpose_nhwc(dy2.view(n, ho, wo, o), weight, None, stride, padding, dilation, input_size, method)
        dx = _nchw(dxh)
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
    n, cin, h, w = x.shape
    kernel = (weight.shape[2], weight.shape[3])
    pads = _window_pads((dy.shape[2], dy.shape[3]), kernel, stride, padding, dilation, (h, w))
    cols = _im2col(_pad_nhwc(_nhwc(dy), *pads), kernel, stride, dilation, (h, w))
    x2 = _nhwc(x).reshape(n * h * w, cin)
    dw = _weight_from_matrix(x2.t() @ cols, weight.shape)
    db = dy.sum((0, 2, 3))
    dx = None
    if need_input_grad:
        dx = _nchw((cols @ _weight_matrix(weight).t()).view(n, h, w, cin))
    return dx, dw, db
