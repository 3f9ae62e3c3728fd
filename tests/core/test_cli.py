"""The n2n command end to end on small inputs."""

import io
import json
import re
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


def test_denoise_writes_each_input_in_its_own_format_keeping_modes(tmp_path, tiny, capsys):
    inputs = _write_inputs(tmp_path / "in")
    out = tmp_path / "out" / "nested"
    assert main(["denoise", *map(str, inputs), "--output-dir", str(out), "--weights", str(tiny)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in inputs)  # JPEG stays JPEG, TIFF TIFF, ...
    assert [Image.open(out / n).format for n in ("a.jpg", "alpha.webp", "t.tiff")] == ["JPEG", "WEBP", "TIFF"]
    assert Image.open(out / "grey.png").mode == "L"
    assert Image.open(out / "alpha.webp").mode == "RGBA"
    assert Image.open(out / "a.jpg").size == (40, 30)
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
    for argv in (["--help"], ["train", "--help"], ["eval", "--help"], ["denoise", "--help"], ["export", "--help"],
                 ["serve", "--help"]):
        r = subprocess.run([sys.executable, "-m", "n2n_core.cli", *argv], capture_output=True, text=True)
        assert r.returncode == 0 and "usage: n2n" in r.stdout


HEAVY = ("torch", "numpy", "PIL", "tqdm", "cv2", "safetensors", "onnx")
HELP_IMPORTS = """
import contextlib, io, sys
import n2n_core.cli
for argv in ([], ["train"], ["eval"], ["denoise"], ["export"], ["serve"], ["worker"]):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            n2n_core.cli.main([*argv, "--help"])
        except SystemExit as e:
            assert e.code == 0, (argv, e.code)
    assert "usage: n2n" in out.getvalue(), argv
print(" ".join(sorted(m for m in sys.modules if m.split(".")[0] in {heavy})))
"""


def test_help_imports_no_heavy_library():
    """`n2n --help` (any command's) stays fast: neither the package nor the CLI module imports torch & co."""
    r = subprocess.run([sys.executable, "-c", HELP_IMPORTS.format(heavy=set(HEAVY))], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"imported by --help: {r.stdout.strip()}"


def test_the_package_exports_load_lazily_and_all_resolve():
    code = ("import sys, n2n_core; assert 'torch' not in sys.modules; from n2n_core import *; "
            "import n2n_core as n; print(sorted(n.__all__) == sorted(k for k in n.__all__ if k in dir(n)), "
            "type(n.Conv2d).__name__, n.layers.__name__, n.serialize.__name__, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "type", "n2n_core.nn.layers", "n2n_core.nn.serialize", "True"]
    for name in n2n_core.__all__:
        assert getattr(n2n_core, name) is not None
    with pytest.raises(AttributeError):
        n2n_core.no_such_name  # noqa: B018

def test_denoise_reads_photos_one_at_a_time_and_skips_a_bad_one_by_name(tmp_path, tiny, capsys, monkeypatch):
    from n2n_core.data import images

    inputs = _write_inputs(tmp_path / "in")
    reads, live = [], []
    real_read = images.read

    def counting_read(path):
        reads.append(path)
        live.append(len(reads) - len(list((tmp_path / "out").iterdir())) if (tmp_path / "out").exists() else 1)
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
    assert sorted(p.name for p in (tmp_path / "out2").iterdir()) == sorted(p.name for p in inputs)


def test_denoise_takes_folders_globs_and_output_formats(tmp_path, tiny, capsys):
    inputs = _write_inputs(tmp_path / "in")
    assert main(["denoise", str(tmp_path / "in"), "-o", str(tmp_path / "all"), "--weights", str(tiny)]) == 0
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == sorted(p.name for p in inputs)
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


class _Stderr(io.StringIO):
    """A captured stderr that says it is (or is not) a terminal."""

    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def _two_photos(folder):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(folder / "large.png")
    Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(folder / "small.png")
    return [folder / "large.png", folder / "small.png"]


@pytest.mark.parametrize(("tty", "flags", "bars", "summary"), [
    (True, [], True, True),                    # a terminal: bars by default
    (False, [], False, True),                  # a pipe or a file: none
    (False, ["--progress"], True, True),       # forced
    (True, ["--no-progress"], False, True),
    (True, ["-q"], False, False),              # nothing on stderr at all
])
def test_denoise_progress_bars_per_photo_of_several_tiles(tmp_path, tiny, monkeypatch, capsys, tty, flags, bars,
                                                         summary):
    err = _Stderr(tty)
    monkeypatch.setattr(sys, "stderr", err)
    inputs = _two_photos(tmp_path / "in")
    assert main(["denoise", *map(str, inputs), "-o", str(tmp_path / "o"), "--weights", str(tiny), "--tile", "64",
                 *flags]) == 0
    text = err.getvalue()
    steps = [(int(d), int(t)) for d, t in re.findall(r"large\.png:.*?(\d+)/(\d+) \[", text)]
    if bars:
        assert steps and steps[-1][0] == steps[-1][1] > 1, text  # the large photo's bar, in several tiles, to its end
        assert "small.png:" not in text, text  # one tile, under a megapixel: no bar of its own
        assert re.search(r"denoise:.*2/2", text), text  # the bar over the photos
    else:
        assert not steps and "denoise:" not in text, text
    assert ("n2n: 2 photos denoised" in text) == summary, text
    assert (text == "") == (not summary)
    assert capsys.readouterr().out.count("estimated noise sigma") == 2  # stdout names every file written


def test_a_photo_of_a_megapixel_has_a_bar_before_its_first_step(monkeypatch):
    from n2n_core.cli import PHOTO_BAR_PIXELS, PhotoProgress, needs_photo_bar, show_progress

    assert needs_photo_bar(PHOTO_BAR_PIXELS, None) and needs_photo_bar(10, 3)
    assert not needs_photo_bar(PHOTO_BAR_PIXELS - 1, None) and not needs_photo_bar(PHOTO_BAR_PIXELS - 1, 1)
    assert show_progress(None, _Stderr(True)) and not show_progress(None, _Stderr(False))
    assert show_progress(True, _Stderr(False)) and not show_progress(False, _Stderr(True))
    err = _Stderr(True)
    monkeypatch.setattr(sys, "stderr", err)
    progress = PhotoProgress("big.jpg", enabled=True)
    progress.start(PHOTO_BAR_PIXELS)
    assert "big.jpg:" in err.getvalue()  # shown while the first step still runs
    progress.step(1, 3)
    assert "1/3" in err.getvalue()
    progress.close()
    quiet = PhotoProgress("other.jpg", enabled=False)
    quiet.start(10 * PHOTO_BAR_PIXELS)
    quiet.step(1, 3)
    quiet.close()
    assert "other.jpg" not in err.getvalue()


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


def test_denoise_keeps_the_metadata_unless_strip_metadata(tmp_path, tiny, capsys):
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 31.0, 12.0)})  # GPS
    src = tmp_path / "shot.jpg"
    Image.fromarray(np.random.default_rng(4).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(
        src, exif=exif, icc_profile=srgb)
    for fmt in ("png", "jpeg", "webp", "tiff"):
        assert main(["denoise", str(src), "-o", str(tmp_path / fmt), "--weights", str(tiny), "--format", fmt]) == 0
        with Image.open(tmp_path / fmt / f"shot.{'jpg' if fmt == 'jpeg' else fmt}") as im:
            assert im.getexif()[0x010F] == "Canon" and im.getexif().get_ifd(0x8825)[1] == "N", fmt
            assert im.info["icc_profile"] == srgb, fmt
    assert main(["denoise", str(src), "-o", str(tmp_path / "bare"), "--weights", str(tiny), "--format", "tiff",
                 "--bits", "16", "--strip-metadata"]) == 0
    with Image.open(tmp_path / "bare" / "shot.tiff") as im:
        assert 0x010F not in im.getexif() and not im.getexif().get_ifd(0x8825)
        assert im.info["icc_profile"] == srgb  # the colour profile is kept
    assert cv2.imread(str(tmp_path / "bare" / "shot.tiff"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    capsys.readouterr()
    assert main(["denoise", str(src), "-o", str(tmp_path / "no"), "--weights", str(tiny), "--format", "jpeg",
                 "--bits", "16"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--bits 16" in err[0], err


def test_train_has_one_default_architecture_the_api_shares():
    """The API's side: tests/app/jobs/test_train_noise.py."""
    from n2n_core.cli import _train_config, build_parser
    from n2n_core.models import DEFAULT_ARCH
    from n2n_core.training.train import TrainConfig

    args = build_parser().parse_args(["train", "--out", "x.safetensors"])
    assert _train_config(args).arch == DEFAULT_ARCH == TrainConfig().arch
    r = subprocess.run([sys.executable, "-m", "n2n_core.cli", "train", "--help"], capture_output=True, text=True)
    assert f"else {DEFAULT_ARCH}, as for POST /train" in " ".join(r.stdout.split())


def test_denoise_precision_flag_reaches_the_summary_and_the_pixels(tmp_path, tiny, capsys):
    src = tmp_path / "p.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(src)
    written = {}
    for precision in ("float32", "bfloat16"):
        capsys.readouterr()
        out = tmp_path / precision
        assert main(["denoise", str(src), "-o", str(out), "--weights", str(tiny), "--precision", precision]) == 0
        assert f"({precision})" in capsys.readouterr().err
        written[precision] = np.asarray(Image.open(out / "p.png"), dtype=np.int16)
    assert np.abs(written["float32"] - written["bfloat16"]).max() <= 3  # 8-bit steps


def test_a_bad_precision_is_one_line(tmp_path, tiny, capsys, monkeypatch):
    src = tmp_path / "p.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src)
    monkeypatch.setenv("N2N_PRECISION", "half")
    capsys.readouterr()
    assert main(["denoise", str(src), "-o", str(tmp_path / "o"), "--weights", str(tiny)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "precision must be one of auto, float32, bfloat16, float16" in err[0], err
    with pytest.raises(SystemExit) as exit_info:
        main(["denoise", str(src), "-o", str(tmp_path / "o"), "--precision", "half"])
    assert exit_info.value.code == 2


def test_eval_reports_its_precision(tmp_path, tiny, capsys):
    capsys.readouterr()
    assert main(["eval", "--weights", str(tiny), "--data", "builtin", "--limit", "1", "--json",
                 "--precision", "bfloat16"]) == 0
    assert json.loads(capsys.readouterr().out)["precision"] == "bfloat16"


# -- export ---------------------------------------------------------------------------------------------------
def test_export_writes_an_onnx_file_with_the_card_and_one_summary_line(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "models" / "fast.onnx"
    assert main(["export", "fast", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and str(out) in lines[0], lines
    assert re.search(r"opset 17, input 'input' float32 \[batch, 3, height, width\] \(any height and width\)", lines[0])
    assert re.search(r"\d+\.\d MB$", lines[0])
    proto = onnx.load(out)
    onnx.checker.check_model(proto)
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["n2n_card"])["name"] == "fast"


def test_export_takes_a_weights_file_and_the_network_only_form(tmp_path, tiny, capsys):
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "tiny.onnx"
    assert main(["export", str(tiny), str(out), "--network-only", "--opset", "18"]) == 0
    line = capsys.readouterr().out.strip()
    assert "opset 18" in line and "height and width multiples of 2" in line
    proto = onnx.load(out)
    assert proto.opset_import[0].version == 18
    card = json.loads({p.key: p.value for p in proto.metadata_props}["n2n_card"])
    assert card["name"] == "tiny" and card["architecture"] == "tiny"  # no card file: what the weights say


def test_export_bad_input_is_one_line_and_exit_1(tmp_path, tiny, capsys):
    for argv in (["export", "no-such-model", str(tmp_path / "a.onnx")],
                 ["export", str(tmp_path / "missing.safetensors"), str(tmp_path / "a.onnx")],
                 ["export", str(tiny), str(tmp_path)],
                 ["export", str(tiny), str(tmp_path / "a.onnx"), "--opset", "9"]):
        capsys.readouterr()
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("n2n: error: "), (argv, err)
    assert not (tmp_path / "a.onnx").exists()


def test_a_jpeg_stays_a_jpeg_at_its_quality_and_suffix_and_skip_existing_let_a_rerun_go_on(tmp_path, tiny, capsys):
    from n2n_core.data import images

    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for name, quality in (("IMG_1000.JPG", 80), ("IMG_1001.jpg", 90)):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(folder / name, quality=quality)
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(folder / "scan.bmp")
    out = tmp_path / "out"
    assert main(["denoise", str(folder), "-o", str(out), "--weights", str(tiny), "--suffix", "-denoised"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["IMG_1000-denoised.JPG", "IMG_1001-denoised.jpg",
                                                      "scan-denoised.png"]  # a BMP becomes a PNG
    assert [images.read(out / n).quality for n in ("IMG_1000-denoised.JPG", "IMG_1001-denoised.jpg")] == [80, 90]
    assert main(["denoise", str(folder / "IMG_1000.JPG"), "-o", str(tmp_path / "q"), "--weights", str(tiny),
                 "--quality", "60"]) == 0
    assert images.read(tmp_path / "q" / "IMG_1000.JPG").quality == 60  # an explicit --quality wins
    assert main(["denoise", str(folder / "IMG_1000.JPG"), "-o", str(tmp_path / "deep"), "--weights", str(tiny),
                 "--bits", "16"]) == 0
    assert images.read(tmp_path / "deep" / "IMG_1000.png").bits == 16  # 16 bits: a PNG, JPEG holds 8
    (out / "IMG_1001-denoised.jpg").unlink()  # as if Ctrl-C had stopped the first run there
    before = (out / "IMG_1000-denoised.JPG").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["denoise", str(folder), "-o", str(out), "--weights", str(tiny), "--suffix", "-denoised",
                 "--skip-existing"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[0].startswith(str(out / "IMG_1001-denoised.jpg"))
    assert len(captured.out.strip().splitlines()) == 1  # only the missing one was denoised
    assert "1 photo denoised" in captured.err and "2 skipped" in captured.err and "--skip-existing" in captured.err
    assert (out / "IMG_1000-denoised.JPG").stat().st_mtime_ns == before
    assert main(["denoise", str(folder), "-o", str(out), "--weights", str(tiny), "--suffix", "-denoised",
                 "--skip-existing"]) == 0
    assert "nothing to do: all 3 outputs already exist" in capsys.readouterr().err


def test_denoise_refuses_to_overwrite_its_input_and_a_suffix_with_a_path(tmp_path, tiny, capsys):
    src = tmp_path / "shot.jpg"
    Image.fromarray(np.random.default_rng(6).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(src)
    data = src.read_bytes()
    for extra in ([], ["--suffix", "x/y"]):
        assert main(["denoise", str(src), "-o", str(tmp_path), "--weights", str(tiny), *extra]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("n2n: error:") and ("--suffix" in err[0]), err
    assert src.read_bytes() == data


def test_train_on_noisy_pairs_holds_some_out_and_reports_their_validation_psnr(tmp_path, capsys):
    rng = np.random.default_rng(8)
    pairs = tmp_path / "pairs"
    for sub in "AB":
        (pairs / sub).mkdir(parents=True)
    for i in range(5):
        clean = rng.integers(60, 200, (32, 32, 3)).astype(np.float64)
        for sub in "AB":
            Image.fromarray(np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).astype(np.uint8)).save(
                pairs / sub / f"{i}.png")
    out = tmp_path / "p.safetensors"
    assert main(["train", "--data", str(pairs), "--arch", "tiny", "--steps", "2", "--batch-size", "2",
                 "--patch-size", "16", "--val-every", "2", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "1 held-out pairs for validation (PSNR of the output against the other shot)" in captured.err
    res = json.loads(captured.out.strip().splitlines()[-1])
    assert res["status"] == "succeeded" and 5 < res["val_psnr"] < 60, res


def test_train_defaults_are_train_configs_and_the_apis():
    from app.api.schemas import TrainRequest
    from n2n_core.cli import _train_config, build_parser
    from n2n_core.training.train import TrainConfig

    cfg = _train_config(build_parser().parse_args(["train", "--out", "x.safetensors"]))
    api = TrainRequest(dataset="builtin")
    for key in ("batch_size", "patch_size", "learning_rate", "seed"):
        assert getattr(cfg, key) == getattr(TrainConfig(), key) == getattr(api, key), key
    given = _train_config(build_parser().parse_args(["train", "--out", "x", "--batch-size", "3", "--patch-size", "32",
                                                     "--lr", "0.01", "--seed", "5"]))
    assert (given.batch_size, given.patch_size, given.learning_rate, given.seed) == (3, 32, 0.01, 5)
