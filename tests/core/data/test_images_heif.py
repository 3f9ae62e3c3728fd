"""n2n_core.data.images with HEIC/HEIF (pillow-heif) and AVIF (Pillow): iPhone-style photos in and out, 8 and 10
bits, EXIF, ICC and orientation kept as for JPEG; and files of several frames refused with their count."""

import io

import numpy as np
import pillow_heif
import pytest
import tifffile
from PIL import Image

from n2n_core.data import images

from tests.photo_files import DATE_ORIGINAL, EXIF_IFD, GPS, GPS_IFD, MAKE, MODEL, ORIENTATION, SRGB, camera_exif, frames
from tests.photo_files import heic


def _scene(h: int = 40, w: int = 60) -> np.ndarray:
    """A smooth RGB picture (lossy codecs keep it within a few levels), different in every corner."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], -1).astype(np.uint8)


def _as_uint8(pic: images.Picture) -> np.ndarray:
    return (pic.pixels.permute(1, 2, 0).numpy() * 255).round().astype(np.int64)


def _exif_of(pic: images.Picture) -> Image.Exif:
    exif = Image.Exif()
    exif.load(pic.exif)
    return exif


def test_an_iphone_style_heic_is_read_upright_with_its_exif_gps_and_profile():
    a = _scene()
    data = heic(a, exif=camera_exif("Apple", "iPhone 15 Pro", orientation=6), icc=SRGB)
    assert images.probe(data) == ("HEIF", 40, 60)  # the upright size, read from the header
    pic = images.decode(data)
    assert (pic.format, pic.bits, pic.mode, pic.size) == ("HEIF", 8, "RGB", (40, 60))
    assert np.abs(_as_uint8(pic) - np.rot90(a, -1)).mean() < 3  # orientation 6: turned clockwise, once
    exif = _exif_of(pic)
    assert (exif[MAKE], exif[MODEL], exif[ORIENTATION]) == ("Apple", "iPhone 15 Pro", 1)
    assert exif.get_ifd(EXIF_IFD)[DATE_ORIGINAL] == "2024:05:01 10:00:00" and exif.get_ifd(GPS_IFD) == GPS
    assert pic.icc_profile == SRGB


def test_a_10_bit_heic_is_read_as_16_bit_over_the_full_range():
    rng = np.random.default_rng(0)
    ten = rng.integers(0, 1024, (24, 32, 3))
    ten[0] = 1023  # a white row stays exactly white
    data = heic((ten << 6).astype(np.uint16), exif=camera_exif(), icc=SRGB, lossless=True)
    assert Image.open(io.BytesIO(data)).info["bit_depth"] == 10
    pic = images.decode(data)
    assert (pic.bits, pic.mode, pic.size, pic.icc_profile) == (16, "RGB", (32, 24), SRGB)
    found = (pic.pixels.permute(1, 2, 0).numpy() * 65535).round().astype(np.int64)
    assert np.array_equal(found, (ten * 65535 + 511) // 1023)
    assert found.max() == 65535 and _exif_of(pic)[MAKE] == "N2N"


@pytest.mark.parametrize("mode,shape,bits", [("L", (12, 16), 16), ("RGBA", (12, 16, 4), 8)])
def test_grey_and_alpha_heics_keep_their_mode(mode, shape, bits):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 1 << 10, shape) << 6 if bits == 16 else rng.integers(0, 256, shape)
    pic = images.decode(heic(a.astype(np.uint16 if bits == 16 else np.uint8)))
    assert (pic.mode, pic.bits) == (mode, bits)


@pytest.mark.parametrize("bits", [8, 16])
def test_heic_output_keeps_exif_profile_and_depth(bits):
    a = _scene()
    src = images.decode(heic(a, exif=camera_exif(orientation=8), icc=SRGB))
    pic = src if bits == 8 else images.Picture(src.pixels, None, 16, "PNG", src.exif, src.icc_profile)
    out = images.encode(pic, "heic", quality=90)
    assert images.MEDIA_TYPES[images.OUTPUT_FORMATS["heic"]] == "image/heic"
    with Image.open(io.BytesIO(out)) as im:
        assert im.format == "HEIF" and im.size == pic.size and im.info["bit_depth"] == (10 if bits == 16 else 8)
        exif = im.getexif()
        assert (exif[MAKE], exif.get(ORIENTATION, 1), im.info["icc_profile"]) == ("N2N", 1, SRGB)
        assert exif.get_ifd(GPS_IFD) == GPS
    back = images.decode(out)
    assert back.bits == bits and np.abs(_as_uint8(back) - _as_uint8(pic)).mean() < 3
    stripped = images.decode(images.encode(pic, "heic", strip_metadata=True))
    assert stripped.exif is None and stripped.icc_profile == SRGB


def test_heic_holds_10_bits_and_says_so_when_16_are_asked_for():
    pic = images.decode(heic(_scene()))
    with pytest.raises(ValueError, match="heic holds at most 10 bits"):
        images.encode(pic, "heic", bits=16)
    assert images.output_bits(16, "heic") == 16 and images.output_bits(8, "heic") == 8


def test_long_thin_photos_are_written_as_a_grid_of_tiles():
    pic = images.Picture(images.to_unit_floats(np.zeros((16, 8200, 3), np.uint8), 255.0), None, 8, "PNG")
    with Image.open(io.BytesIO(images.encode(pic, "heic"))) as im:  # a single HEVC picture of this shape fails
        assert im.size == (8200, 16)


def test_avif_in_and_out_keeps_orientation_exif_and_profile():
    a = _scene()
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="AVIF", quality=95, exif=camera_exif(orientation=6), icc_profile=SRGB)
    assert images.probe(buf.getvalue()) == ("AVIF", 60, 40)  # as stored: turned upright when decoded, like a JPEG
    pic = images.decode(buf.getvalue())
    assert (pic.bits, pic.size, pic.icc_profile) == (8, (40, 60), SRGB)
    assert np.abs(_as_uint8(pic) - np.rot90(a, -1)).mean() < 3
    out = images.encode(pic, "avif", quality=90)
    with Image.open(io.BytesIO(out)) as im:
        assert im.format == "AVIF" and im.size == (40, 60) and im.info["icc_profile"] == SRGB
        assert im.getexif()[MAKE] == "N2N" and im.getexif().get(ORIENTATION, 1) == 1
    with pytest.raises(ValueError, match="avif holds 8 bits"):
        images.encode(pic, "avif", bits=16)


def test_a_heic_file_is_read_by_name_and_written_by_suffix(tmp_path):
    src = tmp_path / "IMG_0001.HEIC"
    src.write_bytes(heic(_scene()))
    assert ".heic" in images.PHOTO_SUFFIXES and ".avif" in images.PHOTO_SUFFIXES
    images.write(tmp_path / "out.heic", images.read(src))
    images.write(tmp_path / "out.avif", images.read(src))
    assert Image.open(tmp_path / "out.heic").format == "HEIF" and Image.open(tmp_path / "out.avif").format == "AVIF"


# ----------------------------------------------------------------------------- several frames


@pytest.mark.parametrize("fmt,kind", [("PNG", "animated PNG"), ("GIF", "animated GIF"), ("WEBP", "animated WebP"),
                                      ("TIFF", "multi-page TIFF"), ("HEIF", "HEIF image collection")])
def test_a_file_of_several_frames_is_refused_with_their_count(fmt, kind):
    data = frames(fmt, 3)
    for step in (images.probe, images.decode):
        with pytest.raises(images.MultiFrameImage, match=f"the file has 3 frames \\({'an' if kind[0] == 'a' else 'a'} "
                                                         f"{kind}\\)") as caught:
            step(data)
        assert caught.value.frames == 3 and isinstance(caught.value, ValueError)


def test_a_multi_page_tiff_pillow_cannot_open_is_refused_too():
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as w:
        for _ in range(2):  # 16-bit grey + alpha: read by tifffile only
            w.write(np.zeros((5, 6, 2), np.uint16), photometric="minisblack", extrasamples=[2])
    with pytest.raises(images.MultiFrameImage, match="has 2 frames"):
        images.probe(buf.getvalue())


def test_a_tiff_thumbnail_and_a_single_frame_animation_are_one_photo():
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as w:
        w.write(np.zeros((50, 60, 3), np.uint8), photometric="rgb")
        w.write(np.zeros((5, 6, 3), np.uint8), photometric="rgb", subfiletype=1)  # reduced-resolution page
    assert images.probe(buf.getvalue()) == ("TIFF", 60, 50)
    assert images.probe(frames("PNG", 1)) == ("PNG", 10, 8)
    with pytest.raises(images.UnsupportedImage, match="GIF"):  # one frame: still not a format n2n reads
        images.probe(frames("GIF", 1))


def test_a_camera_jpeg_with_mpo_previews_is_still_its_first_picture():
    buf = io.BytesIO()
    Image.fromarray(_scene()).save(buf, format="MPO", save_all=True, append_images=[Image.fromarray(_scene(20, 30))])
    assert images.probe(buf.getvalue()) == ("JPEG", 60, 40)


def test_pillow_heif_is_the_pinned_version():
    assert pillow_heif.__version__ == "1.8.1"
