"""Image files <-> float pixels, keeping what users care about: size, mode, alpha and bit depth.

``decode`` reads PNG/JPEG/TIFF/WebP/BMP, HEIC/HEIF and AVIF bytes (EXIF orientation applied) and camera
RAW files (``n2n_core.data.raw``: developed to 16-bit sRGB-encoded RGB) into a ``Picture``; ``encode`` writes
PNG, JPEG, WebP, TIFF, HEIC or AVIF. A file of several frames (animated PNG/WebP/GIF, multi-page TIFF) is
refused with the number of frames (``n2n_core.data.frames``), never cut to its first. HEIC goes through
pillow-heif (``n2n_core.data.heif``: 10 and 12-bit files are read as 16-bit, and a 16-bit picture is written as
a 10-bit HEIC), AVIF through Pillow itself (8 bits). 16-bit PNG/TIFF keep 16 bits (OpenCV decodes them;
Pillow would drop to 8 bits for RGB). Grey stays grey, grey + alpha stays grey + alpha (also at 16 bits, which
neither OpenCV nor Pillow can write: such PNGs are written here). Every TIFF is written with tifffile
(zlib-compressed, any mode at 8 or 16 bits), which also reads the TIFFs Pillow cannot open. The alpha
channel is carried through untouched. ``encode(..., bits=16)`` asks for 16 bits from any input (PNG or TIFF).

The photo's EXIF block (camera, lens, exposure, dates, GPS, ...; Orientation reset to 1 since the pixels
are turned upright) and its ICC colour profile are kept on the ``Picture`` and written back to PNG, JPEG,
WebP, TIFF, HEIC and AVIF (``n2n_core.data.metadata``). ``encode(..., strip_metadata=True)`` leaves the EXIF out, GPS
included, but keeps the ICC profile: it holds no private data, and without it the colours would change.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from n2n_core.data import frames
from n2n_core.data import heif
from n2n_core.data import metadata
from n2n_core.data import raw
from n2n_core.data.image_errors import ImageError, ImageTooLarge, MultiFrameImage, UnsupportedImage  # noqa: F401 - re-exported

FORMATS = {"PNG", "JPEG", "TIFF", "WEBP", "BMP", "HEIF", "AVIF"}  # read by Pillow (HEIF: its pillow-heif opener)
RAW_FORMATS = raw.FORMATS  # camera RAW, read by LibRaw
OUTPUT_FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP", "tiff": "TIFF", "tif": "TIFF",
                  "heic": "HEIF", "heif": "HEIF", "avif": "AVIF"}
OUTPUT_NAMES = {"HEIF": "heic"}  # what users call the formats whose Pillow name differs
MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "TIFF": "image/tiff",
               "HEIF": "image/heic", "AVIF": "image/avif"}
#: the encoders' largest width or height (HEIC: a grid of 512-px tiles; AVIF: what libavif reads back)
MAX_SIDE = {"WEBP": 16383, "JPEG": 65500, "HEIF": 65535, "AVIF": 32768}
DEEP_FORMATS = {"PNG", "TIFF"}  # the output formats that hold 16 bits a sample
TEN_BIT_FORMATS = {"HEIF"}  # hold a 16-bit picture at 10 bits a sample when no depth is asked for
LOSSY_FORMATS = {"JPEG", "WEBP", "HEIF", "AVIF"}  # take a quality
DEFAULT_PNG_COMPRESSION = 6
#: file extensions of the photos ``read`` takes: what Pillow reads, HEIC/HEIF/AVIF and camera RAW
PHOTO_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".heic", ".heif", ".hif",
                            ".avif", *raw.SUFFIXES})


#: the output format when none is asked for: the input's own (a photographer's JPEG stays JPEG), a camera RAW
#: a 16-bit TIFF, a BMP (or anything else) a PNG
SAME_FORMAT_OUTPUT = {"JPEG": "jpeg", "TIFF": "tiff", "PNG": "png", "HEIF": "heic", "AVIF": "avif", "WEBP": "webp"}
DEFAULT_QUALITY = 95  # the quality of a lossy output when none is asked for and the input's is unknown
#: libjpeg's base quantisation tables (Annex K of the JPEG standard), natural order: luminance, chrominance
_JPEG_BASE_TABLES = (
    (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
     14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99),
    (17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
     47, 66, 99, 99, 99, 99, 99, 99, *([99] * 32)),
)


def default_output_format(input_format: str) -> str:
    """The output format when none is asked for: the input's own (JPEG in, JPEG out; TIFF, PNG, HEIC,
    AVIF and WebP likewise), ``tiff`` (16 bits) for a camera RAW, ``png`` for anything else (BMP)."""
    fmt = input_format.upper()
    return "tiff" if fmt in RAW_FORMATS else SAME_FORMAT_OUTPUT.get(fmt, "png")


def _jpeg_table(base: tuple[int, ...], quality: int) -> np.ndarray:
    """libjpeg's table for ``quality`` (jpeg_quality_scaling, baseline: entries 1..255)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((np.asarray(base) * scale + 50) // 100, 1, 255)


