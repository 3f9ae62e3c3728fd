"""NoiseAdaptive: more passes of its body when the whole image is noisy, decided once per image."""

import pytest
import torch

from n2n_core import models
from n2n_core.infer import _run, denoise
from n2n_core.layers import NoiseAdaptive
from n2n_core.module import Module
from n2n_core.noise_level import estimate_sigma


def images():
    generator = torch.Generator().manual_seed(0)
    smooth = torch.linspace(0.2, 0.8, 72)[None, :].expand(3, 40, 72)
    quiet = (smooth + 2 / 255 * torch.randn(3, 40, 72, generator=generator)).clamp(0, 1)
    noisy = (smooth + 60 / 255 * torch.randn(3, 40, 72, generator=generator)).clamp(0, 1)
    return quiet, noisy


def test_strong_noise_gets_a_second_pass_and_light_noise_one():
    torch.manual_seed(0)
    body = models.build("fast")
    model = NoiseAdaptive(body, threshold=25, passes=2)
    quiet, noisy = images()
    assert estimate_sigma(quiet) < 25 < estimate_sigma(noisy)
    assert model.passes_for(quiet) == 1 and model.passes_for(noisy) == 2
    once = _run(body, quiet[None])[0]
    twice = _run(body, _run(body, noisy[None]).clamp(0, 1))[0].clamp(0, 1)
    torch.testing.assert_close(denoise(model, quiet), once.clamp(0, 1), atol=1e-6, rtol=0)
    torch.testing.assert_close(denoise(model, noisy), twice, atol=1e-6, rtol=0)
    both = denoise(model, torch.stack([quiet, noisy]))  # the decision is per image of a batch
    torch.testing.assert_close(both[1], twice, atol=1e-6, rtol=0)
    torch.testing.assert_close(both[0], once.clamp(0, 1), atol=1e-6, rtol=0)


def test_each_pass_sees_the_whole_image_whatever_the_tiling():
    torch.manual_seed(1)
    model = NoiseAdaptive(models.build("fast"), threshold=25)
    noisy = images()[1]
    whole = denoise(model, noisy, tile=4096)
    steps = []
    tiled = denoise(model, noisy, tile=24, progress=lambda done, total: steps.append((done, total)))
    torch.testing.assert_close(tiled, whole, atol=1e-6, rtol=0)
    assert steps[-1][0] == steps[-1][1] and len(steps) == steps[-1][1] > 2  # both passes counted
    assert torch.equal(denoise(model, noisy, strength=0.0), noisy)


def test_config_round_trip_and_clear_refusals():
    model = NoiseAdaptive(models.build("tiny"), threshold=30.0, passes=3)
    again = Module.from_config(model.config())
    assert isinstance(again, NoiseAdaptive) and (again.threshold, again.passes) == (30.0, 3)
    with pytest.raises(ValueError, match="NoiseAdaptive"):
        NoiseAdaptive(models.build("tiny"), threshold=-1)
    with pytest.raises(ValueError, match="NoiseAdaptive"):
        NoiseAdaptive(models.build("tiny"), passes=0)
    with pytest.raises(ValueError, match="train its body"):
        model.forward_and_vjp(torch.rand(1, 3, 8, 8))
