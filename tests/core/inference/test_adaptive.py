"""NoiseAdaptive: more passes of its body when the whole image is noisy, decided once per image."""

import pytest
import torch

from n2n_core import models
from n2n_core.inference.infer import _run, denoise
from n2n_core.nn.layers import Conv2d, Sequential, Sigmoid
from n2n_core.inference.noise_adaptive import NoiseAdaptive
from n2n_core.nn.module import Module
from n2n_core.data.noise_level import estimate_sigma


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


def test_the_vjp_matches_finite_differences_through_the_passes_each_image_took():
    """Float64 central differences along random directions of the input and of every parameter, one
    image quiet (one pass) and one noisy (two passes): <dy, J v> against the vjp's <dx, v>. A smooth
    body, so that no activation kink lies between the two probes."""
    torch.manual_seed(2)
    body = Sequential(Conv2d(3, 4, 3, padding=1), Sigmoid(), Conv2d(4, 3, 3, padding=1)).to(dtype=torch.float64)
    model = NoiseAdaptive(body, threshold=25, passes=2)
    x = torch.stack(images()).to(torch.float64)
    y, vjp = model.forward_and_vjp(x)
    dy = torch.randn_like(y)
    dx, _, _ = vjp(dy)
    layers = [m for m in body.modules() if getattr(m, "weight", None) is not None]
    grads = [g for m in layers for g in (m.d_weight, m.d_bias)]
    params = [t for m in layers for t in (m.weight, m.bias)]
    eps = 1e-6

    def along(tensors, directions, step):
        for t, d in zip(tensors, directions):
            t.add_(step * d)

    v = torch.randn_like(x)
    slope = ((model(x + eps * v) - model(x - eps * v)) * dy).sum() / (2 * eps)
    torch.testing.assert_close((dx * v).sum(), slope, atol=1e-6, rtol=1e-6)
    directions = [torch.randn_like(t) for t in params]
    along(params, directions, eps)
    plus = model(x)
    along(params, directions, -2 * eps)
    minus = model(x)
    along(params, directions, eps)
    slope = ((plus - minus) * dy).sum() / (2 * eps)
    torch.testing.assert_close(sum((g * d).sum() for g, d in zip(grads, directions)), slope, atol=1e-6, rtol=1e-6)
