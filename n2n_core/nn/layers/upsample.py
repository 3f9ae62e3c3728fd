"""Nearest-neighbour upsampling by integer factors."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from n2n_core.nn.checks import Pair, check_image_batch, to_pair
from n2n_core.nn.module import VJP, Mask, Module, empty_like_grad


def upsample_nearest_forward(x: Tensor, scale: Pair) -> Tensor:
    """x: (N, C, H, W) -> y: (N, C, sH, sW), y[n, c, i, j] = x[n, c, i // s_h, j // s_w].

    Computed channels-last, so a channels-last input stays so without a transpose.
    """
    n, c, h, w = x.shape
    sh, sw = scale
    xh = x.permute(0, 2, 3, 1)[:, :, None, :, None, :]
    y = xh.expand(n, h, sh, w, sw, c).reshape(n, h * sh, w * sw, c)
    return y.permute(0, 3, 1, 2)


def upsample_nearest_vjp(dy: Tensor, scale: Pair) -> Tensor:
    """dx[n, c, i, j] = sum over the s_h x s_w block of dy that x[n, c, i, j] was copied to."""
    n, c, hh, ww = dy.shape
    sh, sw = scale
    blocks = dy.permute(0, 2, 3, 1).reshape(n, hh // sh, sh, ww // sw, sw, c)
    return blocks.sum((2, 4)).permute(0, 3, 1, 2)


class NearestUpsampling(Module):
    """Nearest-neighbour upsampling; ``scale_factor`` is an int or an (h, w) pair of ints >= 1."""

    row_streaming = "upsample"

    def __init__(self, scale_factor: Any = 2) -> None:
        super().__init__()
        self.scale_factor: Pair = to_pair("NearestUpsampling", "scale_factor", scale_factor, 1)

    # -- layer protocol ------------------------------------------------------------------
    def reach(self, scale: float) -> tuple[float, float]:
        """r = scale (an output pixel sees one input pixel, of that span), scale' = scale / min(f)."""
        return scale, scale / min(self.scale_factor)

    def activation_values(self, scale: float, channels: int) -> tuple[float, float, int]:
        """scale' = scale / min(f): channels / scale'^2 values, the channels kept."""
        scale /= min(self.scale_factor)
        return channels / scale**2, scale, channels

    def dependency_mask(self, mask: Mask) -> Mask:
        """Each position repeated f_h x f_w times."""
        fh, fw = self.scale_factor
        return mask.repeat_interleave(fh, dim=1).repeat_interleave(fw, dim=2)

    def size_multiple(self) -> int:
        """1: any input size."""
        return 1

    def config(self) -> dict[str, Any]:
        return {"type": "NearestUpsampling", "scale_factor": list(self.scale_factor)}

    def forward(self, x: Tensor) -> Tensor:
        check_image_batch(repr(self), x)
        return upsample_nearest_forward(x, self.scale_factor)

    def _forward_and_vjp(self, x: Tensor) -> tuple[Tensor, VJP]:
        y = self.forward(x)

        def vjp(dy: Tensor, need_input_grad: bool = True) -> tuple[Tensor, Tensor, Tensor]:
            e = empty_like_grad(dy)
            return upsample_nearest_vjp(dy, self.scale_factor), e, e

        return y, vjp
