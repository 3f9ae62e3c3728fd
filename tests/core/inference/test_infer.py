"""Inference: any size, tiles agree with the untiled run, batches, pictures keep their mode."""

import pytest
import torch

from n2n_core import models
from n2n_core.data import images
from n2n_core.inference.infer import Cancelled, denoise, denoise_picture, plan_tiles
from n2n_core.models import size_multiple


def test_any_size_and_tiling_agree():
    torch.manual_seed(0)
    m = models.build("fast")
    x = torch.rand(3, 203, 341)
    whole = denoise(m, x, tile=1024)
    assert whole.shape == x.shape and 0 <= whole.min() and whole.max() <= 1
    tiled = denoise(m, x, tile=64)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)


def test_batches_and_lists():
    m = models.build("tiny")
    xs = [torch.rand(3, 20, 30), torch.rand(3, 17, 9), torch.rand(3, 20, 30)]
    outs = denoise(m, xs, batch_size=2)
    assert [o.shape for o in outs] == [x.shape for x in xs]
    torch.testing.assert_close(outs[2], denoise(m, xs[2]), atol=1e-6, rtol=0)
    assert denoise(m, torch.rand(2, 3, 8, 8)).shape == (2, 3, 8, 8)


def test_picture_keeps_grey_and_alpha():
    import numpy as np

    m = models.build("tiny")
    grey = images.Picture(torch.rand(1, 12, 10), None, 8, "PNG")
    assert denoise_picture(m, grey).pixels.shape == (1, 12, 10)
    alpha = np.arange(120, dtype=np.uint8).reshape(12, 10)
    rgba = images.Picture(torch.rand(3, 12, 10), alpha, 8, "PNG")
    out = denoise_picture(m, rgba)
    assert out.mode == "RGBA" and (out.alpha == alpha).all()


def test_numpy_and_pil_inputs_keep_type_shape_dtype():
    import numpy as np
    from PIL import Image

    m = models.build("tiny")
    for a in (np.zeros((20, 30, 3), np.uint8), np.zeros((20, 30), np.uint16), np.zeros((20, 30, 4), np.uint8),
              np.random.rand(9, 7, 3).astype(np.float32)):
        out = denoise(m, a)
        assert isinstance(out, np.ndarray) and out.shape == a.shape and out.dtype == a.dtype
    rgba = np.random.default_rng(0).integers(0, 256, (10, 12, 4), dtype=np.uint8)
    out = denoise(m, Image.fromarray(rgba, "RGBA"))
    assert out.mode == "RGBA" and out.size == (12, 10) and (np.asarray(out)[..., 3] == rgba[..., 3]).all()


