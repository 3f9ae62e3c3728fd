"""Benchmark evaluation: PSNR and SSIM of a model over (noisy, clean) pairs."""

from __future__ import annotations

import time
from typing import Any

from torch import Tensor

from n2n_core.inference.infer import denoise
from n2n_core.training.metrics import psnr, ssim
from n2n_core.nn.module import Module
from n2n_core.inference.precision import device_of, model_precision, resolve_precision


def evaluate(model: Module, pairs: list[tuple[Tensor, Tensor]], progress: bool = True, desc: str = "eval",
             precision: str | None = None) -> dict[str, Any]:
    """Mean PSNR/SSIM of the noisy inputs and of the model's outputs, and seconds per image; ``precision``
    as in ``denoise`` (None: ``N2N_PRECISION``, default auto), reported as the type that ran."""
    from tqdm import tqdm

    rows = []
    for noisy, clean in tqdm(pairs, desc=desc, unit="img", disable=None if progress else True):
        t0 = time.perf_counter()
        out = denoise(model, noisy, precision=precision)
        dt = time.perf_counter() - t0
        rows.append({"noisy_psnr": psnr(noisy, clean), "psnr": psnr(out, clean), "ssim": ssim(out, clean),
                     "seconds": dt})
    n = max(1, len(rows))
    mean = {k: sum(r[k] for r in rows) / n for k in ("noisy_psnr", "psnr", "ssim", "seconds")}
    ran = model_precision(model, resolve_precision(precision, device_of(model)))
    return {"images": len(rows), **mean, "precision": ran, "per_image": rows}
