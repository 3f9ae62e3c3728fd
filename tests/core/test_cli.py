"""The n2n command end to end on small inputs."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import n2n_core
from n2n_core import models
from n2n_core.cli import main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    n2n_core.save(models.build("tiny"), path)
    return path


def _write_inputs(folder):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(folder / "a.jpg")
    Image.fromarray(rng.integers(0, 256, (21, 17), dtype=np.uint8)).save(folder / "grey.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 4), dtype=np.uint8), "RGBA").save(folder / "alpha.webp", lossless=True)
    Image.fromarray(rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)).save(folder / "t.tiff")
    cv2.imwrite(str(folder / "deep.png"), rng.integers(0, 65536, (10, 14, 3), dtype=np.uint16))
    return sorted(folder.iterdir())


def test_denoise_writes_one_png_per_input_keeping_modes(tmp_path, tiny, capsys):
    inputs = _write_inputs(tmp_path / "in")
    out = tmp_path / "out" / "nested"
    assert main(["denoise", *map(str, inputs), "--output-dir", str(out), "--weights", str(tiny)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(p.stem + ".png" for p in inputs)
    assert Image.open(out / "grey.png").mode == "L"
    assert Image.open(out / "alpha.png").mode == "RGBA"
    assert Image.open(out / "a.png").size == (40, 30)
    assert cv2.imread(str(out / "deep.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16


def test_denoise_uses_the_shipped_default_without_weights(tmp_path):
    src = tmp_path / "x.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(src)
    assert main(["denoise", str(src), "--output-dir", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "x.png").exists()


def test_bad_inputs_give_one_line_and_nonzero_exit(tmp_path, tiny, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    for argv in (["denoise", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o")],
                 ["denoise", str(bad), "-o", str(tmp_path / "o"), "--weights", str(tiny)],
                 ["denoise", str(bad), "-o", str(tmp_path / "o"), "--weights", str(tmp_path / "nope")],
                 ["eval", "--data", str(tmp_path / "nowhere")],
                 ["train", "--data", "builtin", "--noise", "pink:3", "--out", str(tmp_path / "m.safetensors")]):
        capsys.readouterr()
        assert main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("n2n: error:"), err


def test_train_then_eval_json(tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    assert main(["train", "--data", "builtin", "--arch", "tiny", "--steps", "3", "--batch-size", "2",
                 "--patch-size", "32", "--val-every", "3", "--out", str(out)]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["status"] == "succeeded" and res["steps"] == 3
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["architecture"] == "tiny" and card["training"]["steps"] == 3 and card["parameters"] > 0
    assert main(["eval", "--data", "builtin", "--weights", str(out), "--json", "--noise", "gaussian:25"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["images"] == 2 and 10 < ev["noisy_psnr"] < 30 and "ssim" in ev


def test_train_init_fine_tunes_from_weights_of_the_same_arch(tmp_path, tiny, capsys):
    out = tmp_path / "ft.safetensors"
    assert main(["train", "--data", "builtin", "--init", str(tiny), "--steps", "1", "--lr", "1e-12", "--batch-size", "2",
                 "--patch-size", "32", "--val-every", "1", "--out", str(out)]) == 0
    start, tuned = n2n_core.load(tiny), n2n_core.load(out)
    assert start.config() == tuned.config()  # arch taken from the init weights
    for a, b in zip(start.parameters(), tuned.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["architecture"] == "tiny" and card["training"]["init"] == str(tiny)
    capsys.readouterr()
    assert main(["train", "--data", "builtin", "--init", str(tiny), "--arch", "fast", "--steps", "1",
                 "--out", str(tmp_path / "x.safetensors")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a 'fast' network" in err[0]


def test_help_everywhere():
    for argv in (["--help"], ["train", "--help"], ["eval", "--help"], ["denoise", "--help"], ["serve", "--help"]):
        r = subprocess.run([sys.executable, "-m", "n2n_core.cli", *argv], capture_output=True, text=True)
        assert r.returncode == 0 and "usage: n2n" in r.stdout


def test_denoise_reads_photos_one_at_a_time_and_skips_a_bad_one_by_name(tmp_path, tiny, capsys, monkeypatch):
    from n2n_core import images

    inputs = _write_inputs(tmp_path / "in")
    reads, live = [], []
    real_read = images.read

    def counting_read(path):
        reads.append(path)
        live.append(len(reads) - len(list((tmp_path / "out").glob("*.png"))) if (tmp_path / "out").exists() else 1)
        return real_read(path)

    monkeypatch.setattr(images, "read", counting_read)
    assert main(["denoise", *map(str, inputs), "-o", str(tmp_path / "out"), "--weights", str(tiny)]) == 0
    assert len(reads) == len(inputs) and max(live) == 1  # never a second photo decoded before the first is written
    bad = tmp_path / "in" / "zz_bad.png"
    bad.write_bytes(b"\x89PNG garbage")
    capsys.readouterr()
    assert main(["denoise", *map(str, inputs), str(bad), "-o", str(tmp_path / "out2"), "--weights", str(tiny)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "zz_bad.png" in err[0] and err[1].startswith("n2n: error: 1 of 6 photos failed"), err
    assert sorted(p.name for p in (tmp_path / "out2").iterdir()) == sorted(p.stem + ".png" for p in inputs)


def test_denoise_takes_folders_globs_and_output_formats(tmp_path, tiny, capsys):
    inputs = _write_inputs(tmp_path / "in")
    assert main(["denoise", str(tmp_path / "in"), "-o", str(tmp_path / "all"), "--weights", str(tiny)]) == 0
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == sorted(p.stem + ".png" for p in inputs)
    pattern = str(tmp_path / "in" / "*.png")
    assert main(["denoise", pattern, "-o", str(tmp_path / "jpg"), "--weights", str(tiny), "--format", "jpeg",
                 "--quality", "80"]) == 0
    assert sorted(p.name for p in (tmp_path / "jpg").iterdir()) == ["deep.jpeg", "grey.jpeg"]
    assert Image.open(tmp_path / "jpg" / "grey.jpeg").format == "JPEG"
    assert main(["denoise", str(inputs[0]), "-o", str(tmp_path / "t"), "--weights", str(tiny), "--format", "tiff"]) == 0
    assert Image.open(tmp_path / "t" / f"{inputs[0].stem}.tiff").format == "TIFF"
    (tmp_path / "afile").write_text("x")
    for argv in (["denoise", str(inputs[0]), "-o", str(tmp_path / "afile")],
                 ["denoise", str(tmp_path / "in" / "*.gif"), "-o", str(tmp_path / "o")],
                 ["denoise", str(tmp_path / "empty"), "-o", str(tmp_path / "o")],
                 ["denoise", str(inputs[0]), "-o", str(tmp_path / "o"), "--quality", "0"]):
        (tmp_path / "empty").mkdir(exist_ok=True)
        capsys.readouterr()
        assert main([*argv, "--weights", str(tiny)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("n2n: error:") and "Errno" not in err[0], err


def test_denoise_shows_a_bar_per_large_photo(tmp_path, tiny, monkeypatch):
    import n2n_core.cli as cli

    bars = []
    real_bar = cli._progress_bar

    def recording_bar(total, desc, unit="step"):
        bar = real_bar(total, desc, unit)
        bars.append((desc, unit, total, bar))
        return bar

    monkeypatch.setattr(cli, "_progress_bar", recording_bar)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(tmp_path / "large.png")
    Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(tmp_path / "small.png")
    assert main(["denoise", str(tmp_path / "large.png"), str(tmp_path / "small.png"), "-o", str(tmp_path / "o"),
                 "--weights", str(tiny), "--tile", "64"]) == 0
    tile_bars = [(desc, total, bar.n) for desc, unit, total, bar in bars if unit == "tile"]
    assert len(tile_bars) == 1 and tile_bars[0][0] == "large.png" and tile_bars[0][1] > 1  # none for small.png


def test_denoise_strength_blends_and_reports_the_noise_level(tmp_path, tiny, capsys):
    src = tmp_path / "x.png"
    pixels = np.random.default_rng(3).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(src)
    assert main(["denoise", str(src), "-o", str(tmp_path / "zero"), "--weights", str(tiny), "--strength", "0"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "zero" / "x.png")), pixels)
    assert "estimated noise sigma" in capsys.readouterr().out
    assert main(["denoise", str(src), "-o", str(tmp_path / "one"), "--weights", str(tiny)]) == 0
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "one" / "x.png")), pixels)
    for bad in ("1.5", "-1", "nan"):
        capsys.readouterr()
        assert main(["denoise", str(src), "-o", str(tmp_path / "bad"), "--weights", str(tiny), "--strength", bad]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "strength" in err[0], err
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())
