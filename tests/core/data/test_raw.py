"""n2n_core.data.raw and camera RAW through n2n_core.data.images: DNGs written here (tifffile, with the DNG tags) that
LibRaw reads; recognising RAWs before Pillow sees their preview; sizes before demosaicing; the camera's white
balance, the sRGB curve, orientation and EXIF; refusals that name the format."""

import io
from contextlib import contextmanager

import numpy as np
import pytest
import rawpy
import torch
from PIL import Image

from n2n_core.data import images
from n2n_core.data import raw

from tests.photo_files import (
    DATE_ORIGINAL,
    DNG_TAGS,
    EXIF_IFD,
    GPS,
    GPS_IFD,
    MAKE,
    MODEL,
    ORIENTATION,
    camera_exif,
    dng,
    nef_like,
)


def _srgb(linear: float) -> float:
    return 12.92 * linear if linear <= 0.0031308 else 1.055 * linear ** (1 / 2.4) - 0.055


def test_the_dngs_written_here_are_read_by_libraw_itself():
    data = dng()
    with rawpy.RawPy() as r:
        r.open_buffer(io.BytesIO(data))
        assert (r.sizes.width, r.sizes.height, r.sizes.flip) == (96, 64, 0)
        assert r.raw_pattern.tolist() == [[0, 1], [3, 2]] and r.color_desc == b"RGBG"  # R G / G B
        assert r.camera_whitebalance[:3] == pytest.approx([2.0, 1.0, 1.25])  # 1 / AsShotNeutral
        assert r.raw_image.shape == (64, 96)
        assert r.postprocess(**raw.DEVELOP).shape == (64, 96, 3)
    assert rawpy.__version__ == "0.28.0"


@pytest.mark.parametrize("make_data,name,expected", [
    (dng, None, "DNG"),
    (nef_like, None, "NEF"),
    (lambda: b"II*\0\x10\0\0\0CR\x02\0" + bytes(100), None, "CR2"),
    (lambda: b"FUJIFILMCCD-RAW 0201FF383501" + bytes(100), None, "RAF"),
    (lambda: b"IIRO\x08\0\0\0" + bytes(100), None, "ORF"),
    (lambda: b"IIU\0\x08\0\0\0" + bytes(100), None, "RW2"),
    (lambda: b"\0\0\0\x18ftypcrx \0\0\0\x01" + bytes(100), None, "CR3"),
    (lambda: b"no magic at all" * 10, "DSC_0001.NEF", "NEF"),  # the extension is trusted for unknown bytes
    (lambda: b"\x89PNG\r\n\x1a\n" + bytes(100), "mislabelled.nef", None),  # ... never over another format
    (lambda: b"no magic at all" * 10, "notes.txt", None),
])
def test_raws_are_recognised_by_content_then_by_extension(make_data, name, expected):
    assert raw.identify(make_data(), name) == expected


def test_a_plain_tiff_is_not_a_raw():
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(buf, format="TIFF", tiffinfo={MAKE: "NIKON CORPORATION"})
    assert raw.identify(buf.getvalue()) is None and images.probe(buf.getvalue()) == ("TIFF", 12, 8)


def test_a_nef_is_never_read_as_its_embedded_preview():
    data = nef_like()
    assert Image.open(io.BytesIO(data)).size == (12, 8)  # what Pillow alone would decode
    assert images.probe(data) == ("NEF", 96, 64)  # the sensor's image, as LibRaw sizes it


@pytest.mark.parametrize("orientation,size", [(1, (96, 64)), (6, (64, 96)), (3, (96, 64)), (8, (64, 96))])
def test_probe_gives_the_developed_upright_size_without_demosaicing(orientation, size, monkeypatch):
    developed = []
    monkeypatch.setattr(raw, "develop", lambda *a: developed.append(a))
    assert images.probe(dng(orientation=orientation)) == ("DNG", *size)
    assert developed == []


def test_a_raw_is_developed_with_the_camera_white_balance_then_the_srgb_curve():
    pic = images.decode(dng(np.full((32, 48, 3), 0.18)))  # an 18 % grey card, seen through the camera's filters
    assert (pic.format, pic.bits, pic.mode, pic.size, pic.alpha) == ("DNG", 16, "RGB", (48, 32), None)
    means = pic.pixels.mean(dim=(1, 2))
    assert torch.allclose(means, torch.full((3,), _srgb(0.18)), atol=0.004)  # neutral again, sRGB-encoded
    assert not torch.allclose(means, torch.full((3,), 0.18), atol=0.1)  # not the linear values
    assert pic.icc_profile == raw.srgb_profile() and pic.icc_profile[16:20] == b"RGB "


def test_orientation_turns_the_pixels_upright():
    pic = images.decode(dng(orientation=6))  # brighter to the right on the sensor; 6: turn clockwise to view
    assert pic.size == (64, 96)
    green = pic.pixels[1]
    assert green[-8:].mean() > green[:8].mean() + 0.3  # the sensor's right edge is now the bottom
    assert torch.allclose(green[:, :8].mean(), green[:, -8:].mean(), atol=0.02)


