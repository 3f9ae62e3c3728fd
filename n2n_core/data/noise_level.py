"""How noisy is a photo? A robust estimate of the standard deviation of white noise in an image.

The finest diagonal Haar wavelet coefficients of an image, HH = (a - b - c + d) / 2 over each 2x2
block [[a, b], [c, d]], hold little of a natural image (they see only diagonal detail at the pixel
scale) and all of its white noise: for i.i.d. noise of standard deviation sigma, HH has standard
deviation sigma. Their median absolute value, divided by 0.6745 (the median of |N(0, 1)|), is
therefore a robust estimate of sigma that edges and texture, few among the coefficients, barely move
(Donoho and Johnstone, 1994). Per colour channel, then averaged.

Noise that JPEG compression or demosaicing has smoothed is correlated between neighbouring pixels: its
finest diagonal detail is much weaker than the noise (at JPEG quality 75 and sigma 10..15, it reads a half
to two thirds of the noise the file holds). So the estimate is also taken after a pixel-shuffle
down-sampling by 2 (the four sub-images x[dy::2, dx::2], in which neighbours are two pixels apart and the
correlation has mostly gone), and the larger of the two readings is kept (``SCALES``). White noise reads
the same at both scales; JPEG-compressed noise (quality 75..95, sigma 10..40) is read within about 20 % of
the noise the file really holds (about 0.7 sigma of the noise before compression: JPEG's chroma
sub-sampling and quantisation remove the rest). Fine texture makes a clean photo read a few units (1..6
on the 0..255 scale), a little more at scale 2 than at scale 1. Noise correlated over many pixels (a
scanned film grain, a heavily compressed JPEG) still reads low.
"""

from __future__ import annotations

import torch
from torch import Tensor

MAD_TO_SIGMA = 1 / 0.6744897501960817  # 1 / Phi^-1(3/4)
MAX_SAMPLES = 1 << 22  # coefficients per channel kept for the median: the cost stays bounded on any photo
SCALES = (1, 2)  # pixel-shuffle factors at which sigma is read; the estimate is the largest reading


def diagonal_details(image: Tensor) -> Tensor:
    """(..., H, W) -> (..., H // 2, W // 2): HH = (a - b - c + d) / 2 of each 2x2 block."""
    h, w = image.shape[-2] // 2 * 2, image.shape[-1] // 2 * 2
    x = image[..., :h, :w].to(torch.float32)
    return (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 2


def shuffled_details(image: Tensor, scale: int) -> Tensor:
    """(C, H, W) -> (C, M): the diagonal details of the ``scale`` x ``scale`` pixel-shuffle sub-images
    image[:, dy::scale, dx::scale] (dy, then dx, in increasing order), each flattened, concatenated."""
    return torch.cat([diagonal_details(image[:, dy::scale, dx::scale]).flatten(1)
                      for dy in range(scale) for dx in range(scale)], dim=1)


def sigma_at_scale(image: Tensor, scale: int) -> float:
    """median(|HH|) / 0.6745 of ``shuffled_details``, per channel, averaged, on the 0..255 scale; 0 when
    the sub-images are under 2x2 pixels. Over every ``stride``-th coefficient, stride = max(1, M // MAX_SAMPLES)."""
    details = shuffled_details(image, scale)
    if details.shape[1] == 0:
        return 0.0
    stride = max(1, details.shape[1] // MAX_SAMPLES)
    per_channel = details[:, ::stride].abs().median(dim=1).values * MAD_TO_SIGMA
    return float(per_channel.mean()) * 255


def estimate_sigma(image: Tensor) -> float:
    """sigma of the noise in ``image`` (C, H, W) in [0, 1], on the 0..255 scale: the largest of
    ``sigma_at_scale`` over ``SCALES`` (sigma = median(|HH|) / 0.6745 at each).

    Images under 2x2 pixels give 0. Large images use an evenly strided subset of the coefficients."""
    if image.dim() != 3:
        raise ValueError(f"estimate_sigma: expected a (C, H, W) image, got shape {tuple(image.shape)}")
    return max(sigma_at_scale(image, scale) for scale in SCALES)
