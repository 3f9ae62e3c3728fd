"""Noise models. Images are float tensors in [0, 1]; sigmas are given on the 0..255 scale.

A spec string names a model: ``gaussian:25``, ``gaussian:0-50`` (sigma uniform per image,
noise-level blind), ``poisson:30`` (peak photon count), ``impulse:0.2`` (each pixel replaced by
a random colour with probability 0.2), ``bernoulli:0.5`` (each pixel dropped to 0 with
probability 0.5), ``poisson-gaussian:0.04,25`` (camera noise: signal-dependent variance a x + b^2
with per-channel levels a <= 0.04, b <= 25/255, drawn per image), and mixtures of them joined by
``+`` (``gaussian:0-50+poisson-gaussian:0.04,25``: each image draws one component).

``jpeg_compress`` is the other thing photos go through: lossy 8-bit JPEG, as phones and cameras
save them. Training applies it to inputs only (``JpegInputs``), so targets keep zero-mean noise.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
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


@dataclass(frozen=True)
class PoissonGaussian:
    """Camera noise: x + sqrt(a_c x + b_c^2) N(0, 1), the Gaussian limit of Poisson shot noise plus read noise.

    Per image and per colour channel c, the gain a_c (variance per unit of intensity) is uniform in
    [0, gain_max] and the read noise b_c (0..255 scale) uniform in [0, read_max]: colour channels of
    real sensors carry different levels. At mid grey, gain 0.02 alone is sigma = 25 on the 0..255 scale.
    """

    gain_max: float = 0.04
    read_max: float = 25.0
    kind: str = "poisson-gaussian"

    def __post_init__(self) -> None:
        if not (self.gain_max >= 0 and self.read_max >= 0):
            raise ValueError(f"poisson-gaussian noise: levels must be >= 0, got {self.gain_max}, {self.read_max}")

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        n, c = x.shape[0], x.shape[1]
        gain = (self.gain_max * torch.rand((n, c, 1, 1), generator=gen)).to(x.device, x.dtype)
        read = (self.read_max / 255.0 * torch.rand((n, c, 1, 1), generator=gen)).to(x.device, x.dtype)
        std = (gain * x.clamp(min=0) + read * read).sqrt()
        return x + std * torch.randn(x.shape, generator=gen).to(x.device, x.dtype)

    def spec(self) -> str:
        return f"poisson-gaussian:{self.gain_max:g},{self.read_max:g}"


@dataclass(frozen=True)
class Mixture:
    """Each image draws one of ``components`` uniformly, then that model's noise."""

    components: tuple[Any, ...] = ()
    kind: str = "mixture"

    def __post_init__(self) -> None:
        if len(self.components) < 2 or any(isinstance(c, Mixture) for c in self.components):
            raise ValueError("noise mixture: needs at least two components, none of them a mixture")

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        choice = torch.randint(len(self.components), (x.shape[0],), generator=gen)
        out = torch.empty_like(x)
        for index, component in enumerate(self.components):
            rows = (choice == index).nonzero().flatten().tolist()
            if rows:
                out[rows] = component(x[rows], gen)
        return out

    def spec(self) -> str:
        return "+".join(c.spec() for c in self.components)


NoiseModel = Gaussian | Poisson | Impulse | Bernoulli | PoissonGaussian | Mixture


def jpeg_compress(x: Tensor, quality: int) -> Tensor:
    """Images (..., 3, H, W) in [0, 1] -> what a JPEG file of that quality (4:2:0, as cameras save) decodes to.

    The input is stored as 8 bits first (``quantize8``); the result is on x's device and dtype."""
    if not 1 <= quality <= 100:
        raise ValueError(f"jpeg quality must be in 1..100, got {quality}")
    flat = quantize8(x.detach().to("cpu", torch.float32)).mul_(255).round_().to(torch.uint8).reshape(-1, *x.shape[-3:])
    out = []
    for image in flat:
        buffer = io.BytesIO()
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=quality)
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        out.append(torch.from_numpy(decoded.copy()).permute(2, 0, 1))
    return torch.stack(out).reshape(x.shape).to(x.device, x.dtype).div_(255)


