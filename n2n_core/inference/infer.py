"""Inference on images of any size: reflection padding to the network's size multiple, tiles
with margins (bounded memory, no seams), batches.

A tile is processed with a margin of at least the network's receptive radius and only its core is
kept, so tiled and untiled outputs agree up to float rounding. Tile origins sit on multiples of
the network's size multiple, so pooling grids line up with the untiled run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image as PILImage
from torch import Tensor

from n2n_core.nn.functional.pad import pad
from n2n_core.data.images import Picture, from_rgb, to_rgb
from n2n_core.inference.noise_adaptive import NoiseAdaptive
from n2n_core.models import size_multiple
from n2n_core.inference.precision import at_precision, compute_dtype, resolve_precision
from n2n_core.nn.module import Module
from n2n_core.analysis import activation_values_per_pixel, receptive_radius
from n2n_core.inference.streaming import row_stream, state_per_column, streamable


def _pad_to(x: Tensor, mult: int) -> tuple[Tensor, tuple[int, int]]:
    """Reflect-pad (N, C, H, W) at the bottom/right to multiples of ``mult``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % mult, (-w) % mult
    if ph == pw == 0:
        return x, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return pad(x, {-2: (0, ph), -1: (0, pw)}, mode), (h, w)


def _run(model: Module, x: Tensor) -> Tensor:
    mult = size_multiple(model)
    xp, (h, w) = _pad_to(x, mult)
    return model(xp)[..., :h, :w]


def _denoise_array(model: Module, a: np.ndarray, tile: int | None, device: torch.device | str | None,
                   **hooks: Any) -> np.ndarray:
    """(H, W) or (H, W, C) array, integers at full scale or floats in [0, 1] -> the same dtype and shape."""
    scale = float(np.iinfo(a.dtype).max) if np.issubdtype(a.dtype, np.integer) else 1.0
    x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32) / scale)
    x = x[None] if a.ndim == 2 else x.permute(2, 0, 1)
    alpha = x[3:] if x.shape[0] in (2, 4) else None
    color = x[:3] if x.shape[0] >= 3 else x[:1]
    out = from_rgb(denoise(model, to_rgb(color), tile=tile, device=device, **hooks),  # type: ignore[arg-type]
                   color.shape[0])
    if alpha is not None:
        out = torch.cat([out, x[out.shape[0]:]])
    res = out[0].numpy() if a.ndim == 2 else out.permute(1, 2, 0).numpy()
    if scale != 1.0:
        return np.clip(np.round(res * scale), 0, scale).astype(a.dtype)
    return res.astype(a.dtype, copy=False)