def jpeg_quality(quantization: dict[int, Any] | None) -> int | None:
    """The quality (1..100) whose libjpeg tables are nearest the file's (Pillow's ``im.quantization``, natural
    order), the one most cameras and editors use; None without tables. An estimate: an encoder with its own
    tables gets the nearest standard quality."""
    if not quantization or 0 not in quantization or len(quantization[0]) != 64:
        return None
    tables = [np.asarray(quantization[i], dtype=np.int64) for i in (0, 1) if i in quantization
              and len(quantization[i]) == 64]

    def error(quality: int) -> int:
        return sum(int(np.abs(t - _jpeg_table(base, quality)).sum()) for t, base in zip(tables, _JPEG_BASE_TABLES))

    return min(range(100, 0, -1), key=error)  # ties: the higher quality


def default_quality(pic: Picture, fmt: str) -> int:
    """The quality of ``pic`` written as ``fmt`` when none is asked for: a JPEG written from a JPEG keeps the
    quality estimated from the input's tables (``Picture.quality``), anything else ``DEFAULT_QUALITY``."""
    same = OUTPUT_FORMATS.get(fmt.lower(), fmt.upper()) == "JPEG" and pic.format.upper() == "JPEG"
    return pic.quality if same and pic.quality is not None else DEFAULT_QUALITY


def output_name(input_name: str | None, fmt: str, suffix: str = "") -> str:
    """The file name of ``input_name`` denoised into ``fmt``: its stem + ``suffix``, with the input's own
    extension when it names ``fmt`` (``IMG_1000.JPG`` -> ``IMG_1000-denoised.JPG``), else ``fmt``'s
    (``.jpeg``, ``.png``, ...). Only the last component of the name is used; None gives ``denoised.<fmt>``."""
    if not input_name:
        return f"denoised.{fmt}"
    path = Path(str(input_name).replace("\\", "/").split("/")[-1])
    own = path.suffix.lstrip(".")
    same = own and OUTPUT_FORMATS.get(own.lower()) == OUTPUT_FORMATS.get(fmt.lower(), fmt.upper())
    return f"{path.stem if own else path.name}{suffix}.{own if same else fmt}"


@dataclass
class Picture:
    """pixels: float32 (C, H, W) in [0, 1], C = 1 (grey) or 3 (RGB); alpha: (H, W) in the file's dtype.

    exif: the EXIF block as a TIFF structure (the body of a PNG eXIf chunk), fitted to the upright pixels;
    icc_profile: the ICC profile's bytes; None when the file had none (``n2n_core.data.metadata``);
    quality: a JPEG's quality as estimated from its quantisation tables, None for other formats."""

    pixels: Tensor
    alpha: np.ndarray | None
    bits: int  # 8 or 16
    format: str
    exif: bytes | None = None
    icc_profile: bytes | None = None
    quality: int | None = None  # a JPEG's quality, estimated from its quantisation tables (``jpeg_quality``)

    @property
    def mode(self) -> str:
        base = "L" if self.pixels.shape[0] == 1 else "RGB"
        return base + ("A" if self.alpha is not None else "")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.pixels.shape[2], self.pixels.shape[1]

    def with_pixels(self, pixels: Tensor) -> Picture:
        return replace(self, pixels=pixels)


