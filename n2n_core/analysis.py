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

import torch

from n2n_core.nn.module import Mask, Module


def receptive_bound(model: Module) -> int:
    """An upper bound, in input pixels, on how far an output pixel sees (each layer's full extent, summed:
    ``Module.reach``). ValueError naming a layer that does not describe its reach."""
    return math.ceil(model.reach(1.0)[0])


def activation_values_per_pixel(model: Module, channels: int = 3) -> float:
    """Sum over layers of output channels / scale^2: all activations of a forward pass, per input pixel
    (``Module.activation_values``), plus the input's ``channels``.

    An upper bound on the values alive at once (a forward pass frees most of them as it goes), used
    to size tiles from a memory budget.
    """
    return model.activation_values(1.0, channels)[0] + channels


def receptive_radius(model: Module) -> int:
    """The largest |row offset| or |column offset| between an output pixel and an input pixel it depends
    on, over every phase of the network's pooling grid. Cached per architecture.

    ValueError naming a layer that does not describe itself (``Module.size_multiple``, ``Module.reach``,
    ``Module.dependency_mask``)."""
    model.size_multiple()  # on the model itself: a private layer type could not be rebuilt from its config
    return _radius(json.dumps(model.config(), sort_keys=True))


@functools.lru_cache(maxsize=64)
def _radius(config: str) -> int:
    model = Module.from_config(json.loads(config))
    mult = model.size_multiple()
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
    """The output positions of ``m`` that depend on the input positions marked in ``mask`` (N, H, W)
    (``Module.dependency_mask``)."""
    return m.dependency_mask(mask)
