"""The noise-level estimate: median absolute diagonal wavelet detail / 0.6745, at pixel scales 1 and 2."""

import pytest
import torch

from n2n_core.data.datasets import builtin_images, to_tensor
from n2n_core.data.noise import jpeg_compress
from n2n_core.data.noise_level import diagonal_details, estimate_sigma, shuffled_details, sigma_at_scale


def test_diagonal_details_of_white_noise_keep_its_standard_deviation():
    noise = 0.1 * torch.randn(3, 512, 512, generator=torch.Generator().manual_seed(0))
    assert diagonal_details(noise).shape == (3, 256, 256)
    assert abs(diagonal_details(noise).std().item() - 0.1) < 0.002
    ramp = torch.linspace(0, 1, 64)[None, :, None] + torch.linspace(0, 1, 64)[None, None, :]
    assert diagonal_details(ramp).abs().max() < 1e-6  # a smooth image has none


@pytest.mark.parametrize("sigma", [5, 15, 25, 40, 60, 75])
def test_the_estimate_follows_the_noise_level_of_a_photo(sigma):
    clean = to_tensor(builtin_images(["chelsea"])[0])
    noisy = clean + sigma / 255 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(sigma))
    # fine texture adds a unit or two at the pixel-shuffled scale: chelsea at sigma 5 reads 7.0
    assert estimate_sigma(noisy) == pytest.approx(sigma, rel=0.15, abs=2.5)


def test_clean_and_compressed_photos_read_low_and_shapes_are_checked():
    clean = to_tensor(builtin_images(["chelsea"])[0])
    assert estimate_sigma(clean) < 3
    noisy = clean + 25 / 255 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    assert estimate_sigma(jpeg_compress(noisy, 90)) < estimate_sigma(noisy)  # JPEG removes part of the noise
    assert estimate_sigma(torch.rand(3, 1, 7)) == 0.0
    with pytest.raises(ValueError, match="estimate_sigma"):
        estimate_sigma(torch.rand(2, 3, 8, 8))


def test_pixel_shuffled_details_cover_each_sub_image_and_white_noise_reads_alike_at_both_scales():
    x = torch.arange(2 * 6 * 8, dtype=torch.float32).reshape(2, 6, 8)
    assert shuffled_details(x, 1).shape == (2, 12) and shuffled_details(x, 2).shape == (2, 4 * 2)  # 3x4 sub-images
    assert torch.equal(shuffled_details(x, 2)[:, :2], diagonal_details(x[:, 0::2, 0::2]).flatten(1))
    noise = 0.1 * torch.randn(3, 256, 256, generator=torch.Generator().manual_seed(1))
    assert sigma_at_scale(noise, 2) == pytest.approx(sigma_at_scale(noise, 1), rel=0.03)
    assert sigma_at_scale(torch.rand(3, 3, 2), 2) == 0.0 and sigma_at_scale(torch.rand(3, 3, 2), 1) > 0


@pytest.mark.parametrize("quality", [75, 85, 95])
@pytest.mark.parametrize("sigma", [10, 25, 40])
def test_jpeg_compressed_noise_is_read_at_the_level_the_file_holds(sigma, quality):
    """noisy = clean + N(0, sigma), saved as JPEG: the file holds about 0.7 sigma of noise (JPEG's chroma
    sub-sampling and quantisation remove the rest). The estimate reads that within 20 % (+1), never under
    0.6 sigma; on light noise at quality 75 the finest scale alone misses more than half of it."""
    clean = to_tensor(builtin_images(["chelsea"])[0])
    noisy = (clean + sigma / 255 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(sigma))).clamp(0, 1)
    compressed = jpeg_compress(noisy, quality)
    held = float((compressed - clean).std()) * 255
    assert estimate_sigma(compressed) == pytest.approx(held, rel=0.2, abs=1)
    assert estimate_sigma(compressed) >= 0.6 * sigma
    if quality == 75 and sigma == 10:
        assert sigma_at_scale(compressed, 1) < 0.75 * held <= estimate_sigma(compressed)