TIFF_MAGIC = (b"II*\0", b"MM\0*")


def _tiff_page(data: bytes | BinaryIO):
    """Context manager giving the first page of a TIFF that Pillow cannot open, read with tifffile."""
    import tifffile

    if isinstance(data, (bytes, bytearray, memoryview)):
        data = io.BytesIO(data)
    data.seek(0)
    return tifffile.TiffFile(data, name="image.tif")  # a name for files that have none (a spooled upload)


def _magic(data: bytes | BinaryIO) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data[:4])
    data.seek(0)
    return data.read(4)


def probe(data: bytes | BinaryIO, name: str | None = None) -> tuple[str, int, int]:
    """(format, width, height) from the header alone, without decoding pixels.

    ``data``: the file's bytes, or a seekable binary file (only its header is read; a camera RAW is opened
    by LibRaw, which parses its header). ``name``: the file's name, if known: an extension naming a camera
    RAW makes LibRaw try bytes nothing else recognises. The format is Pillow's name (``PNG``, ``JPEG``,
    ``TIFF``, ``WEBP``, ``BMP``, ``HEIF``, ``AVIF``) or the RAW's (``DNG``, ``NEF``, ...; ``RAW_FORMATS``),
    and the size that of the decoded, upright image.
    Raises ImageError (unreadable), UnsupportedImage (a format not read, e.g. a RAW LibRaw cannot open),
    MultiFrameImage (several frames) or ImageTooLarge (a decompression bomb).
    """
    camera = raw.identify(data, name)
    if camera is not None:
        width, height = raw.size(data, camera)
        return camera, width, height
    if isinstance(data, (bytes, bytearray, memoryview)):
        source: BinaryIO = io.BytesIO(data)
    else:
        source = data
        source.seek(0)
    try:
        with Image.open(source) as im:
            fmt, (w, h) = im.format, im.size
            fmt = "JPEG" if fmt == "MPO" else fmt  # camera JPEGs with embedded previews
            frames.check_single(frames.pillow_frames(im), fmt)
    except UnidentifiedImageError:
        if _magic(data) in TIFF_MAGIC:  # e.g. 16-bit grey + alpha, which Pillow has no mode for
            try:
                with _tiff_page(data) as tif:
                    page = tif.pages.first
                    count = frames.tifffile_frames(tif)
                    fmt, w, h = "TIFF", int(page.imagewidth), int(page.imagelength)
            except MemoryError:
                raise
            except Exception as e:  # noqa: BLE001 - a damaged TIFF is a bad image
                raise ImageError(f"not a readable TIFF image: {e}") from None
            frames.check_single(count, fmt)
            return fmt, w, h
        raise ImageError("not a readable image: expected PNG, JPEG, TIFF, WebP, BMP, HEIC, AVIF or camera RAW "
                         "bytes") from None
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"image too large: {e}") from None
    except ImageError:
        raise
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder failure on untrusted bytes is a bad image
        raise ImageError(f"not a readable image: {e}") from None
    if fmt not in FORMATS:
        raise UnsupportedImage(f"unsupported image format {fmt}; use PNG, JPEG, TIFF, WebP, BMP, HEIC, AVIF or "
                               "camera RAW")
    return fmt, w, h


def _pillow_opens(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)):
            return True
    except UnidentifiedImageError:
        return False


