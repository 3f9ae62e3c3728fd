"""Noise models. Images are float tensors in [0, 1]; sigmas are given on the 0..255 scale.

A spec string names a model: ``gaussian:25``, ``gaussian:0-50`` (sigma uniform per image,
noise-level blind), ``poisson:30`` (peak photon count), ``impulse:0.2`` (each pixel replaced by
a random colour with probability 0.2), ``bernoulli:0.5`` (each pixel dropped to 0 with
probability 0.5).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor


def quantize8(x: Tensor) -> Tensor:
    """What an 8-bit file stores: clip(round(255 x), 0, 255) / 255."""
    return x.mul(255).round_().clamp_(0, 255).div_(255)


@dataclass(frozen=True)
class Gaussian:
    """x + N(0, sigma^2), sigma fixed or drawn uniformly from sigma_range per image."""

    sigma: float | None = 25.0
    sigma_range: tuple[float, float] | None = None
    kind: str = "gaussian"

    def __post_init__(self) -> None:
        if self.sigma_range is not None:
            lo, hi = self.sigma_range
            if not 0 <= lo <= hi:
                raise ValueError(f"gaussian noise: sigma range must satisfy 0 <= lo <= hi, got {self.sigma_range}")
        elif self.sigma is None or self.sigma < 0:
            raise ValueError(f"gaussian noise: sigma must be >= 0, got {self.sigma}")

    def sigmas(self, n: int, gen: torch.Generator) -> Tensor:
        if self.sigma_range is None:
            return torch.full((n,), float(self.sigma))  # type: ignore[arg-type]
        lo, hi = self.sigma_range
        return lo + (hi - lo) * torch.rand(n, generator=gen)

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        s = self.sigmas(x.shape[0], gen).view(-1, *([1] * (x.dim() - 1))) / 255.0
        return x + (s * torch.randn(x.shape, generator=gen)).to(x.device, x.dtype)

    def spec(self) -> str:
        if self.sigma_range is not None:
            return f"gaussian:{self.sigma_range[0]:g}-{self.sigma_range[1]:g}"
        return f"gaussian:{self.sigma:g}"


@dataclass(frozen=True)
class Poisson:
    """Poisson(lam * x) / lam: shot noise with ``lam`` photons at full intensity.

    Random numbers come from ``gen`` (a CPU generator, so runs are reproducible on any device)."""

    lam: float = 30.0
    kind: str = "poisson"

    def __post_init__(self) -> None:
        if not self.lam > 0:
            raise ValueError(f"poisson noise: lam must be > 0, got {self.lam}")

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        rate = x.clamp(min=0).to("cpu", torch.float32) * self.lam
        return (torch.poisson(rate, generator=gen) / self.lam).to(x.device, x.dtype)

    def spec(self) -> str:
        return f"poisson:{self.lam:g}"


@dataclass(frozen=True)
class Impulse:
    """Each pixel replaced by a uniformly random colour with probability p."""

    p: float = 0.2
    kind: str = "impulse"

    def __post_init__(self) -> None:
        if not 0 <= self.p <= 1:
            raise ValueError(f"impulse noise: p must be in [0, 1], got {self.p}")

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        n, _, h, w = x.shape
        hit = (torch.rand((n, 1, h, w), generator=gen) < self.p).to(x.device)
        return torch.where(hit, torch.rand(x.shape, generator=gen).to(x.device, x.dtype), x)

    def spec(self) -> str:
        return f"impulse:{self.p:g}"


@dataclass(frozen=True)
class Bernoulli:
    """Each pixel kept with probability 1 - p, else set to 0 (multiplicative Bernoulli noise)."""

    p: float = 0.5
    kind: str = "bernoulli"

    def __post_init__(self) -> None:
        if not 0 <= self.p < 1:
            raise ValueError(f"bernoulli noise: p must be in [0, 1), got {self.p}")

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        n, _, h, w = x.shape
        keep = (torch.rand((n, 1, h, w), generator=gen) >= self.p).to(x.device, x.dtype)
        return x * keep

    def spec(self) -> str:
        return f"bernoulli:{self.p:g}"


NoiseModel = Gaussian | Poisson | Impulse | Bernoulli


def parse_noise(spec: str) -> NoiseModel:
    """'gaussian:25' | 'gaussian:0-50' | 'poisson:30' | 'impulse:0.2' | 'bernoulli:0.5' -> a noise model."""
    kind, _, arg = spec.strip().lower().partition(":")
    try:
        if kind == "gaussian":
            if "-" in arg.lstrip("-"):
                lo, hi = arg.split("-", 1)
                return Gaussian(sigma=None, sigma_range=(float(lo), float(hi)))
            return Gaussian(sigma=float(arg or 25))
        if kind == "poisson":
            return Poisson(lam=float(arg or 30))
        if kind == "impulse":
            return Impulse(p=float(arg or 0.2))
        if kind == "bernoulli":
            return Bernoulli(p=float(arg or 0.5))
    except ValueError as e:
        if "noise:" in str(e):
            raise
        raise ValueError(f"bad noise spec {spec!r}: {e}") from None
    raise ValueError(f"unknown noise {spec!r}; use gaussian:SIGMA, gaussian:LO-HI, poisson:LAM, impulse:P or bernoulli:P")


def noise_from_dict(d: dict[str, Any]) -> NoiseModel:
    """{"kind": "gaussian", "sigma": 25} | {"kind": "gaussian", "sigma_range": [0, 50]} | {"kind": "poisson", "lam": 30}."""
    d = dict(d)
    kind = d.pop("kind", None)
    cls = {"gaussian": Gaussian, "poisson": Poisson, "impulse": Impulse, "bernoulli": Bernoulli}.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"unknown noise kind {kind!r}")
    if cls is Gaussian and d.get("sigma_range") is not None:
        d["sigma_range"] = tuple(d["sigma_range"])
        d["sigma"] = None
    return cls(**d)


def noise_to_dict(noise: NoiseModel) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(noise).items() if v is not None}
