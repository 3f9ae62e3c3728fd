"""n2n_core.data.images: every mode x bit depth the decoders allow survives decode -> encode unchanged."""

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from n2n_core.data import images

MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


def _array(mode: str, bits: int, h: int = 9, w: int = 13, seed: int = 0) -> np.ndarray:
    """Random (H, W) or (H, W, C) pixels of the mode, uint8 or uint16, using the whole range."""
    c = MODES[mode]
    dtype = np.uint16 if bits == 16 else np.uint8
    a = np.random.default_rng(seed).integers(0, 1 << bits, (h, w, c), endpoint=False).astype(dtype)
    if "A" in mode:
        a[0, :, -1], a[1, :, -1] = 0, (1 << bits) - 1  # fully transparent and fully opaque rows
    return a[:, :, 0] if c == 1 else a


def png_by_hand(a: np.ndarray) -> bytes:
    """A PNG of a uint8/uint16 array written from the spec (zlib + struct), for the modes no library writes
    (16-bit grey + alpha). Colour types: 0 grey, 4 grey + alpha, 2 RGB, 6 RGBA."""
    a = a[:, :, None] if a.ndim == 2 else a
    h, w, c = a.shape
    bits = a.dtype.itemsize * 8
    raw = b"".join(b"\x00" + a[y].astype(">u2" if bits == 16 else np.uint8).tobytes() for y in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, bits, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _pillow(a: np.ndarray, fmt: str, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format=fmt, **save)
    return buf.getvalue()


def _tifffile(a: np.ndarray) -> bytes:
    c = 1 if a.ndim == 2 else a.shape[2]
    buf = io.BytesIO()
    tifffile.imwrite(buf, a, photometric="minisblack" if c <= 2 else "rgb", extrasamples=[2] if c in (2, 4) else None)
    return buf.getvalue()


def _writer(fmt: str, mode: str, bits: int):
    """How to write this combination as a file, or None where no writer / no decoder supports it."""
    if fmt == "PNG":
        if bits == 8:
            return lambda a: _pillow(a, "PNG")
        return png_by_hand  # OpenCV writes 16-bit L/RGB/RGBA too, but not LA
    if fmt == "TIFF-tifffile":
        return _tifffile
    if fmt == "TIFF-pillow" and (bits == 8 or mode == "L"):  # Pillow's only 16-bit mode is I;16 (grey)
        return lambda a: _pillow(a, "TIFF")
    if fmt == "JPEG" and bits == 8 and mode in ("L", "RGB"):
        return lambda a: _pillow(a, "JPEG", quality=95)
    if fmt == "WEBP" and bits == 8 and mode in ("RGB", "RGBA"):  # WebP has no grey modes
        return lambda a: _pillow(a, "WEBP", lossless=True, exact=True)
    if fmt == "BMP" and bits == 8 and mode in ("L", "RGB"):
        return lambda a: _pillow(a, "BMP")
    return None


CASES = [(fmt, mode, bits) for fmt in ("PNG", "TIFF-tifffile", "TIFF-pillow", "JPEG", "WEBP", "BMP")
         for mode in MODES for bits in (8, 16) if _writer(fmt, mode, bits)]
LOSSY = {"JPEG"}  # formats whose files do not hold exactly the pixels written
LOSSY_OUT = {"jpeg", "webp"}  # encode() writes these lossy


def _as_array(pic: images.Picture) -> np.ndarray:
    """The picture's samples back in the file's integer type: (H, W) or (H, W, C)."""
    scale = 65535.0 if pic.bits == 16 else 255.0
    px = (pic.pixels.permute(1, 2, 0).numpy() * scale).round().astype(np.uint16 if pic.bits == 16 else np.uint8)
    if pic.alpha is not None:
        px = np.concatenate([px, pic.alpha[:, :, None]], axis=2)
    return px[:, :, 0] if px.shape[2] == 1 else px


@pytest.mark.parametrize("fmt,mode,bits", CASES, ids=[f"{f}-{m}-{b}" for f, m, b in CASES])
def test_decode_reports_mode_and_depth_and_round_trips(fmt, mode, bits):
    a = _array(mode, bits)
    data = _writer(fmt, mode, bits)(a)
    pic = images.decode(data)
    assert (pic.mode, pic.bits, pic.size) == (mode, bits, (a.shape[1], a.shape[0]))
    assert pic.pixels.shape[0] == (1 if mode.startswith("L") else 3) and pic.pixels.dtype.is_floating_point
    if "A" in mode:
        assert pic.alpha.dtype == a.dtype and np.array_equal(pic.alpha, a[:, :, -1])  # alpha untouched
    else:
        assert pic.alpha is None
    if fmt not in LOSSY:
        assert np.array_equal(_as_array(pic), a)

    out_fmt = {"TIFF-tifffile": "tiff", "TIFF-pillow": "tiff", "BMP": "png"}.get(fmt, fmt.lower())
    again = images.decode(images.encode(pic, out_fmt))  # identity pixels: what the service does to alpha/mode
    assert (again.mode, again.bits, again.size) == (mode, bits, pic.size)
    if "A" in mode:
        assert again.alpha.dtype == a.dtype and np.array_equal(again.alpha, a[:, :, -1])
    if out_fmt in LOSSY_OUT:  # random pixels are the worst case for a lossy codec: compare the average colour
        seen = np.ones(a.shape[:2], bool) if pic.alpha is None else pic.alpha > 0  # WebP drops hidden colour
        assert np.allclose(again.pixels[:, seen].mean(1), pic.pixels[:, seen].mean(1), atol=3 / 255)
    else:
        assert np.array_equal(_as_array(again), _as_array(pic))


def test_16_bit_grey_alpha_png_is_written_as_grey_alpha_that_other_readers_agree_on():
    a = _array("LA", 16)
    out = images.encode(images.decode(png_by_hand(a)), "png")
    assert out[12:16] == b"IHDR" and (out[24], out[25]) == (16, 4)  # bit depth 16, colour type 4 (grey + alpha)
    bgra = cv2.imdecode(np.frombuffer(out, np.uint8), cv2.IMREAD_UNCHANGED)  # OpenCV widens LA to BGRA
    assert bgra.dtype == np.uint16
    assert all(np.array_equal(bgra[:, :, i], a[:, :, 0]) for i in range(3))
    assert np.array_equal(bgra[:, :, 3], a[:, :, 1])


def test_16_bit_grey_alpha_tiff_is_written_as_grey_alpha():
    a = _array("LA", 16)
    out = images.encode(images.decode(_tifffile(a)), "tiff")
    with tifffile.TiffFile(io.BytesIO(out)) as tif:
        page = tif.pages.first
        assert page.photometric == tifffile.PHOTOMETRIC.MINISBLACK and page.dtype == np.uint16
        assert np.array_equal(page.asarray(), a)
    assert images.probe(out) == ("TIFF", a.shape[1], a.shape[0])


def test_16_bit_grey_png_from_opencv_stays_grey():
    """OpenCV's own 16-bit grey PNG stays one channel."""
    a = _array("L", 16)
    ok, buf = cv2.imencode(".png", a)
    pic = images.decode(buf.tobytes())
    assert pic.mode == "L" and pic.bits == 16 and np.array_equal(_as_array(pic), a)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_an_unreadable_tiff_is_an_image_error():
    data = _tifffile(_array("LA", 16))
    with pytest.raises(images.ImageError):
        images.decode(data[:60])
    with pytest.raises(images.ImageError):
        images.probe(b"II*\0" + b"\xff" * 20)


def test_a_png_with_a_damaged_body_is_refused_not_read_as_blank():
    """Reading its metadata first once made Pillow swallow the broken stream and hand back zeros."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", b"not deflate data") + chunk(b"IEND", b""))
    with pytest.raises(images.ImageError, match="cannot decode"):
        images.decode(data)


def test_png_compression_trades_size_for_speed_and_keeps_every_pixel():
    rng = np.random.default_rng(0)
    smooth = np.repeat(np.linspace(0, 1, 96, dtype=np.float32)[None, :], 64, axis=0)
    pixels = torch.from_numpy(np.stack([smooth, smooth.T[:64, :64].repeat(2, 1)[:, :96], smooth * 0.5])
                              + rng.normal(0, 0.01, (3, 64, 96)).astype(np.float32)).clamp(0, 1)
    for bits in (8, 16):
        pic = images.Picture(pixels, None, bits, "png")
        fast, small = (images.encode(pic, "png", png_compression=level) for level in (1, 9))
        assert images.decode(fast).pixels.equal(images.decode(small).pixels)
        assert len(fast) >= len(small)
    for bad in (-1, 10, 2.5):
        with pytest.raises(ValueError, match="png_compression"):
            images.encode(images.Picture(pixels, None, 8, "png"), "png", png_compression=bad)


@pytest.mark.parametrize("quality", [10, 50, 75, 90, 95, 100])
def test_a_jpegs_quality_is_estimated_from_its_tables_and_kept_when_written_as_jpeg(quality):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(quality).integers(0, 256, (16, 24, 3), dtype=np.uint8)).save(
        buf, format="JPEG", quality=quality)
    pic = images.decode(buf.getvalue())
    assert pic.quality == quality
    assert images.decode(images.encode(pic, "jpeg")).quality == quality  # no quality given: the input's
    assert images.decode(images.encode(pic, "jpeg", 60)).quality == 60
    assert images.default_quality(pic, "webp") == images.DEFAULT_QUALITY == 95  # only a JPEG keeps a JPEG's
    assert images.jpeg_quality(None) is None and images.jpeg_quality({}) is None


def test_the_default_output_is_the_inputs_format_and_names_follow_the_input():
    assert [images.default_output_format(f) for f in ("JPEG", "TIFF", "PNG", "HEIF", "AVIF", "WEBP", "BMP", "DNG")] == \
        ["jpeg", "tiff", "png", "heic", "avif", "webp", "png", "tiff"]
    assert images.output_name("IMG_1000.JPG", "jpeg", "-denoised") == "IMG_1000-denoised.JPG"
    assert images.output_name("scan.tif", "tiff") == "scan.tif"
    assert images.output_name("IMG_1000.jpg", "png", "-d") == "IMG_1000-d.png"
    assert images.output_name("a/b\\c.heic", "heic") == "c.heic"
    assert images.output_name(None, "jpeg") == "denoised.jpeg"
