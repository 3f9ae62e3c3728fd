"""How much memory a training run needs, estimated before it starts (no tensor is allocated).

A step of this framework keeps every forward activation for the backward pass (``forward_and_vjp``),
then holds their gradients as it walks back; pointwise layers keep a mask or their output. Measured on
a CPU (peak RSS of two Adam steps, ``benchmarks``-style, against the forward activations of the batch):
2.6x for ``fast`` at 16x64^2 and 8x128^2, 3.1x for ``unet-m`` at 8x64^2, 2.8x for ``unet-l`` at 4x128^2.
The estimate takes ``ACTIVATION_FACTOR`` = 3.5 times the forward activations (float32), plus per
process the parameters, their gradients, Adam's two moments and an EMA copy (5 values a parameter),
the batch's inputs and targets, and ``PROCESS_BASE`` bytes for the interpreter and torch. The dataset
itself (read from disk in batches) is not counted.
"""

from __future__ import annotations

import functools
import math
import os

from n2n_core.models import build
from n2n_core.nn.module import Module
from n2n_core.analysis import activation_values_per_pixel

ACTIVATION_FACTOR = 3.5  # training bytes / forward activation bytes (measured 2.6-3.1, with a margin)
PARAMETER_COPIES = 5  # weights, gradients, Adam's m and v, an EMA copy
PROCESS_BASE = 256 * 1024 * 1024  # Python, torch and the data loader of one process
BYTES_PER_VALUE = 4  # float32 training


def training_memory(model: Module | str, batch_size: int, patch_size: int, nproc: int = 1,
                    channels: int = 3) -> int:
    """Estimated peak bytes of a training job: ``model`` (a module or an architecture name), a global batch
    of ``batch_size`` patches of ``patch_size`` squared, over ``nproc`` processes (the batch is shared,
    each process holds its own parameters and optimizer state)::

        4 * (3.5 * values_per_pixel * batch * patch^2 + 2 * channels * batch * patch^2)
          + nproc * (4 * 5 * parameters + 256 MiB)
    """
    if batch_size < 1 or patch_size < 1 or nproc < 1:
        raise ValueError("batch_size, patch_size and nproc must be >= 1")
    values, parameters = _arch_figures(model, channels) if isinstance(model, str) else _figures(model, channels)
    pixels = batch_size * patch_size * patch_size
    activations = ACTIVATION_FACTOR * values * pixels
    data = 2 * channels * pixels
    per_process = BYTES_PER_VALUE * PARAMETER_COPIES * parameters + PROCESS_BASE
    return math.ceil(BYTES_PER_VALUE * (activations + data) + nproc * per_process)


def _figures(module: Module, channels: int) -> tuple[float, int]:
    """(activation values per input pixel, parameters) of ``module``."""
    return activation_values_per_pixel(module, channels), sum(p.numel() for p in module.parameters())


@functools.cache
def _arch_figures(arch: str, channels: int) -> tuple[float, int]:
    return _figures(build(arch), channels)


def machine_memory() -> int | None:
    """This machine's physical memory in bytes (``os.sysconf``, else ``/proc/meminfo``); None if unknown."""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and size > 0:
            return pages * size
    except (AttributeError, ValueError, OSError):
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
