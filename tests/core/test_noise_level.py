"""The noise-level estimate: median absolute diagonal wavelet detail / 0.6745."""

import pytest
import torch

from n2n_core.data import builtin_images, to_tensor
from n2n_core.noise import jpeg_compress
from n2n_core.noise_level import diagonal_details, estimate_sigma


def test_diagonal_details_of_white_noise_keep_its_standard_deviation():
    noise = 0.1 * torch.randn(3, 512, 512, generator=torch.Generator().manual_seed(0))
    assert diagonal_details(noise).shape == (3, 256, 256)
    assert abs(diagonal_details(noise).std().item() - 0.1) < 0.002
    ramp = torch.linspace(0, 1, 64)[None, :, None] + torch.linspace(0, 1, 64)[None, None, :]
    assert diagonal_details(ramp).abs().max() < 1e-6  # a smooth image has none


@pytest.mark.parametrize("sigma", [5, 15, 25, 40])
def test_the_estimate_follows_the_noise_level_of_a_photo(sigma):
    clean = to_tensor(builtin_images(["chelsea"])[0])
    noisy = clean + sigma / 255 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(sigma))
    assert estimate_sigma(noisy) == pytest.approx(sigma, rel=0.15, abs=1.5)


def test_clean_and_compressed_photos_read_low_and_shapes_are_checked():
    clean = to_tensor(builtin_images(["chelsea"])[0])
    assert estimate_sigma(clean) < 3
    noisy = clean + 25 / 255 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    assert estimate_sigma(jpeg_compress(noisy, 90)) < estimate_sigma(noisy)  # JPEG smooths the noise it keeps
    assert estimate_sigma(torch.rand(3, 1, 7)) == 0.0
    with pytest.raises(ValueError, match="estimate_sigma"):
        estimate_sigma(torch.rand(2, 3, 8, 8))
