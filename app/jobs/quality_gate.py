"""The quality gate of a finished training run: a run that diverged (a NaN or infinite loss, or
validation images made worse than both the noisy input and the network it started from) ends as
failed and is neither registered nor activated."""

from __future__ import annotations

import math
from typing import Any


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinite floats as None: a diverging run's metrics must stay valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def mean_psnr_of_noisy(pairs: list[tuple[Any, Any]]) -> float | None:
    """The PSNR of the noisy validation inputs against their clean images: what doing nothing scores."""
    from n2n_core.training.metrics import psnr

    if not pairs:
        return None
    return sum(psnr(noisy, clean) for noisy, clean in pairs) / len(pairs)


def divergence(final: float | None, noisy: float | None, start: float | None) -> str | None:
    """Why a finished run's validation PSNR says it diverged, or None.

    Diverged: NaN, or below both the noisy input's PSNR and the starting network's on the same
    validation images (training made the images worse than doing nothing, and worse than where it
    started). A short run still climbing from its start towards the noisy input's PSNR has not diverged.
    """
    if final is None or noisy is None:
        return None
    if math.isnan(final):
        return "training diverged: the validation PSNR is NaN"
    if final < noisy and (start is None or final < start):
        since = f" and the {start:.2f} dB of the network it started from" if start is not None else ""
        return (f"training diverged: validation PSNR {final:.2f} dB is below the noisy input's {noisy:.2f} dB{since} "
                "on the same images; try a lower learning_rate")
    return None
