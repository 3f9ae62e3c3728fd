"""n2n_core.data.images + n2n_core.data.metadata: EXIF and ICC survive decode -> encode; quality, bits, strip."""

import io

import cv2
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, ImageCms, ImageOps

from n2n_core.data import images
from n2n_core.data import metadata

MAKE, MODEL, ORIENTATION, DATE_ORIGINAL = 0x010F, 0x0110, 0x0112, 0x9003
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
GPS = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}  # latitude and longitude, ref + d/m/s
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
OUT_FORMATS = ["jpeg", "png", "webp", "tiff"]


def _exif(orientation: int | None = None, exif_ifd: dict | None = None) -> Image.Exif:
    """Camera, model, date taken (Exif IFD) and a position (GPS IFD), as a camera writes them."""
    exif = Image.Exif()
    exif[MAKE], exif[MODEL] = "Canon", "EOS R5"
    if orientation is not None:
        exif[ORIENTATION] = orientation
    exif.get_ifd(EXIF_IFD).update({DATE_ORIGINAL: "2024:05:01 10:00:00", **(exif_ifd or {})})
    exif.get_ifd(GPS_IFD).update(GPS)
    return exif


def _photo(fmt: str, a: np.ndarray, exif: Image.Exif | None, icc: bytes | None = SRGB) -> bytes:
    """A file as a camera or editor writes it (Pillow; its TIFF tags hold the Exif and GPS sub-IFDs)."""
    buf = io.BytesIO()
    extra = {"icc_profile": icc} if icc else {}
    if fmt == "TIFF":
        tags = {} if exif is None else {**dict(exif), EXIF_IFD: exif.get_ifd(EXIF_IFD), GPS_IFD: exif.get_ifd(GPS_IFD)}
        Image.fromarray(a).save(buf, format="TIFF", tiffinfo=tags, **extra)
    else:
        Image.fromarray(a).save(buf, format=fmt, **({} if exif is None else {"exif": exif}), **extra,
                                **({"lossless": True} if fmt == "WEBP" else {}))
    return buf.getvalue()


