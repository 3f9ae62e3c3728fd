"""Image quality metrics on float images in [0, 1]."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def psnr(x: Tensor, ref: Tensor, data_range: float = 1.0) -> float:
    """10 log10(R^2 / mean((x - ref)^2)) over the whole image, in dB (inf when identical)."""
    if x.shape != ref.shape:
        raise ValueError(f"psnr: shapes differ: {tuple(x.shape)} vs {tuple(ref.shape)}")
    mse = torch.mean((x.double() - ref.double()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(data_range**2 / mse)


def ssim(x: Tensor, ref: Tensor, data_range: float = 1.0) -> float:
    """Mean SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03), channels averaged.

    x, ref: (C, H, W) or (H, W).
    """
    from skimage.metrics import structural_similarity

    if x.shape != ref.shape:
        raise ValueError(f"ssim: shapes differ: {tuple(x.shape)} vs {tuple(ref.shape)}")
    a = x.detach().cpu().double().numpy()
    b = ref.detach().cpu().double().numpy()
    kw = dict(data_range=data_range, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    if a.ndim == 3:
        return float(np.mean([structural_similarity(a[c], b[c], **kw) for c in range(a.shape[0])]))
    return float(structural_similarity(a, b, **kw))
