"""Inference on images of any size: reflection padding to the network's size multiple, tiles
with margins (bounded memory, no seams), batches.

A tile is processed with a margin of at least the network's receptive radius and only its core is
kept, so tiled and untiled outputs agree up to float rounding. Tile origins sit on multiples of
the network's size multiple, so pooling grids line up with the untiled run.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image as PILImage
from torch import Tensor

from .images import Picture, from_rgb, to_rgb
from .layers import Concat, Conv2d, MaxPool2d, NearestUpsampling, Residual, Sequential, TransposeConv2d
from .models import size_multiple
from .module import Module


def receptive_radius(model: Module) -> int:
    """An upper bound, in input pixels, on how far an output pixel sees."""

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
        if isinstance(m, Residual):
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


def _pad_to(x: Tensor, mult: int, extra: int = 0) -> tuple[Tensor, tuple[int, int]]:
    """Reflect-pad (N, C, H, W) at the bottom/right to multiples of ``mult`` (at least ``extra`` more)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % mult, (-w) % mult
    if ph == pw == 0:
        return x, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


def _run(model: Module, x: Tensor) -> Tensor:
    mult = size_multiple(model)
    xp, (h, w) = _pad_to(x, mult)
    return model(xp)[..., :h, :w]


def _denoise_array(model: Module, a: np.ndarray, tile: int, device: torch.device | str | None) -> np.ndarray:
    """(H, W) or (H, W, C) array, integers at full scale or floats in [0, 1] -> the same dtype and shape."""
    scale = float(np.iinfo(a.dtype).max) if np.issubdtype(a.dtype, np.integer) else 1.0
    x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32) / scale)
    x = x[None] if a.ndim == 2 else x.permute(2, 0, 1)
    alpha = x[3:] if x.shape[0] in (2, 4) else None
    color = x[:3] if x.shape[0] >= 3 else x[:1]
    out = from_rgb(denoise(model, to_rgb(color), tile=tile, device=device), color.shape[0])  # type: ignore[arg-type]
    if alpha is not None:
        out = torch.cat([out, x[out.shape[0]:]])
    res = out[0].numpy() if a.ndim == 2 else out.permute(1, 2, 0).numpy()
    if scale != 1.0:
        return np.clip(np.round(res * scale), 0, scale).astype(a.dtype)
    return res.astype(a.dtype, copy=False)


def denoise(model: Module, image: Any, tile: int = 512, batch_size: int = 4,
            device: torch.device | str | None = None) -> Any:
    """Denoise images of any size with ``model``.

    ``image`` is a float tensor in [0, 1] of shape (C, H, W) or (N, C, H, W), a list of (C, H, W)
    tensors, a numpy array (H, W[, C]) (uint8/uint16 at full scale or float in [0, 1]) or a PIL image;
    the result has the same type, shape and dtype (tensors: on the input's device, clamped to [0, 1]).
    Grey images go through an RGB model channel-replicated; an alpha channel is kept as it is.
    Images larger than ``tile`` (per side) go through overlapping tiles; equally sized images of a list
    are batched ``batch_size`` at a time. The model runs on ``device`` (default: where its parameters live).
    """
    if isinstance(image, np.ndarray):
        return _denoise_array(model, image, tile, device)
    if isinstance(image, PILImage.Image):
        mode = image.mode if image.mode in ("L", "LA", "RGB", "RGBA") else "RGB"
        return PILImage.fromarray(_denoise_array(model, np.asarray(image.convert(mode)), tile, device), mode)
    if isinstance(image, list):
        out: list[Tensor | None] = [None] * len(image)
        groups: dict[tuple, list[int]] = {}
        for i, im in enumerate(image):
            groups.setdefault(tuple(im.shape), []).append(i)
        for idx in groups.values():
            for k in range(0, len(idx), batch_size):
                chunk = idx[k : k + batch_size]
                res = denoise(model, torch.stack([image[i] for i in chunk]), tile, batch_size, device)
                for j, i in enumerate(chunk):
                    out[i] = res[j]  # type: ignore[index]
        return out  # type: ignore[return-value]

    if not isinstance(image, Tensor) or image.dim() not in (3, 4):
        raise ValueError(f"denoise: expected a (C, H, W) or (N, C, H, W) tensor, got {getattr(image, 'shape', image)}")
    single = image.dim() == 3
    x = image[None] if single else image
    params = model.parameters()
    dev = torch.device(device) if device is not None else (params[0].device if params else x.device)
    dtype = params[0].dtype if params else torch.float32
    mult = size_multiple(model)
    h, w = x.shape[-2:]
    out = torch.empty(x.shape, dtype=image.dtype if image.is_floating_point() else torch.float32, device=image.device)
    if h <= tile and w <= tile:
        out.copy_(_run(model, x.to(dev, dtype)).clamp_(0, 1))
    else:
        margin = -(-receptive_radius(model) // mult) * mult
        core = max((tile - 2 * margin) // mult * mult, -(-256 // mult) * mult)
        for top in range(0, h, core):
            for left in range(0, w, core):
                t0, l0 = max(0, top - margin), max(0, left - margin)
                t1, l1 = min(h, top + core + margin), min(w, left + core + margin)
                piece = _run(model, x[..., t0:t1, l0:l1].to(dev, dtype))
                bh, bw = min(core, h - top), min(core, w - left)
                out[..., top : top + bh, left : left + bw] = piece[..., top - t0 : top - t0 + bh,
                                                                    left - l0 : left - l0 + bw].clamp_(0, 1)
    return out[0] if single else out


def denoise_picture(model: Module, pic: Picture, tile: int = 512, device: torch.device | str | None = None) -> Picture:
    """Denoise a decoded picture, keeping its size, mode, alpha and bit depth (grey runs channel-replicated)."""
    out = denoise(model, to_rgb(pic.pixels), tile=tile, device=device)
    return pic.with_pixels(from_rgb(out, pic.pixels.shape[0]))  # type: ignore[arg-type]
