"""Named architectures built from n2n_core layers.

    seed      the course's 4-layer strided encoder-decoder (48 channels, sigmoid output)
    unet-*    residual U-Nets: per level two 3x3 convs + LeakyReLU(0.1), max-pooling, nearest
              upsampling, skip connections by concatenation, a 1x1 linear head; y = x + f(x)
    n2n-unet  the Noise2Noise paper's U-Net (Lehtinen et al. 2018): 5 poolings, 48/96 channels
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from n2n_core.nn.layers import (
    Concat,
    Conv2d,
    Identity,
    LeakyReLU,
    MaxPool2d,
    NearestUpsampling,
    ReLU,
    Residual,
    Sequential,
    Sigmoid,
    TransposeConv2d,
)
from n2n_core.nn.module import Module


def seed(channels: int = 48) -> Sequential:
    c = channels
    return Sequential(
        Conv2d(3, c, 3, stride=2, padding=1), ReLU(),
        Conv2d(c, c, 3, stride=2, padding=1), ReLU(),
        TransposeConv2d(c, c, 3, stride=2, padding=1, output_padding=1), ReLU(),
        TransposeConv2d(c, 3, 3, stride=2, padding=1, output_padding=1), Sigmoid(),
    )


def _conv_block(cin: int, cout: int) -> list[Module]:
    return [Conv2d(cin, cout, 3, padding=1), LeakyReLU(0.1), Conv2d(cout, cout, 3, padding=1), LeakyReLU(0.1)]


def _unet_level(cin: int, widths: list[int]) -> Sequential:
    """x (cin ch) -> widths[0] ch at the same resolution; recursion one level down per width."""
    c = widths[0]
    if len(widths) == 1:
        return Sequential(*_conv_block(cin, c))
    inner = Sequential(MaxPool2d(2), _unet_level(c, widths[1:]), NearestUpsampling(2))
    return Sequential(
        *_conv_block(cin, c), Concat(Identity(), inner),
        Conv2d(c + widths[1], c, 3, padding=1), LeakyReLU(0.1), Conv2d(c, c, 3, padding=1), LeakyReLU(0.1),
    )


def unet(widths: tuple[int, ...] = (32, 48, 64, 64), channels: int = 3) -> Residual:
    """Residual U-Net with len(widths) - 1 poolings; input sides must be multiples of 2**(len(widths)-1)."""
    return Residual(Sequential(_unet_level(channels, list(widths)), Conv2d(widths[0], channels, 1)))


def widen_unet(model: Module, widths: tuple[int, ...]) -> Residual:
    """A ``unet(widths)`` that computes exactly what ``model``, a narrower ``unet`` of as many levels, does.

    Function-preserving widening (Net2WiderNet with zeros): every old weight is copied to its old
    channels; the weights that read a new channel are zero, so the new channels do not change the
    output until training moves them; the weights that write a new channel keep their fresh random
    init, so they get gradients at once.

    The convolutions of ``unet`` come in this order: a_0, b_0, ..., a_L-1, b_L-1 (down the levels),
    c_L-2, d_L-2, ..., c_0, d_0 (back up), head. Only c_i reads a concatenation [level i, level i+1]:
    there, old channel ``old_i + j`` of the upper part moves to ``widths[i] + j``.
    """
    levels = len(widths)
    old_convs = [m for m in model.modules() if isinstance(m, Conv2d)]
    wide = unet(widths, channels=old_convs[0].in_channels if old_convs else 3).to(
        device=old_convs[0].weight.device if old_convs else None, dtype=old_convs[0].weight.dtype if old_convs else None)
    new_convs = [m for m in wide.modules() if isinstance(m, Conv2d)]
    old_widths = tuple(c.out_channels for c in old_convs[0 : 2 * levels : 2])
    if (len(old_convs) != len(new_convs) or len(old_widths) != levels
            or any(o > n for o, n in zip(old_widths, widths))):
        raise ValueError(f"widen_unet: cannot widen a U-Net of widths {old_widths} to {widths}")
    concat_reader = {2 * levels + 2 * (levels - 2 - i): i for i in range(levels - 1)}  # conv index -> level
    for index, (old, new) in enumerate(zip(old_convs, new_convs)):
        cols = torch.arange(old.in_channels)
        if index in concat_reader:
            i = concat_reader[index]
            cols = torch.cat([torch.arange(old_widths[i]), widths[i] + torch.arange(old_widths[i + 1])])
        new.weight[: old.out_channels].zero_()
        new.weight[torch.arange(old.out_channels)[:, None], cols[None, :]] = old.weight
        new.bias[: old.out_channels] = old.bias
    return wide


def n2n_unet(channels: int = 3) -> Sequential:
    """The Noise2Noise U-Net: enc 48 x 6 with 5 poolings, dec 96, then 64, 32 and a linear 3x3 output."""

    def lrelu() -> LeakyReLU:
        return LeakyReLU(0.1)

    inner: Module = Sequential(Conv2d(48, 48, 3, padding=1), lrelu())  # enc_conv6 at 1/32
    inner_out = 48
    for _ in range(4):  # levels 1/16 .. 1/2: enc_conv{k}, pool, inner, upsample, concat, dec a/b
        down = Sequential(Conv2d(48, 48, 3, padding=1), lrelu(), MaxPool2d(2), inner, NearestUpsampling(2))
        inner = Sequential(Concat(Identity(), down), Conv2d(48 + inner_out, 96, 3, padding=1), lrelu(),
                           Conv2d(96, 96, 3, padding=1), lrelu())
        inner_out = 96
    top = Sequential(Conv2d(channels, 48, 3, padding=1), lrelu(), Conv2d(48, 48, 3, padding=1), lrelu(),
                     MaxPool2d(2), inner, NearestUpsampling(2))
    return Sequential(Concat(Identity(), top), Conv2d(channels + 96, 64, 3, padding=1), lrelu(),
                      Conv2d(64, 32, 3, padding=1), lrelu(), Conv2d(32, channels, 3, padding=1))


ARCHITECTURES: dict[str, Callable[[], Module]] = {
    "seed": seed,
    "tiny": lambda: unet((8, 8)),
    "fast": lambda: unet((16, 24, 32)),
    "unet-s": lambda: unet((32, 32, 32, 32)),
    "unet-m": lambda: unet((32, 48, 64, 96)),
    "unet-l": lambda: unet((48, 64, 96, 128)),
    "unet": lambda: unet((48, 64, 96, 96, 128)),
    "n2n-unet": n2n_unet,
}

# The architecture a training run gets when none is named (`n2n train`, `POST /train`, TrainConfig):
# the shipped `fast` model's (53k parameters; 30.5 dB on CBSD68 at sigma 25). A pass costs about 0.44x
# unet-s and 0.3x the shipped default's unet-m (benchmarks/results/model_cost.json), which matters on a CPU
# and for jobs that run beside the service; name a larger one (unet-m, unet-l) when quality matters more.
DEFAULT_ARCH = "fast"


def build(name: str, **kwargs: Any) -> Module:
    """A fresh model of the named architecture (see ``ARCHITECTURES``)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name](**kwargs)


@functools.cache
def _fresh_configs() -> tuple[tuple[str, dict[str, Any]], ...]:
    """(name, config) of every architecture, built once, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        return tuple((name, make().config()) for name, make in ARCHITECTURES.items())


def arch_of(config: dict[str, Any]) -> str | None:
    """The name in ``ARCHITECTURES`` whose fresh model has this ``Module.config()``, or None."""
    return next((name for name, fresh in _fresh_configs() if fresh == config), None)


def size_multiple(model: Module) -> int:
    """Input sides must be multiples of this: the product of every pooling and conv stride factor
    (``Module.size_multiple``; ValueError naming a layer that does not describe itself)."""
    return model.size_multiple()
