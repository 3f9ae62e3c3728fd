"""How noisy is a photo? A robust estimate of the standard deviation of white noise in an image.

The finest diagonal Haar wavelet coefficients of an image, HH = (a - b - c + d) / 2 over each 2x2
block [[a, b], [c, d]], hold little of a natural image (they see only diagonal detail at the pixel
scale) and all of its white noise: for i.i.d. noise of standard deviation sigma, HH has standard
deviation sigma. Their median absolute value, divided by 0.6745 (the median of |N(0, 1)|), is
therefore a robust estimate of sigma that edges and texture, few among the coefficients, barely move
(Donoho and Johnstone, 1994). Per colour channel, then averaged.

It measures white noise. Noise that JPEG compression or demosaicing has smoothed looks weaker than
it is, and fine texture makes a clean photo look slightly noisy (a few units on the 0..255 scale).
"""

from __future__ import annotations

import torch
from torch import Tensor

MAD_TO_SIGMA = 1 / 0.6744897501960817  # 1 / Phi^-1(3/4)
MAX_SAMPLES = 1 << 22  # coefficients per channel kept for the median: the cost stays bounded on any photo


def diagonal_details(image: Tensor) -> Tensor:
    """(..., H, W) -> (..., H // 2, W // 2): HH = (a - b - c + d) / 2 of each 2x2 block."""
    h, w = image.shape[-2] // 2 * 2, image.shape[-1] // 2 * 2
    x = image[..., :h, :w].to(torch.float32)
    return (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 2


def estimate_sigma(image: Tensor) -> float:
    """sigma of the white noise in ``image`` (C, H, W) in [0, 1], on the 0..255 scale; sigma = median(|HH|) / 0.6745.

    Images under 2x2 pixels give 0. Large images use an evenly strided subset of the coefficients."""
    if image.dim() != 3:
        raise ValueError(f"estimate_sigma: expected a (C, H, W) image, got shape {tuple(image.shape)}")
    details = diagonal_details(image).flatten(1)
    if details.shape[1] == 0:
        return 0.0
    stride = max(1, details.shape[1] // MAX_SAMPLES)
    per_channel = details[:, ::stride].abs().median(dim=1).values * MAD_TO_SIGMA
    return float(per_channel.mean()) * 255
