"""Noise models and data sources."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from n2n_core.data.datasets import BatchLoader, CleanImages, NoisyPairs, open_dataset, open_validation
from n2n_core.data.noise import (
    Bernoulli,
    Gaussian,
    Impulse,
    JpegInputs,
    Mixture,
    Poisson,
    PoissonGaussian,
    jpeg_compress,
    noise_from_dict,
    noise_to_dict,
    parse_jpeg_inputs,
    parse_noise,
    quantize8,
)
from tests.helpers import random_images as _images


def test_parse_noise_specs_roundtrip():
    for spec in ["gaussian:25", "gaussian:0-50", "poisson:30", "impulse:0.2", "bernoulli:0.5",
                 "poisson-gaussian:0.04,25", "gaussian:0-50+poisson-gaussian:0.02,10"]:
        n = parse_noise(spec)
        assert n.spec() == spec
        assert noise_from_dict(noise_to_dict(n)) == n
    for bad, match in [("gaussian:-1", r"^gaussian noise: sigma must be >= 0, got -1\.0$"),
                       ("poisson:0", r"^poisson noise: lam must be > 0, got 0\.0$"),
                       ("impulse:2", r"^impulse noise: p must be in \[0, 1\], got 2\.0$"),
                       ("salt", r"^unknown noise 'salt'; use gaussian:SIGMA"),
                       ("gaussian:abc", r"^bad noise spec 'gaussian:abc': could not convert string to float"),
                       ("gaussian:50-10", r"^gaussian noise: sigma range must satisfy 0 <= lo <= hi, "
                                          r"got \(50\.0, 10\.0\)$"),
                       ("poisson-gaussian:-1,2", r"^poisson-gaussian noise: levels must be >= 0, got -1\.0, 2\.0$"),
                       ("poisson-gaussian:a", r"^bad noise spec 'poisson-gaussian:a': could not convert string"),
                       ("gaussian:25+", r"^unknown noise ''; use gaussian:SIGMA"),
                       ("gaussian:25+salt", r"^unknown noise 'salt'; use gaussian:SIGMA")]:
        with pytest.raises(ValueError, match=match):
            parse_noise(bad)


def test_noise_statistics():
    g = torch.Generator().manual_seed(0)
    x = torch.full((8, 3, 64, 64), 0.5)
    n = Gaussian(25)(x, g) - x
    assert abs(n.std().item() - 25 / 255) < 0.002 and abs(n.mean().item()) < 0.002
    blind = Gaussian(None, (0, 50))
    stds = (blind(x, g) - x).flatten(1).std(1)
    assert stds.min() < 15 / 255 < 35 / 255 < stds.max()  # per-image sigmas spread over the range
    p = Poisson(30)(x, g)
    assert abs(p.mean().item() - 0.5) < 0.01 and abs(p.var().item() - 0.5 / 30) < 0.002
    imp = Impulse(0.3)(x, g)
    assert 0.25 < (imp != x).all(1).float().mean().item() < 0.35
    b = Bernoulli(0.5)(x, g)
    assert 0.45 < (b == 0).all(1).float().mean().item() < 0.55
    q = quantize8(torch.tensor([-0.1, 0.5, 1.3]))
    assert torch.equal(q, torch.tensor([0.0, 128 / 255, 1.0]))


def test_clean_source_pairs_are_independent_draws_and_reproducible():
    src = CleanImages(_images(), Gaussian(25))
    a, b = src.batch(3, seed=1, size=4, patch=16)
    assert a.shape == b.shape == (4, 3, 16, 16)
    assert not torch.equal(a, b)
    assert torch.equal(a * 255, (a * 255).round())  # input stored as 8-bit
    a2, b2 = src.batch(3, seed=1, size=4, patch=16)
    assert torch.equal(a, a2) and torch.equal(b, b2)
    a3, _ = src.batch(4, seed=1, size=4, patch=16)
    assert not torch.equal(a, a3)  # new draws every step


def test_noisy_pairs_crop_the_same_place():
    imgs = _images(2)
    src = NoisyPairs(imgs, [im.copy() for im in imgs])
    a, b = src.batch(0, 0, 6, 16)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"^need matching non-empty pair lists, got 2 and 1$"):
        NoisyPairs(imgs, imgs[:1])


def test_open_dataset_sources(tmp_path):
    folder = tmp_path / "clean"
    folder.mkdir()
    for i, im in enumerate(_images(6)):
        Image.fromarray(im).save(folder / f"{i}.png")
    ds = open_dataset(str(folder), Gaussian(15))
    assert len(ds.val) == 1 and ds.train.batch(0, 0, 2, 16)[0].shape == (2, 3, 16, 16)

    pairs = tmp_path / "pairs"
    for sub in "AB":
        (pairs / sub).mkdir(parents=True)
        for i, im in enumerate(_images(2)):
            Image.fromarray(im).save(pairs / sub / f"{i}.png")
    assert isinstance(open_dataset(str(pairs)).train, NoisyPairs)

    t = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    pkl = tmp_path / "train.pkl"
    pkl.write_bytes(pickle.dumps((t, t.clone())))
    ds = open_dataset(str(pkl), val_spec=str(pkl))
    assert ds.train.batch(0, 0, 3, 32)[0].shape == (3, 3, 32, 32)
    assert len(ds.val) == 5
    pt = tmp_path / "val.pt"
    torch.save((t, t), pt)
    assert len(open_validation(str(pt), Gaussian(25))) == 5

    for bad, match in [(str(tmp_path / "missing"), r"^no dataset at '.*missing': give 'builtin', a folder of images"),
                       (str(tmp_path), r" holds no images \(png, jpg, tif, webp, bmp\)$")]:
        with pytest.raises(ValueError, match=match):
            open_dataset(bad)


def test_builtin_dataset_works_offline():
    ds = open_dataset("builtin")
    assert len(ds.val) >= 2
    x, y = ds.train.batch(0, 0, 2, 64)
    assert x.shape == (2, 3, 64, 64)


def test_batch_loader_yields_the_same_batches_as_direct_calls():
    src = CleanImages(_images(), Gaussian(25))
    loader = BatchLoader(src, seed=5, batch_size=2, patch=16, start=3, stop=7)
    got = list(loader)
    assert [s for s, _, _ in got] == [3, 4, 5, 6]
    for step, a, b in got:
        a2, b2 = src.batch(step, 5, 2, 16)
        assert torch.equal(a, a2) and torch.equal(b, b2)


def _folder(tmp_path, sizes, name="imgs"):
    folder = tmp_path / name
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_images_beyond_the_memory_budget_are_memory_mapped_with_the_same_pixels_and_batches(tmp_path):
    from n2n_core.data.datasets import list_images, load_images, load_rgb8

    files = list_images(_folder(tmp_path, [(40, 50), (60, 45), (33, 70)]))
    in_ram = [load_rgb8(f) for f in files]
    mixed = load_images(files, budget=40 * 50 * 3)  # the first fits, the others go to the temporary file
    assert not isinstance(mixed[0], np.memmap) and all(isinstance(a, np.memmap) for a in mixed[1:])
    assert all(np.array_equal(a, b) for a, b in zip(in_ram, mixed))
    for step in (0, 7):  # batch i still depends on (seed, i) alone, wherever the pixels live
        for x, y in zip(CleanImages(in_ram, Gaussian(25)).batch(step, 3, 4, 16),
                        CleanImages(load_images(files, budget=0), Gaussian(25)).batch(step, 3, 4, 16)):
            assert torch.equal(x, y)
        pairs_ram, pairs_mixed = NoisyPairs(in_ram, in_ram), NoisyPairs(mixed, mixed)
        for x, y in zip(pairs_ram.batch(step, 3, 4, 16), pairs_mixed.batch(step, 3, 4, 16)):
            assert torch.equal(x, y)


def test_open_dataset_spills_large_folders_and_crops_validation_images(tmp_path, monkeypatch):
    from n2n_core.data import datasets as data

    folder = _folder(tmp_path, [(64, 80)] * 5 + [(30, 40)])
    reference = open_dataset(str(folder), Gaussian(15))
    monkeypatch.setattr(data, "MEMORY_BUDGET", 0)
    monkeypatch.setattr(data, "VAL_MAX_SIDE", 32)
    spilled = open_dataset(str(folder), Gaussian(15))
    assert all(isinstance(a, np.memmap) for a in spilled.train.images)
    for x, y in zip(reference.train.batch(2, 0, 3, 24), spilled.train.batch(2, 0, 3, 24)):
        assert torch.equal(x, y)
    (noisy, clean), = spilled.val
    assert noisy.shape == clean.shape == (3, 32, 32)  # centre crop of the held-out 64 x 80 image
    assert torch.equal(clean, reference.val[0][1][:, 16:48, 24:56])


def test_an_unreadable_image_is_named_without_its_folder(tmp_path):
    folder = _folder(tmp_path, [(40, 40)] * 2)
    (folder / "fake.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="fake.png") as e:
        open_dataset(str(folder))
    assert str(folder) not in str(e.value)


def test_poisson_gaussian_variance_follows_the_signal_with_levels_per_channel():
    """var = a_c x + b_c^2: doubles with a pure-gain model from x = 0.25 to x = 0.5; channels differ."""
    g = torch.Generator().manual_seed(0)
    shot = PoissonGaussian(gain_max=0.04, read_max=0.0)
    dark, bright = torch.full((64, 3, 32, 32), 0.25), torch.full((64, 3, 32, 32), 0.5)
    var_dark = (shot(dark, torch.Generator().manual_seed(1)) - dark).var(dim=(2, 3))
    var_bright = (shot(bright, torch.Generator().manual_seed(1)) - bright).var(dim=(2, 3))
    ratio = (var_bright / var_dark).median().item()
    assert 1.8 < ratio < 2.2
    assert abs(var_bright.mean().item() - 0.5 * 0.02) < 0.0015  # E[a] = gain_max / 2
    per_channel = (shot(bright, g) - bright).std(dim=(2, 3))  # (images, channels)
    assert (per_channel.max(1).values / per_channel.min(1).values).median() > 1.3
    read = PoissonGaussian(gain_max=0.0, read_max=25.0)
    stds = (read(dark, g) - dark).std(dim=(2, 3))
    assert stds.max() <= 25 / 255 * 1.1 and stds.min() < 5 / 255


def test_mixture_draws_one_component_per_image():
    mix = parse_noise("gaussian:10+impulse:1")
    assert isinstance(mix, Mixture)
    x = torch.full((40, 3, 16, 16), 0.5)
    out = mix(x, torch.Generator().manual_seed(0))
    impulsive = ((out - x).abs() > 0.2).flatten(1).float().mean(1) > 0.5  # impulse:1 replaces every pixel
    assert 5 < int(impulsive.sum()) < 35
    assert ((out[~impulsive] - 0.5).flatten(1).std(1) - 10 / 255).abs().max() < 0.01


def test_jpeg_compress_matches_a_real_jpeg_file(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.jpg", quality=80)
    expected = torch.from_numpy(np.asarray(Image.open(tmp_path / "x.jpg").convert("RGB")).copy()).permute(2, 0, 1)
    got = jpeg_compress(torch.from_numpy(pixels).permute(2, 0, 1).float() / 255, 80)
    assert torch.equal((got * 255).round().to(torch.uint8), expected)
    batch = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    assert jpeg_compress(batch, 90).dtype == torch.float64 and jpeg_compress(batch, 90).shape == batch.shape
    with pytest.raises(ValueError, match="quality"):
        jpeg_compress(batch, 0)


def test_jpeg_inputs_compress_a_share_of_the_inputs_and_never_the_targets():
    images = [np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8) for i in range(3)]
    plain = CleanImages(images, Gaussian(25))
    jpeg = CleanImages(images, Gaussian(25), jpeg=JpegInputs((70, 95)))
    inp_plain, tgt_plain = plain.batch(3, 0, 32, 32)
    inp_jpeg, tgt_jpeg = jpeg.batch(3, 0, 32, 32)
    assert torch.equal(tgt_plain, tgt_jpeg)  # same crops and noise: only some inputs changed
    changed = (inp_plain != inp_jpeg).flatten(1).any(1)
    assert 6 < int(changed.sum()) < 26
    assert torch.equal(inp_plain[~changed], inp_jpeg[~changed])
    assert parse_jpeg_inputs("70-95") == JpegInputs((70, 95)) and parse_jpeg_inputs(None) is None
    for bad, match in [("0-50", r"^jpeg inputs: need 1 <= lo <= hi <= 100 and share in \[0, 1\], got \(0, 50\)"),
                       ("95-70", r"^jpeg inputs: need 1 <= lo <= hi <= 100 and share in \[0, 1\], got \(95, 70\)"),
                       ("x", r"^bad jpeg quality range 'x': use LO-HI")]:
        with pytest.raises(ValueError, match=match):
            parse_jpeg_inputs(bad)


def test_validation_can_be_saved_as_jpeg():
    png = open_validation("builtin", Gaussian(25), limit=1)
    jpg = open_validation("builtin", Gaussian(25), limit=1, jpeg_quality=90)
    assert torch.equal(png[0][1], jpg[0][1])
    assert torch.equal(jpg[0][0], jpeg_compress(png[0][0], 90))


def test_noisy_pairs_hold_out_pairs_for_validation_against_the_other_shot(tmp_path):
    rng = np.random.default_rng(3)
    clean = [rng.integers(60, 200, (24, 32, 3)).astype(np.float64) for _ in range(6)]
    shot = lambda c: np.clip(c + rng.normal(0, 20, c.shape), 0, 255).astype(np.uint8)  # noqa: E731
    pairs = tmp_path / "pairs"
    for sub in "AB":
        (pairs / sub).mkdir(parents=True)
        for i, c in enumerate(clean):
            Image.fromarray(shot(c)).save(pairs / sub / f"{i}.png")
    ds = open_dataset(str(pairs))
    assert len(ds.val) == 1 and len(ds.train.a) == 5  # 6 pairs: one held out, never trained on
    noisy, other = ds.val[0]
    assert noisy.shape == other.shape == (3, 24, 32)
    assert torch.equal(noisy, torch.from_numpy(np.asarray(Image.open(pairs / "A" / "0.png"))).permute(2, 0, 1) / 255)
    assert torch.equal(other, torch.from_numpy(np.asarray(Image.open(pairs / "B" / "0.png"))).permute(2, 0, 1) / 255)
    given = open_dataset(str(pairs), val_spec="builtin")  # --val: every pair trains
    assert given.val and len(given.train.a) == 6
    t = torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8)
    torch.save((t, t.flip(0)), tmp_path / "pairs.pt")
    course = open_dataset(str(tmp_path / "pairs.pt"))
    assert len(course.val) == 2 and len(course.train.a) == 8
