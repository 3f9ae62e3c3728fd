"""Inference: any size, tiles agree with the untiled run, batches, pictures keep their mode."""

import torch

from n2n_core import images, models
from n2n_core.infer import denoise, denoise_picture


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
