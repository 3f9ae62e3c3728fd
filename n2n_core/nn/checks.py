"""Argument and input checks shared by the layers. Every failure is a ValueError naming the layer."""

from __future__ import annotations

from typing import Any

from torch import Tensor

Pair = tuple[int, int]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def to_pair(layer: str, name: str, value: Any, minimum: int) -> Pair:
    """int or (h, w) -> (h, w), each an int >= minimum."""
    pair = (value, value) if _is_int(value) else tuple(value) if isinstance(value, (tuple, list)) else None
    if pair is None or len(pair) != 2 or not all(_is_int(v) for v in pair):
        raise ValueError(f"{layer}: {name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{layer}: {name} must be >= {minimum}, got {value!r}")
    return pair  # type: ignore[return-value]


def positive_int(layer: str, name: str, value: Any) -> int:
    if not _is_int(value) or value < 1:
        raise ValueError(f"{layer}: {name} must be a positive int, got {value!r}")
    return value


def check_image_batch(layer: str, x: Any, channels: int | None = None) -> None:
    """x must be a floating (N, C, H, W) tensor, with C == channels when given."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{layer}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        want = f"(N, {channels}, H, W)" if channels else "(N, C, H, W)"
        raise ValueError(f"{layer}: expected a 4-d input {want}, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{layer}: expected {channels} input channels, got input of shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{layer}: expected a floating-point input, got {x.dtype} of shape {tuple(x.shape)}")


def check_same_shape(layer: str, a: Tensor, b: Tensor, what: str = "input") -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"{layer}: {what} shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