def _is_16bit(data: bytes, fmt: str, im: Image.Image) -> bool:
    if fmt == "PNG" and len(data) > 24:
        return data[24] == 16  # IHDR bit depth
    if fmt == "HEIF":
        return heif.bit_depth(im.info) > 8 or im.mode.startswith("I;16")
    if fmt == "TIFF":
        bits = getattr(im, "tag_v2", {}).get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        return max(bits) == 16 or im.mode.startswith("I;16")
    return im.mode.startswith("I;16")


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to an (H, W[, C]) array."""
    ops = {2: lambda x: x[:, ::-1], 3: lambda x: x[::-1, ::-1], 4: lambda x: x[::-1],
           5: lambda x: np.swapaxes(x, 0, 1), 6: lambda x: np.rot90(x, -1), 7: lambda x: np.rot90(x, -1)[::-1],
           8: lambda x: np.rot90(x, 1)}
    return np.ascontiguousarray(ops[orientation](a)) if orientation in ops else a


#: rows converted at a time between integer arrays and float tensors: a 24 MP photo needs no
#: full-size float temporaries, only the result (about 4 MB of floats per block of a 6000-wide photo)
CONVERSION_ROWS = 64


def to_unit_floats(a: np.ndarray, scale: float) -> Tensor:
    """(H, W, C) integers -> float32 (C, H, W) tensor a / scale, converted a block of rows at a time."""
    h, w, c = a.shape
    out = torch.empty((c, h, w), dtype=torch.float32)
    for top in range(0, h, CONVERSION_ROWS):
        block = torch.from_numpy(np.ascontiguousarray(a[top : top + CONVERSION_ROWS]))
        out[:, top : top + block.shape[0]] = block.permute(2, 0, 1).to(torch.float32).div_(scale)
    return out


def to_integers(pixels: Tensor, scale: float, dtype: type) -> np.ndarray:
    """float (C, H, W) in [0, 1] -> (H, W, C) array round(clamp(x, 0, 1) * scale) of ``dtype``, a block
    of rows at a time."""
    c, h, w = pixels.shape
    out = np.empty((h, w, c), dtype=dtype)
    for top in range(0, h, CONVERSION_ROWS):
        block = pixels[:, top : top + CONVERSION_ROWS].clamp(0, 1).mul_(scale).round_()
        out[top : top + block.shape[1]] = block.permute(1, 2, 0).cpu().numpy()
    return out


def _from_array(a: np.ndarray, bits: int, fmt: str) -> Picture:
    """(H, W), (H, W, 2|3|4) integer array -> Picture."""
    scale = 65535.0 if bits == 16 else 255.0
    if a.ndim == 2:
        a = a[:, :, None]
    alpha = None
    if a.shape[2] in (2, 4):
        alpha, a = a[:, :, -1].copy(), a[:, :, :-1]
    return Picture(to_unit_floats(a, scale), alpha, bits, fmt)


def _png_is_grey(data: bytes) -> bool:
    """The PNG's IHDR colour type is grey (0) or grey + alpha (4)."""
    return len(data) > 25 and data[12:16] == b"IHDR" and data[25] in (0, 4)


def _decode_16bit(data: bytes, fmt: str, orientation: int) -> Picture:
    import cv2

    a = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if a is None:
        raise ImageError(f"cannot decode this 16-bit {fmt} image")
    if a.ndim == 3 and fmt == "PNG" and _png_is_grey(data) and a.shape[2] in (3, 4):
        # OpenCV widens grey + alpha (or grey with a tRNS colour) to BGRA with B = G = R: keep it grey
        a = a[:, :, [0, 3]] if a.shape[2] == 4 else a[:, :, 0]
    elif a.ndim == 3:  # OpenCV gives BGR(A)
        a = a[:, :, [2, 1, 0, 3][: a.shape[2]]] if a.shape[2] in (3, 4) else a
    if a.dtype != np.uint16:
        return _from_array(_orient(a, orientation), 8, fmt)
    return _from_array(_orient(a, orientation), 16, fmt)