def _rgb(h: int = 20, w: int = 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _read(data: bytes) -> dict:
    """What another reader (Pillow) finds in a file: camera, date, GPS, orientation and ICC profile."""
    with Image.open(io.BytesIO(data)) as im:
        exif = im.getexif()
        return {"make": exif.get(MAKE), "model": exif.get(MODEL), "orientation": exif.get(ORIENTATION),
                "date": exif.get_ifd(EXIF_IFD).get(DATE_ORIGINAL), "gps": dict(exif.get_ifd(GPS_IFD)),
                "icc": im.info.get("icc_profile"), "size": im.size}


def _assert_kept(found: dict) -> None:
    assert (found["make"], found["model"], found["date"]) == ("Canon", "EOS R5", "2024:05:01 10:00:00")
    assert found["gps"] == GPS
    assert found["icc"] == SRGB
    assert found["orientation"] in (None, 1)


@pytest.mark.parametrize("out", OUT_FORMATS)
@pytest.mark.parametrize("src", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_exif_and_icc_survive_decode_then_encode(src, out):
    pic = images.decode(_photo(src, _rgb(), _exif()))
    assert pic.exif is not None and pic.icc_profile == SRGB
    data = images.encode(pic, out)
    _assert_kept(_read(data))
    again = images.decode(data)  # and our own reader finds them again
    assert again.exif is not None and again.icc_profile == SRGB


def test_a_tiff_result_holds_the_exif_and_gps_sub_ifds_for_other_readers_too():
    pic = images.decode(_photo("JPEG", _rgb(), _exif()))
    for bits in (8, 16):
        with tifffile.TiffFile(io.BytesIO(images.encode(pic, "tiff", bits=bits))) as tif:
            page = tif.pages.first
            tags = {tag.name: tag.value for tag in page.tags.values()}
            assert page.dtype == (np.uint16 if bits == 16 else np.uint8) and page.shape == (20, 30, 3)
        assert (tags["Make"], tags["Model"]) == ("Canon", "EOS R5")
        assert tags["ExifTag"]["DateTimeOriginal"] == "2024:05:01 10:00:00"
        assert tags["GPSTag"]["GPSLatitudeRef"] == "N" and tags["InterColorProfile"] == SRGB


@pytest.mark.parametrize("out", ["png", "tiff"])
def test_16_bit_results_keep_metadata_in_every_mode(out):
    """16-bit PNG and TIFF are written by other encoders than Pillow (OpenCV, tifffile, by hand for grey +
    alpha PNG): the metadata is added to them all."""
    rng = np.random.default_rng(1)
    for channels in (1, 2, 3, 4):
        colours = 1 if channels <= 2 else 3
        pixels = torch.from_numpy(rng.random((colours, 12, 10), dtype=np.float32))
        alpha = rng.integers(0, 65536, (12, 10), dtype=np.uint16) if channels in (2, 4) else None
        icc = SRGB if colours == 3 else SRGB[:16] + b"GRAY" + SRGB[20:]  # a grey profile's header
        pic = images.Picture(pixels, alpha, 16, "PNG", exif=metadata.normalised_exif(_exif(), (10, 12)),
                             icc_profile=icc)
        data = images.encode(pic, out)
        again = images.decode(data)
        assert (again.bits, again.mode) == (16, pic.mode)
        assert again.icc_profile == icc
        tags = metadata.exif_tags(again.exif)
        assert tags[MAKE] == "Canon" and dict(tags.get_ifd(GPS_IFD)) == GPS


@pytest.mark.parametrize("out", OUT_FORMATS)
def test_strip_metadata_removes_the_exif_gps_included_and_keeps_the_colour_profile(out):
    pic = images.decode(_photo("JPEG", _rgb(), _exif()))
    found = _read(images.encode(pic, out, strip_metadata=True))
    assert found["make"] is None and found["date"] is None and found["gps"] == {}
    assert found["icc"] == SRGB
    assert images.decode(images.encode(pic, out, strip_metadata=True)).exif is None


@pytest.mark.parametrize("src", ["JPEG", "PNG", "TIFF"])
def test_orientation_is_applied_and_the_tag_reset(src):
    a = _rgb(20, 30)
    data = _photo(src, a, _exif(orientation=6, exif_ifd={0xA002: 30, 0xA003: 20}))
    with Image.open(io.BytesIO(data)) as im:
        upright = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    pic = images.decode(data)
    assert pic.size == (20, 30)  # turned a quarter: 30 x 20 on file, 20 wide once upright
    if src != "JPEG":
        assert np.array_equal((pic.pixels.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), upright)
    for out in OUT_FORMATS:
        found = _read(images.encode(pic, out))
        assert found["orientation"] in (None, 1) and found["size"] == (20, 30), out
        with Image.open(io.BytesIO(images.encode(pic, out))) as im:
            dims = im.getexif().get_ifd(EXIF_IFD)
            assert (dims[0xA002], dims[0xA003]) == (20, 30), out  # PixelX/YDimension follow the pixels


def test_quality_changes_jpeg_and_webp_size_and_is_checked():
    pic = images.decode(_photo("PNG", _rgb(64, 64), None))
    for fmt in ("jpeg", "webp"):
        assert len(images.encode(pic, fmt, quality=20)) < len(images.encode(pic, fmt, quality=95))
    assert images.encode(pic, "jpeg") == images.encode(pic, "jpeg", quality=95)  # the default
    for bad in (0, 101, -5, 50.5, True, "90"):
        with pytest.raises(ValueError, match="quality"):
            images.encode(pic, "jpeg", quality=bad)


def test_16_bit_tiff_keeps_16_bit_values():
    a = np.random.default_rng(2).integers(0, 65536, (9, 13, 3), dtype=np.uint16)
    ok, buf = cv2.imencode(".png", a[:, :, ::-1])
    pic = images.decode(buf.tobytes())
    assert pic.bits == 16
    for bits in (None, 16):
        with tifffile.TiffFile(io.BytesIO(images.encode(pic, "tiff", bits=bits))) as tif:
            assert np.array_equal(tif.pages.first.asarray(), a)
    assert images.decode(images.encode(pic, "png", bits=8)).bits == 8  # asked for 8 bits


def test_bits_16_from_an_8_bit_input_and_where_it_is_refused():
    a = _rgb()
    pic = images.decode(_photo("PNG", a, None))
    for fmt in ("tiff", "png"):
        deep = images.decode(images.encode(pic, fmt, bits=16))
        assert deep.bits == 16
        assert np.array_equal((deep.pixels.permute(1, 2, 0).numpy() * 65535).round().astype(np.uint16),
                              a.astype(np.uint16) * 257)  # the same levels, spread over 16 bits
    assert images.decode(images.encode(pic, "tiff")).bits == 8  # the default keeps the input's depth
    for fmt in ("jpeg", "webp"):
        with pytest.raises(ValueError, match="bits"):
            images.encode(pic, fmt, bits=16)
    with pytest.raises(ValueError, match="bits"):
        images.encode(pic, "png", bits=12)


def test_a_profile_of_another_colour_space_is_dropped():
    cmyk_profile = SRGB[:16] + b"CMYK" + SRGB[20:]
    buf = io.BytesIO()
    Image.fromarray(_rgb()).convert("CMYK").save(buf, format="JPEG", icc_profile=cmyk_profile)
    assert images.decode(buf.getvalue()).icc_profile is None  # decoded to RGB: a CMYK profile would lie
    grey = _photo("PNG", _rgb()[:, :, 0], None, icc=SRGB)
    assert images.decode(grey).icc_profile is None


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_damaged_exif_costs_the_metadata_not_the_photo():
    buf = io.BytesIO()
    Image.fromarray(_rgb()).save(buf, format="JPEG", exif=b"Exif\0\0MM\0*\0\0\0\x08\xff\xff garbage")
    pic = images.decode(buf.getvalue())
    assert pic.size == (30, 20) and pic.exif is None
    images.encode(pic, "jpeg")


def test_a_jpeg_too_small_for_the_exif_loses_the_maker_note_first():
    pic = images.decode(_photo("PNG", _rgb(), _exif(exif_ifd={0x927C: b"\1" * 70_000})))
    found = _read(images.encode(pic, "jpeg"))
    assert found["make"] == "Canon" and found["gps"] == GPS
    assert len(images.encode(pic, "png")) > 70_000  # PNG has room for it


def test_a_writer_s_own_tiff_description_is_not_carried_but_a_caption_is():
    buf = io.BytesIO()
    tifffile.imwrite(buf, _rgb(), photometric="rgb", metadata={"anything": 1})  # ImageDescription: JSON shape
    exif = images.decode(buf.getvalue()).exif  # what is left: tifffile's Software tag
    assert 270 not in metadata.exif_tags(exif) and metadata.exif_tags(exif)[0x0131] == "tifffile.py"
    exif = _exif()
    exif[270] = "Harbour at dawn"
    assert metadata.exif_tags(images.decode(_photo("PNG", _rgb(), exif)).exif)[270] == "Harbour at dawn"


def test_exif_is_added_to_little_endian_bigtiff_and_big_endian_tiff():
    exif = metadata.normalised_exif(_exif(), (30, 20))
    for kwargs in ({"bigtiff": True}, {"byteorder": ">"}):
        buf = io.BytesIO()
        tifffile.imwrite(buf, _rgb(), photometric="rgb", metadata=None, **kwargs)
        with tifffile.TiffFile(io.BytesIO(metadata.tiff_with_exif(buf.getvalue(), exif))) as tif:
            tags = {tag.name: tag.value for tag in tif.pages.first.tags.values()}
            assert np.array_equal(tif.pages.first.asarray(), _rgb())
        assert tags["Make"] == "Canon" and tags["GPSTag"]["GPSLatitudeRef"] == "N", kwargs


def test_write_takes_the_same_options(tmp_path):
    pic = images.decode(_photo("JPEG", _rgb(), _exif()))
    _assert_kept(_read(images.write(tmp_path / "a.tif", pic).read_bytes()))
    assert _read(images.write(tmp_path / "b.jpg", pic, strip_metadata=True).read_bytes())["make"] is None
    with tifffile.TiffFile(images.write(tmp_path / "c.tiff", pic, bits=16)) as tif:
        assert tif.pages.first.dtype == np.uint16
