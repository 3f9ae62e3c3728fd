"""`n2n denoise` with photographers' files: camera RAW (a 16-bit TIFF by default, the camera-noise model unless
--weights names one), HEIC in and out, folders that hold them; one error line for what cannot be read."""

import numpy as np
import pytest
import tifffile
from PIL import Image

import n2n_core
from n2n_core import cli, models
from n2n_core.data import raw
from n2n_core.cli import main

from tests.photo_files import MAKE, camera_exif, dng, frames, heic


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    n2n_core.save(models.build("tiny"), path)
    return path


@pytest.fixture
def shots(tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    (folder / "IMG_0001.DNG").write_bytes(dng(orientation=6, exif=camera_exif("Canon", "EOS R5")))
    (folder / "IMG_0002.HEIC").write_bytes(heic(np.full((20, 30, 3), 120, np.uint8), exif=camera_exif()))
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / "plain.png")
    (folder / "notes.txt").write_text("not a photo")
    return folder


def test_a_raw_becomes_a_16_bit_tiff_and_a_folder_includes_raw_and_heic(tmp_path, tiny, shots, capsys):
    out = tmp_path / "out"
    assert main(["denoise", str(shots), "-o", str(out), "--weights", str(tiny)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["IMG_0001.tiff", "IMG_0002.HEIC", "plain.png"]  # HEIC stays HEIC
    a = tifffile.imread(out / "IMG_0001.tiff")
    assert a.dtype == np.uint16 and a.shape == (96, 64, 3)
    assert Image.open(out / "IMG_0001.tiff").getexif()[MAKE] == "Canon"
    assert "IMG_0001.tiff" in capsys.readouterr().out


def test_format_applies_to_raws_too_and_heic_is_an_output(tmp_path, tiny, shots):
    out = tmp_path / "out"
    assert main(["denoise", str(shots / "IMG_0001.DNG"), str(shots / "IMG_0002.HEIC"), "-o", str(out), "--weights",
                 str(tiny), "--format", "heic"]) == 0
    with Image.open(out / "IMG_0001.heic") as im:
        assert im.format == "HEIF" and im.size == (64, 96) and im.info["bit_depth"] == 10
    assert Image.open(out / "IMG_0002.HEIC").getexif()[MAKE] == "N2N"
    assert main(["denoise", str(shots / "IMG_0001.DNG"), "-o", str(out), "--weights", str(tiny), "--format",
                 "jpeg"]) == 0
    assert Image.open(out / "IMG_0001.jpeg").format == "JPEG"


def test_raws_get_the_camera_noise_model_unless_weights_name_one(tmp_path, shots, monkeypatch):
    loaded = []
    real = cli._load_model

    def recording(spec, device):
        loaded.append(spec)
        return real("fast" if spec is None else spec, device)  # small and quick; what matters is what was asked

    monkeypatch.setattr(cli, "_load_model", recording)
    assert main(["denoise", str(shots), "-o", str(tmp_path / "out"), "-q"]) == 0
    assert sorted(loaded, key=str) == sorted([None, raw.CAMERA_NOISE_MODEL], key=str)  # each loaded once


def test_an_unreadable_raw_is_one_line_naming_its_format(tmp_path, tiny, capfd):
    bad = tmp_path / "DSCF0001.RAF"
    bad.write_bytes(b"FUJIFILMCCD-RAW 0201FF383501" + bytes(300))
    assert main(["denoise", str(bad), "-o", str(tmp_path / "o"), "--weights", str(tiny)]) == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("n2n: error:") and "RAF camera RAW" in err[0], err


def test_a_truncated_raw_is_one_line_even_though_libraw_complains(tmp_path, tiny, capfd):
    bad = tmp_path / "cut.dng"
    bad.write_bytes(dng()[:3000])  # the header is whole: LibRaw only finds out while unpacking
    assert main(["denoise", str(bad), "-o", str(tmp_path / "o"), "--weights", str(tiny), "-q"]) == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("n2n: error:") and "DNG" in err[0], err


@pytest.mark.parametrize("fmt,suffix", [("GIF", "gif"), ("TIFF", "tiff"), ("WEBP", "webp")])
def test_a_file_of_several_frames_is_one_line_saying_how_many(tmp_path, tiny, capsys, fmt, suffix):
    path = tmp_path / f"anim.{suffix}"
    path.write_bytes(frames(fmt, 3))
    assert main(["denoise", str(path), "-o", str(tmp_path / "o"), "--weights", str(tiny)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has 3 frames" in err[0], err


def test_outputs_of_different_formats_do_not_clash_but_equal_names_do(tmp_path, tiny, shots, capsys):
    (shots / "IMG_0001.png").write_bytes((shots / "plain.png").read_bytes())  # IMG_0001.png next to IMG_0001.tiff
    assert main(["denoise", str(shots), "-o", str(tmp_path / "out"), "--weights", str(tiny), "-q"]) == 0
    capsys.readouterr()
    assert main(["denoise", str(shots), "-o", str(tmp_path / "o2"), "--weights", str(tiny), "--format", "png"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "IMG_0001.png" in err[0], err