def test_the_camera_exif_is_kept_and_the_raw_s_own_tags_are_not():
    pic = images.decode(dng(orientation=6, exif=camera_exif("Canon", "EOS R5")))
    exif = Image.Exif()
    exif.load(pic.exif)
    assert (exif[MAKE], exif[MODEL], exif[ORIENTATION]) == ("Canon", "EOS R5", 1)
    assert exif.get_ifd(EXIF_IFD)[DATE_ORIGINAL] == "2024:05:01 10:00:00" and exif.get_ifd(GPS_IFD) == GPS
    assert not set(DNG_TAGS) & set(exif)
    tiff = images.encode(pic, images.default_output_format(pic.format))
    with Image.open(io.BytesIO(tiff)) as im:
        assert im.format == "TIFF" and im.getexif()[MODEL] == "EOS R5" and im.size == (64, 96)
        assert not set(DNG_TAGS) & set(im.getexif())
    import tifffile

    assert tifffile.imread(io.BytesIO(tiff)).dtype == np.uint16  # a RAW answers in 16 bits by default


def test_srgb_encoding_follows_the_standard_curve():
    linear = torch.tensor([0.0, 0.001, 0.0031308, 0.18, 0.5, 1.0]).reshape(1, 1, -1)
    encoded = raw.encode_srgb_(linear.clone())
    assert torch.allclose(encoded.flatten(), torch.tensor([_srgb(v) for v in linear.flatten().tolist()]), atol=1e-6)
    assert encoded.flatten()[-1].item() == pytest.approx(1.0)


def test_size_limits_are_checked_before_demosaicing(monkeypatch):
    real_opened, calls = raw._opened, []

    class Watched:
        def __init__(self, r):
            self.r = r

        def __getattr__(self, name):
            if name == "postprocess":
                calls.append(name)
            return getattr(self.r, name)

    @contextmanager
    def watched(data, fmt):
        with real_opened(data, fmt) as r:
            yield Watched(r)

    monkeypatch.setattr(raw, "_opened", watched)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 96 x 64 is over twice this: a "bomb"
    with pytest.raises(images.ImageTooLarge, match="more than 2000"):
        images.decode(dng())
    assert calls == []
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    assert images.decode(dng()).size == (96, 64) and calls == ["postprocess"]


@pytest.mark.parametrize("data,fmt", [(b"FUJIFILMCCD-RAW 0201FF383501" + bytes(200), "RAF"),
                                      (b"IIRO\x08\0\0\0" + bytes(200), "ORF"),
                                      (b"\0\0\0\x18ftypcrx \0\0\0\x01" + bytes(200), "CR3")])
def test_a_raw_libraw_cannot_read_is_unsupported_and_named(data, fmt):
    for step in (images.probe, images.decode):
        with pytest.raises(images.UnsupportedImage, match=f"cannot read this {fmt} camera RAW file: LibRaw"):
            step(data)


def test_a_truncated_raw_is_a_readable_error_naming_the_format():
    data = dng()[:3000]
    with pytest.raises(images.ImageError, match="DNG") as caught:
        with raw.quiet_libraw():
            images.decode(data)
    assert "/" not in str(caught.value).replace("Input/output", "")  # no path


def test_read_takes_the_extension_and_write_the_default_tiff(tmp_path):
    src = tmp_path / "IMG_0001.DNG"
    src.write_bytes(dng(exif=camera_exif()))
    assert ".dng" in images.PHOTO_SUFFIXES and ".nef" in images.PHOTO_SUFFIXES and ".cr3" in images.PHOTO_SUFFIXES
    pic = images.read(src)
    images.write(tmp_path / "out.tiff", pic)
    images.write(tmp_path / "out.jpeg", pic)
    assert Image.open(tmp_path / "out.jpeg").getexif()[MAKE] == "N2N"
    assert images.default_output_format("NEF") == "tiff" and images.default_output_format("JPEG") == "jpeg"


def test_quiet_libraw_restores_stderr(capfd):
    import os

    with raw.quiet_libraw():
        os.write(2, b"hidden\n")
    os.write(2, b"shown\n")
    assert capfd.readouterr().err == "shown\n"


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_damaged_tiff_structures_never_break_identification():
    rng = np.random.default_rng(0)
    good = dng()
    for i in range(300):
        cut = good[: int(rng.integers(0, 400))] if i % 3 == 0 else None
        noise = bytes(rng.integers(0, 256, int(rng.integers(0, 600)), dtype=np.uint8))
        data = cut if cut is not None else rng.choice([b"II*\0", b"MM\0*"]) + noise
        found = raw.identify(data)
        assert found is None or found in raw.FORMATS
        try:
            with raw.quiet_libraw():
                images.probe(data)
        except images.ImageError:
            pass  # refused as bad input: anything else fails the test