def _decode_tifffile(data: bytes) -> Picture:
    """A TIFF that Pillow cannot open (16-bit grey + alpha): first page, 8 or 16 bits, 1 to 4 samples."""
    import tifffile

    with _tiff_page(data) as tif:
        page = tif.pages.first
        photometric = int(page.photometric)
        if photometric not in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB):
            raise ImageError(f"unsupported TIFF photometric interpretation {page.photometric.name}")
        if page.dtype not in (np.uint8, np.uint16):
            raise ImageError(f"unsupported TIFF sample type {page.dtype}; use 8 or 16-bit integers")
        orientation = page.tags[274].value if 274 in page.tags else 1
        a = page.asarray()
        if a.ndim == 3 and page.planarconfig == tifffile.PLANARCONFIG.SEPARATE:
            a = np.moveaxis(a, 0, -1)
    if a.ndim != 2 and not (a.ndim == 3 and a.shape[2] in (1, 2, 3, 4)):
        raise ImageError(f"unsupported TIFF layout {a.shape}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    return _from_array(_orient(np.ascontiguousarray(a), int(orientation)), 16 if a.dtype == np.uint16 else 8, "TIFF")


def decode(data: bytes, name: str | None = None) -> Picture:
    """Image bytes -> Picture, with the file's EXIF and ICC profile. ``name``: the file's name, if known
    (``probe``). Raises ImageError (or one of its kinds: ``probe``) for anything unreadable or unsupported."""
    camera = raw.identify(data, name)
    if camera is not None:
        return _decode_raw(data, camera)
    fmt, _, _ = probe(data)
    try:
        if fmt == "TIFF" and data[:4] in TIFF_MAGIC and not _pillow_opens(data):
            return _with_metadata(_decode_tifffile(data), *metadata.read(None, data, fmt))
        with Image.open(io.BytesIO(data)) as im:
            pic = _decode_opened(im, data, fmt)  # first: a damaged file must fail here, not be read as blank
            if fmt == "JPEG":
                pic = replace(pic, quality=jpeg_quality(getattr(im, "quantization", None)))
            return _with_metadata(pic, *metadata.read(im, data, fmt))  # ``im`` itself is never turned
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"image too large: {e}") from None
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - malformed tags, truncated data, codec errors: all bad input
        raise ImageError(f"cannot decode this {fmt} image: {e}") from None


def _decode_raw(data: bytes, fmt: str) -> Picture:
    """A camera RAW developed by LibRaw (``n2n_core.data.raw``), linear 16-bit, then sRGB-encoded in floats:
    16 bits, the camera's EXIF, an sRGB ICC profile."""
    developed = raw.develop(data, fmt)
    exif = developed.exif
    pixels = raw.encode_srgb_(to_unit_floats(developed.rgb, 65535.0))
    del developed  # its 16-bit samples are not held while the floats live
    height, width = pixels.shape[1:]
    return Picture(pixels, None, 16, fmt, exif=metadata.normalised_exif(exif, (width, height)),
                   icc_profile=raw.srgb_profile())


def _with_metadata(pic: Picture, exif: Image.Exif | None, icc: bytes | None) -> Picture:
    """``pic`` with its file's EXIF fitted to its upright pixels, and the ICC profile if it fits its channels."""
    return replace(pic, exif=metadata.normalised_exif(exif, pic.size),
                   icc_profile=metadata.icc_for(icc, pic.pixels.shape[0]))