def denoise(model: Module, image: Any, tile: int | None = None, batch_size: int = 4,
            device: torch.device | str | None = None, should_stop: Callable[[], bool] | None = None,
            progress: Callable[[int, int], None] | None = None, tile_memory: int | None = None,
            strength: float = 1.0, precision: str | None = None) -> Any:
    """Denoise images of any size with ``model``.

    ``image`` is a float tensor in [0, 1] of shape (C, H, W) or (N, C, H, W), a list of (C, H, W)
    tensors, a numpy array (H, W[, C]) (uint8/uint16 at full scale or float in [0, 1]) or a PIL image;
    the result has the same type, shape and dtype (tensors: on the input's device, clamped to [0, 1]).
    Grey images go through an RGB model channel-replicated; an alpha channel is kept as it is.
    Large images go through overlapping tiles (see ``plan_tiles``) whose activations fit in
    ``tile_memory`` bytes (default ``DEFAULT_TILE_MEMORY``), or of about ``tile * tile`` pixels when
    ``tile`` is given; the work is bounded by the pixel count whatever the aspect ratio; equally sized
    images of a list are batched ``batch_size`` at a time. The model runs on ``device`` (default: where its
    parameters live). ``should_stop()`` is polled before each tile and raises ``Cancelled`` when true;
    ``progress(done, total)`` is called after each tile of a single image. ``strength`` in [0, 1] blends
    the result with the input (``blend``): 1 (default) is the network's output, 0 the input.
    ``precision`` (``n2n_core.inference.precision``: auto, float32, bfloat16, float16; None reads ``N2N_PRECISION``,
    default auto) is the type the network's products run in.
    """
    hooks = {"should_stop": should_stop, "progress": progress, "tile_memory": tile_memory, "strength": strength,
             "precision": precision}
    if isinstance(image, np.ndarray):
        return _denoise_array(model, image, tile, device, **hooks)
    if isinstance(image, PILImage.Image):
        mode = image.mode if image.mode in ("L", "LA", "RGB", "RGBA") else "RGB"
        return PILImage.fromarray(_denoise_array(model, np.asarray(image.convert(mode)), tile, device, **hooks), mode)
    if isinstance(image, list):
        out: list[Tensor | None] = [None] * len(image)
        groups: dict[tuple, list[int]] = {}
        for i, im in enumerate(image):
            groups.setdefault(tuple(im.shape), []).append(i)
        for idx in groups.values():
            for k in range(0, len(idx), batch_size):
                chunk = idx[k : k + batch_size]
                res = denoise(model, torch.stack([image[i] for i in chunk]), tile, batch_size, device, should_stop,
                              tile_memory=tile_memory, strength=strength, precision=precision)
                for j, i in enumerate(chunk):
                    out[i] = res[j]  # type: ignore[index]
        return out  # type: ignore[return-value]

    return run_steps(denoise_steps(model, image, tile, device, tile_memory, strength, precision), should_stop,
                     progress)


def check_strength(strength: float) -> float:
    """``strength`` as a float in [0, 1]; ValueError otherwise."""
    if not 0 <= strength <= 1:  # also refuses NaN
        raise ValueError(f"denoise: strength must be between 0 and 1, got {strength}")
    return float(strength)


def blend(noisy: Tensor, denoised: Tensor, strength: float) -> Tensor:
    """noisy + strength (denoised - noisy): 1 is the (clamped) network output, 0 the input unchanged."""
    return denoised if strength == 1 else noisy + strength * (denoised - noisy)


def denoise_steps(model: Module, image: Tensor, tile: int | None = None, device: torch.device | str | None = None,
                  tile_memory: int | None = None, strength: float = 1.0,
                  precision: str | None = None) -> Generator[tuple[int, int], None, Tensor]:
    """``denoise`` of a (C, H, W) or (N, C, H, W) tensor as a stream of tiles: yields (done, total) after
    each tile and returns the result. A scheduler interleaves the tiles of several images by stepping
    their generators in turn; closing a generator abandons its image."""
    if not isinstance(image, Tensor) or image.dim() not in (3, 4):
        raise ValueError(f"denoise: expected a (C, H, W) or (N, C, H, W) tensor, got {getattr(image, 'shape', image)}")
    strength = check_strength(strength)
    if isinstance(model, NoiseAdaptive):
        return (yield from _adaptive_steps(model, image, tile, device, tile_memory, strength, precision))
    single = image.dim() == 3
    x = image[None] if single else image
    params = model.parameters()
    dev = torch.device(device) if device is not None else (params[0].device if params else x.device)
    dtype = params[0].dtype if params else torch.float32
    runner = at_precision(model, compute_dtype(resolve_precision(precision, dev), dtype))
    mult = size_multiple(model)
    h, w = x.shape[-2:]
    out = torch.empty(x.shape, dtype=image.dtype if image.is_floating_point() else torch.float32, device=image.device)
    budget = tile_memory or DEFAULT_TILE_MEMORY
    if tile is None and streamable(model):
        yield from _stream_steps(model, runner, x, out, budget, dev, dtype, strength)
        return out[0] if single else out
    area = tile * tile if tile else tile_area(model, budget, dtype)
    fits = _padded(h, mult) * _padded(w, mult) <= area
    margin = 0 if fits else _margin(model)
    plan = plan_tiles(h, w, area, margin, mult)
    for done, t in enumerate(plan):
        window = x[..., t.window_top : t.window_bottom, t.window_left : t.window_right].to(dev, dtype)
        piece = blend(window, _run(runner, window).clamp_(0, 1), strength)
        top, left = t.top - t.window_top, t.left - t.window_left
        out[..., t.top : t.top + t.height, t.left : t.left + t.width] = piece[
            ..., top : top + t.height, left : left + t.width].clamp_(0, 1)
        yield done + 1, len(plan)
    return out[0] if single else out


