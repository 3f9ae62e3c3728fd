"""Inference precision: which floating-point type a network's matrix products run in.

    float32    every value float32 (exact to the float32 rounding of the products)
    bfloat16   weights and activations bfloat16; the products accumulate in float32 (oneDNN on CPUs with
               AVX512-BF16 or AMX, tensor cores on GPUs); the network's input, a residual sum, an
               ensemble's mean and a noise estimate stay float32
    float16    the same with float16 (GPUs)
    auto       bfloat16 where the hardware multiplies it natively (CPUs with AMX or AVX512-BF16, GPUs
               with bfloat16 tensor cores), float32 elsewhere

A choice of ``None`` reads ``N2N_PRECISION`` from the environment (default ``auto``). Reduced precision
applies to float32 networks only: a float64 network is a request for exactness and stays float64.
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path

import torch

from n2n_core.nn.layers.cast import Cast, name_of
from n2n_core.nn.module import Module

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
ENVIRONMENT_VARIABLE = "N2N_PRECISION"
REDUCED = {"bfloat16": torch.bfloat16, "float16": torch.float16}
#: CPU flags (Linux /proc/cpuinfo) of native bfloat16 products: AMX tiles and AVX-512 BF16 dot products
BFLOAT16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def check_precision(precision: str) -> str:
    """``precision`` if it is one of ``PRECISIONS``; ValueError otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return precision


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where /proc/cpuinfo does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AMX or AVX512-BF16)."""
    return any(flag in cpu_flags() for flag in BFLOAT16_CPU_FLAGS)


def device_has_bfloat16(device: torch.device) -> bool:
    """Native bfloat16 products on ``device``: the CPU flags above, or a GPU with bfloat16 tensor cores."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return cpu_has_bfloat16()
    return False


def resolve_precision(precision: str | None, device: torch.device | str = "cpu") -> str:
    """The precision that runs: ``precision`` (None: ``N2N_PRECISION``, default ``auto``) with ``auto``
    decided for ``device``; always one of float32, bfloat16, float16."""
    chosen = check_precision(precision if precision is not None else os.environ.get(ENVIRONMENT_VARIABLE) or "auto")
    if chosen != "auto":
        return chosen
    return "bfloat16" if device_has_bfloat16(torch.device(device)) else "float32"


def compute_dtype(precision: str, model_dtype: torch.dtype) -> torch.dtype:
    """The type the network's products run in: the reduced type of ``precision`` for a float32 network,
    the network's own type otherwise (float32 precision, or a float64 network)."""
    if model_dtype == torch.float32 and precision in REDUCED:
        return REDUCED[precision]
    return model_dtype


def model_precision(model: Module, precision: str) -> str:
    """The name of the type ``model``'s products run in under a resolved ``precision`` (what responses,
    summaries and benchmarks report): ``precision`` for a float32 model, the model's own type otherwise."""
    parameters = model.parameters()
    dtype = compute_dtype(precision, parameters[0].dtype if parameters else torch.float32)
    return name_of(dtype)


def device_of(model: Module) -> torch.device:
    """Where ``model``'s parameters live (the CPU for a model without parameters)."""
    parameters = model.parameters()
    return parameters[0].device if parameters else torch.device("cpu")


def at_precision(model: Module, dtype: torch.dtype) -> Module:
    """``model`` computing its products in ``dtype``: a copy whose reducible parts are wrapped in ``Cast``
    (weights converted once, here), or ``model`` itself when its parameters already have that type.

    Each module says what must stay in the caller's type (``Module.with_reduced_body``): a residual
    U-Net keeps its sum x + f(x) in float32, so the rounding of bfloat16 touches only f(x), the noise
    estimate, never the photo itself.
    """
    parameters = model.parameters()
    if not parameters or parameters[0].dtype == dtype:
        return model
    rebuilt = model.with_reduced_body(lambda body: at_precision(body, dtype))
    if rebuilt is not None:
        return rebuilt
    return Cast(copy.deepcopy(model).to(dtype=dtype), dtype)