def _decode_opened(im: Image.Image, data: bytes, fmt: str) -> Picture:
    """The pixels of an image Pillow has opened (16-bit ones through OpenCV), upright."""
    orientation = im.getexif().get(274, 1) if hasattr(im, "getexif") else 1
    if _is_16bit(data, fmt, im):
        if fmt == "HEIF":  # libheif turns the pixels upright itself
            a = heif.decode_deep(data)
            return _from_array(a, 16 if a.dtype == np.uint16 else 8, fmt)
        return _decode_16bit(data, fmt, orientation)
    im = ImageOps.exif_transpose(im)
    if im.mode in ("1", "L", "P", "PA", "LA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "F", "La", "RGBa"):
        has_alpha = im.mode in ("LA", "La", "PA", "RGBA", "RGBa") or (
            im.mode == "P" and "transparency" in im.info)
        grey = im.mode in ("1", "L", "LA", "La", "I", "F")
        target = ("LA" if has_alpha else "L") if grey else ("RGBA" if has_alpha else "RGB")
        if im.mode in ("I", "F"):
            arr = np.clip(np.asarray(im, dtype=np.float64), 0, 255).astype(np.uint8)
            return _from_array(arr, 8, fmt)
        return _from_array(np.array(im.convert(target)), 8, fmt)
    return _from_array(np.array(im.convert("RGB")), 8, fmt)


def encode(pic: Picture, fmt: str = "png", quality: int | None = None, *, bits: int | None = None,
           strip_metadata: bool = False, png_compression: int = DEFAULT_PNG_COMPRESSION) -> bytes:
    """Picture -> bytes of ``fmt``: png, jpeg (jpg), webp, tiff (tif), heic (heif) or avif. JPEG drops alpha;
    HEIC writes grey + alpha as RGBA.

    quality: JPEG, WebP, HEIC and AVIF quality, 1..100; None (default): the input's when a JPEG is written
    from a JPEG whose quality is known, else 95 (``default_quality``); ignored by the lossless formats.
    bits: samples of 8 or 16 bits; None (default) keeps the picture's depth where the format holds it, so a
    16-bit input stays 16-bit as PNG or TIFF, is written at 10 bits as HEIC, and everything else is 8-bit.
    ``bits=16`` asks for 16 bits from any input (PNG or TIFF only): the denoised pixels are finer than the
    input's 256 levels.
    png_compression: zlib level of a PNG, 0..9: 6 (default) gives small files; 1 or 2 encode a denoised
    photo about 4x faster for files about a fifth larger (what a service answering many requests wants).
    strip_metadata: leave out the EXIF block (camera, dates, GPS, ...); the ICC profile is always written,
    as it holds no private data and without it the colours would change.
    Raises ValueError for parameters out of range, ImageError for what the format cannot hold.
    """
    fmt = OUTPUT_FORMATS.get(fmt.lower(), fmt.upper())
    if fmt not in MEDIA_TYPES:
        raise ImageError(f"unsupported output format {fmt!r}; use png, jpeg, webp, tiff, heic or avif")
    quality = default_quality(pic, fmt) if quality is None else check_quality(quality)
    if not (isinstance(png_compression, int) and 0 <= png_compression <= 9):
        raise ValueError(f"png_compression must be an integer from 0 to 9, got {png_compression!r}")
    keep16 = output_bits(pic.bits, fmt, bits) == 16
    scale = 65535.0 if keep16 else 255.0
    dtype = np.uint16 if keep16 else np.uint8
    px = to_integers(pic.pixels, scale, dtype)
    alpha = pic.alpha
    if alpha is not None:
        if alpha.dtype != dtype:  # 16-bit alpha written to an 8-bit format, or the reverse
            alpha = (alpha.astype(np.float64) * (scale / (65535.0 if alpha.dtype == np.uint16 else 255.0))).round()
        px = np.concatenate([px, alpha.astype(dtype)[:, :, None]], axis=2)
    if fmt == "JPEG" and alpha is not None:
        px = px[:, :, :-1]
    if px.shape[2] == 1:
        px = px[:, :, 0]
    limit = MAX_SIDE.get(fmt)
    if limit is not None and max(px.shape[:2]) > limit:
        raise ImageError(f"{fmt} cannot hold an image of {px.shape[1]}x{px.shape[0]} pixels (at most {limit} "
                         "per side); ask for png")
    exif = None if strip_metadata else pic.exif
    try:
        if fmt == "TIFF":
            return metadata.tiff_with_exif(_tiff(px, pic.icc_profile), exif)
        if fmt == "HEIF":
            return heif.encode(px, quality, exif, pic.icc_profile)
        if keep16:
            return metadata.png_with_metadata(_png16_any(px, png_compression), exif, pic.icc_profile)
        out = io.BytesIO()
        kwargs: dict[str, Any] = ({"quality": quality} if fmt in LOSSY_FORMATS
                                  else {"compress_level": png_compression} if fmt == "PNG" else {})
        Image.fromarray(px).save(out, format=fmt, **kwargs, **metadata.pillow_options(fmt, exif, pic.icc_profile))
        return out.getvalue()
    except ImageError:
        raise
    except (OSError, ValueError, RuntimeError, struct.error) as e:  # RuntimeError: libheif's and libavif's
        raise ImageError(f"cannot encode the result as {fmt}: {e}") from None


def check_quality(quality: int) -> int:
    """``quality`` when it is an integer in 1..100, else ValueError naming it."""
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be an integer from 1 to 100, got {quality!r}")
    return int(quality)


def output_bits(input_bits: int, fmt: str, bits: int | None = None) -> int:
    """The sample depth ``encode`` works in: ``bits`` when given (8, or 16 for PNG/TIFF), else 16 for a 16-bit
    picture written as PNG, TIFF or HEIC (which stores 10 of them) and 8 otherwise. ValueError for any
    other ``bits``."""
    fmt = OUTPUT_FORMATS.get(fmt.lower(), fmt.upper())
    if bits is None:
        return 16 if input_bits == 16 and (fmt in DEEP_FORMATS or fmt in TEN_BIT_FORMATS) else 8
    if bits not in (8, 16) or isinstance(bits, bool):
        raise ValueError(f"bits must be 8 or 16, got {bits!r}")
    if bits == 16 and fmt not in DEEP_FORMATS:
        holds = ("at most 10 bits a sample (a 10-bit input stays 10-bit)" if fmt in TEN_BIT_FORMATS
                 else "8 bits a sample")
        raise ValueError(f"bits=16 needs png or tiff output; {OUTPUT_NAMES.get(fmt, fmt.lower())} holds {holds}")
    return bits


def _png16_any(px: np.ndarray, level: int = 6) -> bytes:
    """A 16-bit PNG of (H, W) or (H, W, 2..4) uint16 samples: OpenCV's, or ours for grey + alpha."""
    import cv2

    if px.ndim == 3 and px.shape[2] == 2:  # grey + alpha: neither OpenCV nor Pillow writes it
        return _png16(px, level)
    ok, buf = cv2.imencode(".png", px if px.ndim == 2 else px[:, :, [2, 1, 0, 3][: px.shape[2]]],
                           [cv2.IMWRITE_PNG_COMPRESSION, level])
    if not ok:
        raise ImageError("cannot encode this 16-bit image")
    return buf.tobytes()


def _png16(a: np.ndarray, level: int = 6) -> bytes:
    """A 16-bit PNG of a uint16 (H, W) or (H, W, 1..4) array: grey, grey + alpha, RGB, RGBA."""
    if a.ndim == 2:
        a = a[:, :, None]
    h, w, c = a.shape
    rows = np.zeros((h, 1 + w * c * 2), np.uint8)  # each row: filter type 0 (none), then big-endian samples
    rows[:, 1:] = np.ascontiguousarray(a, dtype=">u2").view(np.uint8).reshape(h, -1)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), level)) + chunk(b"IEND", b""))