def _adaptive_steps(model: NoiseAdaptive, image: Tensor, tile: int | None, device: torch.device | str | None,
                    tile_memory: int | None, strength: float,
                    precision: str | None = None) -> Generator[tuple[int, int], None, Tensor]:
    """A ``NoiseAdaptive`` model: the number of passes decided on each whole image, then each pass of the
    body over whole images (streamed or tiled as usual); ``strength`` blends the last pass with the input."""
    batch = image[None] if image.dim() == 3 else image
    counts = [model.passes_for(picture) for picture in batch]
    out = batch
    steps = None
    for k in range(max(counts)):
        chosen = [i for i, count in enumerate(counts) if count > k]
        inputs = out[chosen] if len(chosen) < len(out) else out
        stream = denoise_steps(model.body, inputs, tile, device, tile_memory, precision=precision)
        while True:
            try:
                done, total = next(stream)
            except StopIteration as finished:
                passed = finished.value
                break
            steps = steps or total
            yield k * steps + done, max(counts) * steps
        out = passed if len(chosen) == len(out) else out.clone().index_copy_(0, torch.tensor(chosen), passed)
    out = blend(batch.to(out.dtype), out, strength).clamp_(0, 1)
    return out[0] if image.dim() == 3 else out


def _margin(model: Module) -> int:
    """The receptive radius rounded up to the size multiple: what a tile or strip reads beyond its core."""
    mult = size_multiple(model)
    return -(-receptive_radius(model) // mult) * mult


@dataclass(frozen=True)
class BandPlan:
    """How a streamable model goes over an image: full-height strips (one, the whole width, unless the
    image is too wide for the budget), each pushed through a row stream ``rows`` rows at a time."""

    strips: list[Tile]
    rows: int

    def steps(self, height: int, mult: int) -> int:
        return len(self.strips) * -(-_padded(height, mult) // self.rows)


#: pixels per band of a row stream on a CPU. Measured on 2 cores (unet-m): bands of 10 to 64 rows of
#: a 6000-wide photo cost 1.02-1.04x per pixel what a whole 512x512 image costs, so the band is kept
#: small: a short step, so that other requests' tiles interleave often. A GPU takes bands as large as
#: the budget allows.
CPU_BAND_PIXELS = 1 << 16


def plan_bands(model: Module, h: int, w: int, tile_memory: int, dtype: torch.dtype = torch.float32,
               band_pixels: int | None = CPU_BAND_PIXELS) -> BandPlan:
    """Strips and band height for streaming an (h, w) image through ``model`` within ``tile_memory`` bytes.

    A stream of a strip W columns wide holds about W * (state + rows * activations) values: its lag
    (``streaming.state_per_column``) and one band's activations (``activation_values_per_pixel``, an
    upper bound). Bands hold about ``band_pixels`` pixels (None: as many as the budget allows), at
    least one row. Only when even a band of ``size_multiple`` rows of the whole width does not fit is
    the image cut into full-height strips with margins of the receptive radius, as tiles are.
    """
    mult = size_multiple(model)
    size = torch.empty((), dtype=dtype).element_size()
    values = tile_memory / size
    state, per_pixel = state_per_column(model), activation_values_per_pixel(model)

    def rows_for(width: int) -> int:
        padded_width = _padded(width, mult)
        fitting = int((values / padded_width - state) // per_pixel)
        wanted = fitting if band_pixels is None else min(fitting, max(1, band_pixels // padded_width))
        return max(1, min(_padded(h, mult), wanted))

    if int((values / _padded(w, mult) - state) // per_pixel) >= mult:
        return BandPlan([Tile(0, 0, h, w, 0, 0, h, w)], rows_for(w))
    margin = _margin(model)
    thin = 4 * mult  # the band of a strip: a few size multiples
    window = int(values // (state + thin * per_pixel)) // mult * mult
    core = max(mult, _padded(margin, mult), window - 2 * margin)
    strips = _grid(h, w, h, core, margin)
    return BandPlan(strips, rows_for(max(t.window_right - t.window_left for t in strips)))


def _padded_rows(x: Tensor, top: int, bottom: int, pad_h: int, pad_w: int, mode: str) -> Tensor:
    """Rows [top, bottom) of x (..., H, W) padded by ``pad_h`` rows below and ``pad_w`` columns right in
    ``mode``, as ``_pad_to`` pads the whole image, built from the few rows that the padding reads."""
    h = x.shape[-2]
    if bottom <= h and pad_w == 0:
        return x[..., top:bottom, :]
    first = max(0, min(top, h - 1 - pad_h)) if bottom > h else top
    window = x[..., first : min(bottom, h), :]
    padded = pad(window, {-2: (0, bottom - min(bottom, h)), -1: (0, pad_w)}, mode)
    return padded[..., top - first :, :]


def _stream_steps(model: Module, runner: Module, x: Tensor, out: Tensor, tile_memory: int, dev: torch.device,
                  dtype: torch.dtype, strength: float) -> Generator[tuple[int, int], None, None]:
    """Denoise x (N, C, H, W) into ``out`` by row streams (``plan_bands``), yielding after each band.
    ``model`` plans the bands; ``runner`` (``model`` at the precision that runs) computes them."""
    mult = size_multiple(model)
    h, w = x.shape[-2:]
    plan = plan_bands(model, h, w, tile_memory, dtype, CPU_BAND_PIXELS if dev.type == "cpu" else None)
    total, done = plan.steps(h, mult), 0
    for strip in plan.strips:
        columns = x[..., strip.window_left : strip.window_right]
        width = columns.shape[-1]
        pad_h, pad_w = (-h) % mult, (-width) % mult
        mode = "reflect" if pad_h < h and pad_w < width else "replicate"
        height = h + pad_h
        stream = row_stream(runner, piece_pixels=plan.rows * (width + pad_w))
        core = slice(strip.left - strip.window_left, strip.left - strip.window_left + strip.width)
        written = 0
        for top in range(0, height, plan.rows):
            bottom = min(height, top + plan.rows)
            band = _padded_rows(columns, top, bottom, pad_h, pad_w, mode).to(dev, dtype)
            rows = stream.push(band, last=bottom == height)
            del band
            if rows is not None and written < h:
                count = min(rows.shape[-2], h - written)
                piece = rows[..., :count, core].clamp_(0, 1)
                if strength != 1:
                    noisy = columns[..., written : written + count, core].to(piece.device, piece.dtype)
                    piece = blend(noisy, piece, strength).clamp_(0, 1)
                out[..., written : written + count, strip.left : strip.left + strip.width] = piece
                written += count
            done += 1
            yield done, total
        if written != h:
            raise RuntimeError(f"denoise: the row stream gave {written} of {h} rows")


Result = TypeVar("Result")


def run_steps(steps: Generator[tuple[int, int], None, Result], should_stop: Callable[[], bool] | None = None,
              progress: Callable[[int, int], None] | None = None) -> Result:
    """Drive a tile stream to its end: ``should_stop()`` before each tile (``Cancelled`` when true),
    ``progress(done, total)`` after each."""
    done = total = 0
    try:
        while True:
            if should_stop is not None and should_stop():
                steps.close()
                raise Cancelled(f"stopped after {done} of {total or '?'} tiles")
            done, total = next(steps)
            if progress is not None:
                progress(done, total)
    except StopIteration as finished:
        return finished.value


DEFAULT_TILE_MEMORY = 768 << 20  # bytes of activations per tile (N2N_TILE_MEMORY in the service)


def tile_area(model: Module, tile_memory: int, dtype: torch.dtype = torch.float32) -> int:
    """Pixels per tile window whose activations fit in ``tile_memory`` bytes (at least 64 x 64)."""
    per_pixel = activation_values_per_pixel(model) * torch.empty((), dtype=dtype).element_size()
    return max(64 * 64, int(tile_memory // per_pixel))


class Cancelled(Exception):
    """``denoise`` stopped between two tiles because ``should_stop()`` said so."""


@dataclass(frozen=True)
class Tile:
    """The core [top, top+height) x [left, left+width) that a tile writes, and the window it reads."""

    top: int
    left: int
    height: int
    width: int
    window_top: int
    window_left: int
    window_bottom: int
    window_right: int


def _padded(n: int, mult: int) -> int:
    return -(-n // mult) * mult


def _grid(h: int, w: int, core_h: int, core_w: int, margin: int) -> list[Tile]:
    """Cores of core_h x core_w covering (h, w), each read with ``margin`` more on every side (clipped)."""
    return [Tile(top, left, min(core_h, h - top), min(core_w, w - left), max(0, top - margin), max(0, left - margin),
                 min(h, top + core_h + margin), min(w, left + core_w + margin))
            for top in range(0, h, core_h) for left in range(0, w, core_w)]


def plan_tiles(h: int, w: int, area: int, margin: int, mult: int) -> list[Tile]:
    """Tiles for an (h, w) image whose windows hold about ``area`` pixels each, whatever the aspect ratio.

    The whole image is one tile when its padded area fits. Otherwise the layout that computes the
    fewest pixels wins among square tiles of side sqrt(area), full-height strips (no vertical
    margin) and full-width strips, strips only where their windows fit in ``area``. Cores are multiples of ``mult`` (so pooling grids
    line up with the untiled run) and at least ``max(mult, margin)`` wide, so the work per output
    pixel stays bounded (a window is at most 3x its core per side) even when ``area`` is small.
    """
    if h <= 0 or w <= 0:
        return [Tile(0, 0, h, w, 0, 0, h, w)]
    if _padded(h, mult) * _padded(w, mult) <= area:
        return [Tile(0, 0, h, w, 0, 0, h, w)]
    smallest = max(mult, _padded(margin, mult))

    def core(budget: int) -> int:
        return max(smallest, (budget - 2 * margin) // mult * mult)

    def computed(t: Tile) -> int:
        return _padded(t.window_bottom - t.window_top, mult) * _padded(t.window_right - t.window_left, mult)

    side = math.isqrt(area)
    squares = _grid(h, w, core(side), core(side), margin)
    strips = [_grid(h, w, h, core(area // _padded(h, mult)), margin),
              _grid(h, w, core(area // _padded(w, mult)), w, margin)]
    fitting = [squares] + [tiles for tiles in strips if max(computed(t) for t in tiles) <= area]
    return min(fitting, key=lambda tiles: sum(computed(t) for t in tiles))


def denoise_picture(model: Module, pic: Picture, tile: int | None = None, device: torch.device | str | None = None,
                    should_stop: Callable[[], bool] | None = None,
                    progress: Callable[[int, int], None] | None = None, tile_memory: int | None = None,
                    strength: float = 1.0, precision: str | None = None) -> Picture:
    """Denoise a decoded picture, keeping its size, mode, alpha and bit depth (grey runs channel-replicated).

    ``should_stop``, ``progress``, ``strength`` and ``precision`` work as in ``denoise``.
    """
    return run_steps(picture_steps(model, pic, tile, device, tile_memory, strength, precision), should_stop,
                     progress)


def picture_steps(model: Module, pic: Picture, tile: int | None = None, device: torch.device | str | None = None,
                  tile_memory: int | None = None, strength: float = 1.0,
                  precision: str | None = None) -> Generator[tuple[int, int], None, Picture]:
    """``denoise_picture`` as a stream of tiles (see ``denoise_steps``)."""
    out = yield from denoise_steps(model, to_rgb(pic.pixels), tile, device, tile_memory, strength, precision)
    return pic.with_pixels(from_rgb(out, pic.pixels.shape[0]))
