"""The course-compatible Model."""

import torch

import n2n_core.compat as compat


def test_star_import_brings_the_course_names():
    ns = {}
    exec("from n2n_core.compat import *", ns)
    for name in ["Model", "Conv2d", "TransposeConv2d", "NearestUpsampling", "ReLU", "Sigmoid", "Sequential", "MSE",
                 "SGD"]:
        assert name in ns


def test_model_loads_predicts_and_trains():
    m = compat.Model()
    m.load_pretrained_model()
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 256, (64, 3, 32, 32), generator=g, dtype=torch.uint8)
    noisy = lambda: (clean.float() + 25 * torch.randn(clean.shape, generator=g)).round().clamp(0, 255).byte()  # noqa: E731
    a, b = noisy(), noisy()
    for x in (a, a.float(), torch.randint(0, 256, (1, 3, 37, 51), dtype=torch.uint8)):
        out = m.predict(x)
        assert out.shape == x.shape and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 255
    before = [p.clone() for p in m.model.parameters()]
    m.train(a, b, num_epochs=1)
    assert any(not torch.equal(p, q) for p, q in zip(before, m.model.parameters()))