def _tiff(a: np.ndarray, icc_profile: bytes | None = None) -> bytes:
    """A zlib-compressed TIFF of uint8 or uint16 samples, (H, W) or (H, W, 2..4): grey, grey + alpha, RGB,
    RGBA (alpha unassociated), with the ICC profile when given. tifffile writes every mode at both depths."""
    import tifffile

    channels = 1 if a.ndim == 2 else a.shape[2]
    out = io.BytesIO()
    tifffile.imwrite(out, a, photometric="minisblack" if channels <= 2 else "rgb",
                     extrasamples=[2] if channels in (2, 4) else None,  # 2: unassociated alpha
                     compression="zlib", iccprofile=icc_profile, metadata=None, software=False, byteorder="<")
    return out.getvalue()


def read(path: str | Path) -> Picture:
    """The photo at ``path`` (``decode``; its extension may tell a camera RAW); ImageError when missing."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"no such file: {path}")
    return decode(path.read_bytes(), name=path.name)


def write(path: str | Path, pic: Picture, quality: int | None = None, *, bits: int | None = None,
          strip_metadata: bool = False) -> Path:
    """Encode ``pic`` in the format its suffix names (``encode``, same options) and write it atomically."""
    from n2n_core.nn.atomic import atomic_write_bytes

    path = Path(path)
    data = encode(pic, path.suffix.lstrip(".") or "png", quality, bits=bits, strip_metadata=strip_metadata)
    return atomic_write_bytes(path, data)


def to_rgb(pixels: Tensor) -> Tensor:
    """(1|3, H, W) -> (3, H, W): grey images go through an RGB model channel-replicated."""
    return pixels.expand(3, -1, -1) if pixels.shape[0] == 1 else pixels


def from_rgb(rgb: Tensor, channels: int) -> Tensor:
    """Back to the picture's channel count (grey = mean of the three outputs)."""
    return rgb.mean(0, keepdim=True) if channels == 1 else rgb