@dataclass(frozen=True)
class JpegInputs:
    """A ``share`` of training inputs saved as JPEG at a quality drawn uniformly from [lo, hi] (the rest stay 8-bit PNG)."""

    quality_range: tuple[int, int] = (70, 95)
    share: float = 0.5

    def __post_init__(self) -> None:
        lo, hi = self.quality_range
        if not (1 <= lo <= hi <= 100 and 0 <= self.share <= 1):
            raise ValueError(f"jpeg inputs: need 1 <= lo <= hi <= 100 and share in [0, 1], got {self.quality_range}, "
                             f"{self.share}")

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        lo, hi = self.quality_range
        hit = (torch.rand(x.shape[0], generator=gen) < self.share).tolist()
        qualities = torch.randint(lo, hi + 1, (x.shape[0],), generator=gen).tolist()
        out = x.clone()
        for row, (compress, quality) in enumerate(zip(hit, qualities)):
            if compress:
                out[row] = jpeg_compress(x[row], quality)
        return out

    def spec(self) -> str:
        return f"{self.quality_range[0]}-{self.quality_range[1]}"


def parse_jpeg_inputs(spec: str | None) -> JpegInputs | None:
    """'70-95' (half the inputs as JPEG of quality 70..95) | '90' | None/'' (off)."""
    if not spec:
        return None
    lo, _, hi = spec.strip().partition("-")
    try:
        return JpegInputs((int(lo), int(hi or lo)))
    except ValueError as e:
        if "jpeg inputs:" in str(e):
            raise
        raise ValueError(f"bad jpeg quality range {spec!r}: use LO-HI, e.g. 70-95") from None


def parse_noise(spec: str) -> NoiseModel:
    """'gaussian:25' | 'gaussian:0-50' | 'poisson:30' | 'impulse:0.2' | 'bernoulli:0.5' |
    'poisson-gaussian:0.04,25' | several of them joined by '+' (a mixture) -> a noise model."""
    if "+" in spec:
        return Mixture(tuple(parse_noise(part) for part in spec.split("+")))
    kind, _, arg = spec.strip().lower().partition(":")
    try:
        if kind == "poisson-gaussian":
            gain, _, read = (arg or "0.04,25").partition(",")
            return PoissonGaussian(gain_max=float(gain), read_max=float(read or 25))
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
    raise ValueError(f"unknown noise {spec!r}; use gaussian:SIGMA, gaussian:LO-HI, poisson:LAM, impulse:P, bernoulli:P, "
                     "poisson-gaussian:GAIN,READ or several joined by '+'")


def noise_from_dict(d: dict[str, Any]) -> NoiseModel:
    """{"kind": "gaussian", "sigma": 25} | {"kind": "gaussian", "sigma_range": [0, 50]} | {"kind": "poisson", "lam": 30}."""
    d = dict(d)
    kind = d.pop("kind", None)
    if kind == "mixture":
        parts = d.get("components")
        if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
            raise ValueError("a noise mixture needs a list of component noise models")
        return Mixture(tuple(noise_from_dict(p) for p in parts))
    cls = {"gaussian": Gaussian, "poisson": Poisson, "impulse": Impulse, "bernoulli": Bernoulli,
           "poisson-gaussian": PoissonGaussian}.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"unknown noise kind {kind!r}")
    if cls is Gaussian and d.get("sigma_range") is not None:
        d["sigma_range"] = tuple(d["sigma_range"])
        d["sigma"] = None
    return cls(**d)


def noise_to_dict(noise: NoiseModel) -> dict[str, Any]:
    if isinstance(noise, Mixture):
        return {"kind": "mixture", "components": [noise_to_dict(c) for c in noise.components]}
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(noise).items() if v is not None}