def _computed(tiles, mult):
    pad = lambda n: -(-n // mult) * mult  # noqa: E731
    return sum(pad(t.window_bottom - t.window_top) * pad(t.window_right - t.window_left) for t in tiles)


@pytest.mark.parametrize("shape", [(1, 40_000_000), (7, 100_000), (8, 5_000_000), (6000, 4000), (4000, 6000),
                                   (513, 513), (300, 133_333), (3, 100), (100_000, 2), (1000, 1000)])
def test_tile_plan_bounds_work_by_pixels_whatever_the_shape(shape):
    h, w = shape
    area, margin, mult = 512 * 512, 112, 8
    tiles = plan_tiles(h, w, area, margin, mult)
    covered = sum(t.height * t.width for t in tiles)
    assert covered == h * w  # cores partition the image
    assert all(t.top % mult == 0 and t.left % mult == 0 and t.window_top % mult == 0 and t.window_left % mult == 0
               for t in tiles)
    padding = -(-min(h, w) // mult) * mult / min(h, w)  # a side under `mult` is padded up to it
    assert _computed(tiles, mult) <= 3.1 * padding * h * w  # what square 512-px tiles cost on a big photo
    if len(tiles) > 1:  # no sliver tiles: each window uses most of the budget (bounded per-tile overhead)
        assert len(tiles) <= 2 * _computed(tiles, mult) / area + 2
        assert max(-(-(t.window_bottom - t.window_top) // mult) * mult * -(-(t.window_right - t.window_left) // mult)
                   * mult for t in tiles) <= area


def test_thin_image_takes_few_model_calls_and_matches_the_untiled_run():
    """A 3 x 6000 strip: today's main cut it by side length into hundreds of tiny tiles."""
    torch.manual_seed(0)
    m = models.build("fast")
    calls = []
    real_forward = m.forward

    def counting(x):
        calls.append(tuple(x.shape))
        return real_forward(x)

    m.forward = counting
    x = torch.rand(3, 3, 6000)
    tiled = denoise(m, x, tile=128)
    assert len(calls) <= 6000 * 8 // (128 * 128) + 2
    whole = denoise(m, x, tile=4096)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)


def test_should_stop_and_progress_work_per_tile():
    m = models.build("tiny")
    seen = []
    out = denoise(m, torch.rand(3, 300, 300), tile=64, progress=lambda done, total: seen.append((done, total)))
    assert out.shape == (3, 300, 300) and len(seen) > 1 and seen[-1][0] == seen[-1][1] == len(seen)
    with pytest.raises(Cancelled):
        denoise(m, torch.rand(3, 300, 300), tile=64, should_stop=lambda: len(seen) > 3,
                progress=lambda done, total: seen.append(done))


@pytest.mark.parametrize("name", ["default", "fast", "seed", "blind"])
def test_tiles_with_the_measured_margin_equal_the_whole_image_for_every_shipped_model(name):
    """Margins come from the exact receptive radius (about half the old bound); tiles stay exact."""
    from n2n_core.analysis import receptive_bound, receptive_radius
    from n2n_core.weights import load
    from n2n_core.weights import shipped

    if name not in shipped():
        pytest.skip(f"no shipped {name!r} model")
    m = load(shipped()[name])
    assert receptive_radius(m) <= receptive_bound(m)
    x = torch.rand(3, 203, 341, generator=torch.Generator().manual_seed(0))
    whole = denoise(m, x, tile=4096)
    for tile in (96, 160):
        torch.testing.assert_close(denoise(m, x, tile=tile), whole, atol=1e-6, rtol=0)


def test_the_receptive_radius_is_the_true_reach_of_an_input():
    """A random network: changing one input pixel changes outputs up to the radius away, and none beyond."""
    from n2n_core.analysis import receptive_radius

    torch.manual_seed(0)
    for name in ("unet-s", "fast", "seed"):
        m = models.build(name).to(dtype=torch.float64)
        r = receptive_radius(m)
        side, centre = 160, 80
        phases = range(8)
        x = torch.rand(1, 3, side, side, dtype=torch.float64)
        probes = x.repeat(len(phases), 1, 1, 1)
        for phase in phases:
            probes[phase, :, centre + phase, centre + phase] += 1.0
        changed = (m(probes) - m(x)).abs().amax(dim=1) > 0
        reach = 0
        for phase in phases:
            rows, cols = torch.nonzero(changed[phase], as_tuple=True)
            reach = max(reach, int(torch.cat([rows - centre - phase, cols - centre - phase]).abs().max()))
        assert reach == r, (name, reach, r)


def test_strength_blends_the_output_with_the_input_tile_by_tile():
    torch.manual_seed(0)
    m = models.build("fast")
    x = torch.rand(3, 150, 230)
    full = denoise(m, x, tile=1024)
    assert torch.equal(denoise(m, x, tile=1024, strength=0.0), x)
    half = denoise(m, x, tile=64, strength=0.5)
    torch.testing.assert_close(half, (x + full) / 2, atol=1e-5, rtol=0)
    pic = images.Picture(x, None, 8, "png")
    torch.testing.assert_close(denoise_picture(m, pic, strength=0.25).pixels, x + 0.25 * (full - x), atol=1e-5, rtol=0)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="strength"):
            denoise(m, x, strength=bad)


@pytest.mark.parametrize("name", ["default", "fast", "blind"])
def test_row_streams_equal_the_whole_image_for_every_shipped_model(name):
    """The default path streams bands, and strips with margins when too wide; odd sizes; to 1e-6."""
    from n2n_core.inference.infer import _run, plan_bands
    from n2n_core.analysis import activation_values_per_pixel
    from n2n_core.weights import load
    from n2n_core.inference.streaming import state_per_column, streamable
    from n2n_core.weights import shipped

    if name not in shipped():
        pytest.skip(f"no shipped {name!r} model")
    m = load(shipped()[name])
    m = getattr(m, "body", m)  # blind is noise-adaptive: each of its passes streams its network
    assert streamable(m)
    h, w = 101, 331
    x = torch.rand(3, h, w, generator=torch.Generator().manual_seed(0))
    whole = _run(m, x[None])[0].clamp(0, 1)
    mult = size_multiple(m)
    narrow = int(4 * 160 * (state_per_column(m) + mult * activation_values_per_pixel(m)))  # ~160-px windows
    assert len(plan_bands(m, h, w, narrow).strips) > 1
    for budget in (None, narrow):
        torch.testing.assert_close(denoise(m, x, tile_memory=budget), whole, atol=1e-6, rtol=0)


def test_bands_report_progress_and_stop_between_bands():
    from n2n_core.inference.infer import plan_bands

    m = models.build("fast")
    x = torch.rand(3, 200, 1500)
    plan = plan_bands(m, 200, 1500, 1 << 30)
    assert len(plan.strips) == 1 and plan.rows < 200  # a wide photo goes in several bands of full width
    seen = []
    out = denoise(m, x, progress=lambda done, total: seen.append((done, total)))
    assert len(seen) == plan.steps(200, 8) > 1 and seen[-1] == (len(seen), len(seen))
    torch.testing.assert_close(out, denoise(m, x, tile=4096), atol=1e-6, rtol=0)
    with pytest.raises(Cancelled):
        denoise(m, x, should_stop=lambda: len(seen) > plan.steps(200, 8) + 2,
                progress=lambda done, total: seen.append(done))


def test_band_memory_is_bounded_by_the_budget_whatever_the_width():
    """Very wide images fall back to full-height strips whose streams fit the budget."""
    from n2n_core.inference.infer import plan_bands
    from n2n_core.analysis import activation_values_per_pixel
    from n2n_core.inference.streaming import state_per_column

    m = models.build("unet-s")
    budget = 64 << 20
    for h, w in [(4000, 6000), (200, 200_000), (40_000, 1000), (64, 64)]:
        plan = plan_bands(m, h, w, budget)
        widest = max(t.window_right - t.window_left for t in plan.strips)
        values = widest * (state_per_column(m) + plan.rows * activation_values_per_pixel(m))
        assert values * 4 <= budget or plan.rows == 1, (h, w, plan.rows, len(plan.strips))
        assert sum(t.width for t in plan.strips) == w and all(t.height == h for t in plan.strips)
