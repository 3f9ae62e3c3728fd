"""A denoiser that looks at how noisy its input is: one pass, or more when the noise is strong."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from n2n_core.nn.module import Mask, Module, VJP, clear_grads, empty_like_grad, store_grads, values_beside_body
from n2n_core.data.noise_level import estimate_sigma


class NoiseAdaptive(Module):
    """y = body^k(x), k = ``passes`` when the estimated noise of x exceeds ``threshold``, else 1.

    The estimate is ``n2n_core.data.noise_level.estimate_sigma`` of each whole image (0..255 scale). A blind
    denoiser trained on a range of noise levels leaves part of strong noise in its output; a second
    pass over that output removes it (the ``blind`` model: +0.4 dB at sigma 50, +0.8 dB at sigma 100 on
    the scikit-image photos), while on light noise it would only smooth detail (-0.14 dB at sigma 15).
    The decision needs the whole image, so tiled and streamed inference take it once per image and run
    each pass over the whole image (``n2n_core.inference.infer``), and clamp each pass's output to [0, 1] as they
    clamp every denoised image; this forward pass and its vjp do not clamp.
    """

    row_streaming = None  # the decision needs the whole image

    def __init__(self, body: Module, threshold: float = 25.0, passes: int = 2) -> None:
        super().__init__()
        if not isinstance(body, Module):
            raise ValueError(f"NoiseAdaptive: body is {type(body).__name__}, not an n2n_core Module")
        if not 0 <= float(threshold) <= 255:
            raise ValueError(f"NoiseAdaptive: threshold must be a noise level in 0..255, got {threshold!r}")
        if isinstance(passes, bool) or not isinstance(passes, int) or not 1 <= passes <= 8:
            raise ValueError(f"NoiseAdaptive: passes must be an integer from 1 to 8, got {passes!r}")
        self.body, self.threshold, self.passes = body, float(threshold), passes

    def named_children(self) -> list[tuple[str, Module]]:
        return [("body", self.body)]

    def config(self) -> dict[str, Any]:
        return {"type": "NoiseAdaptive", "body": self.body.config(), "threshold": self.threshold,
                "passes": self.passes}

    @classmethod
    def _from_config(cls, cfg: dict[str, Any]) -> Module:
        return cls(Module.from_config(cfg["body"]), float(cfg.get("threshold", 25.0)), int(cfg.get("passes", 2)))

    def __repr__(self) -> str:
        return f"NoiseAdaptive({self.body!r}, threshold={self.threshold}, passes={self.passes})"

    # -- layer protocol: the most passes -------------------------------------------------
    def reach(self, scale: float) -> tuple[float, float]:
        """r = passes * the body's r (each pass reads the whole output of the one before)."""
        r, scale = self.body.reach(scale)
        return r * self.passes, scale

    def activation_values(self, scale: float, channels: int) -> tuple[float, float, int]:
        """One pass's values (the passes run one after the other) plus the output (``values_beside_body``)."""
        return values_beside_body(self.body, scale, channels)

    def dependency_mask(self, mask: Mask) -> Mask:
        """The body's mask map applied ``passes`` times."""
        for _ in range(self.passes):
            mask = self.body.dependency_mask(mask)
        return mask

    def size_multiple(self) -> int:
        return self.body.size_multiple()

    def with_reduced_body(self, reduce: Callable[[Module], Module]) -> Module:
        """The noise estimate stays in the caller's type; the body may be reduced."""
        return NoiseAdaptive(reduce(self.body), self.threshold, self.passes)

    def passes_for(self, image: Tensor) -> int:
        """How many passes the (C, H, W) image in [0, 1] gets."""
        return self.passes if estimate_sigma(image) > self.threshold else 1

    def forward(self, x: Tensor) -> Tensor:
        single = x.dim() == 3
        batch = x[None] if single else x
        counts = torch.tensor([self.passes_for(image) for image in batch])
        y = self.body(batch)
        for k in range(1, self.passes):
            chosen = torch.nonzero(counts > k, as_tuple=True)[0]
            if chosen.numel():
                y = y.clone()
                y[chosen] = self.body(y[chosen])
        return y[0] if single else y

    def _forward_and_vjp(self, x: Tensor) -> tuple[Tensor, VJP]:
        """The passes as in ``forward``, each with its vjp; backwards, the last pass's vjp runs on the
        images that took it, and so on down to the first. The body's gradients add up over its uses."""
        clear_grads([self.body])
        single = x.dim() == 3
        batch = x[None] if single else x
        counts = torch.tensor([self.passes_for(image) for image in batch], dtype=torch.long)
        y, first_vjp = self.body.forward_and_vjp(batch)
        later: list[tuple[Tensor, VJP | None]] = []
        for k in range(1, self.passes):
            chosen = torch.nonzero(counts > k, as_tuple=True)[0]
            if not chosen.numel():
                break
            again, again_vjp = self.body.forward_and_vjp(y[chosen])
            y = y.clone()
            y[chosen] = again
            later.append((chosen, again_vjp))

        def vjp(dy: Tensor, need_input_grad: bool = True) -> tuple[Tensor | None, Tensor, Tensor]:
            e = empty_like_grad(dy)
            grad = dy[None] if single else dy
            for i in reversed(range(len(later))):
                chosen, pass_vjp = later[i]
                later[i] = (chosen, None)  # free the closure's saved tensors as we go
                d_input, dw, db = pass_vjp(grad[chosen], True)  # type: ignore[misc]
                store_grads(self.body, dw, db)
                grad = grad.clone()
                grad[chosen] = d_input
            dx, dw, db = first_vjp(grad, need_input_grad)
            store_grads(self.body, dw, db)
            return (dx[0] if single and dx is not None else dx), e, e

        return (y[0] if single else y), vjp
