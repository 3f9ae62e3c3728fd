"""Camera RAW files (DNG, CR2/CR3, NEF, ARW, RAF, ORF, RW2, PEF, ...) through LibRaw (``rawpy``).

**Recognising one.** By content first (``identify``): RAF, ORF, RW2, CR3, CRW, MRW and X3F have magic
bytes of their own; CR2 is a TIFF with ``CR`` after its header; DNG is a TIFF whose first IFD holds
DNGVersion (tag 50706); NEF, ARW, PEF, SRW and the like are TIFFs with a colour-filter-array
(PhotometricInterpretation 32803) or linear-raw (34892) image in an IFD or SubIFD, named after the
camera's Make. This matters: Pillow opens most TIFF-based RAWs and would decode their small embedded
preview as if it were the photo. A file name whose extension says RAW (the CLI knows it) makes LibRaw
try bytes that are neither recognised nor another image format.

**Size first.** ``size`` opens the file with LibRaw, which parses its header but decodes nothing, so
that pixel limits are checked before the costly unpacking and demosaicing (``develop``).

**Developing.** LibRaw demosaics (AHD) to 16-bit *linear* RGB with the camera's as-shot white balance, in
the sRGB primaries, with no automatic brightening (``use_camera_wb=True, output_bps=16, gamma=(1, 1),
no_auto_bright=True``): the exposure is the photographer's, and highlights clip at the sensor's white level
(LibRaw's other defaults stay: e.g. when the brightest sample is above 75 % of the declared white level, it
becomes the white level).

**Then the sRGB curve, before denoising.** The shipped networks, ``blind`` included (the camera-noise
model: signal-dependent noise of variance a·x + b² per channel), were trained on sRGB-encoded photos,
with the noise added to the encoded values. A linear image is not what they have seen: mostly dark, most
of its tones squeezed into the lowest values, where its noise is far weaker than the levels they learned
(and would be left in place, to be amplified by any later gamma). So ``encode_srgb_`` applies the
sRGB transfer curve to the linear floats (no 8-bit step in between), the network denoises what it knows,
and the answer is that sRGB-encoded image at 16 bits, tagged with an sRGB ICC profile so that every viewer
shows it right (a linear TIFF without a linear profile looks far too dark in most of them).

**What is kept.** The camera's EXIF (camera, lens, exposure, dates, GPS, ...) where the file has it in a
TIFF structure (DNG, CR2, NEF, ARW, PEF, ORF, RW2, ...) or in its embedded JPEG preview (RAF); otherwise
(CR3) what LibRaw reports: exposure time, aperture, ISO, focal length, date, artist, lens. The RAW's own
layout and colour-calibration tags (DNG colour matrices, CFA pattern, black and white levels, maker
private data in IFD0) describe the sensor data, not the picture, and are not carried. Not applied: lens
corrections (distortion, vignetting, chromatic aberration: LibRaw does not do them, and the lens-correction
opcodes some DNGs carry are not applied either), the camera maker's picture style and tone curve, and DNG
crop (the full active area is kept).
"""

from __future__ import annotations

import io
import os
import struct
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from n2n_core.data.image_errors import ImageError, ImageTooLarge, UnsupportedImage

#: file extension -> format name, for the RAW formats LibRaw reads that cameras commonly write
SUFFIXES = {".dng": "DNG", ".cr2": "CR2", ".cr3": "CR3", ".crw": "CRW", ".nef": "NEF", ".nrw": "NRW",
            ".arw": "ARW", ".srf": "SRF", ".sr2": "SR2", ".raf": "RAF", ".orf": "ORF", ".rw2": "RW2",
            ".rwl": "RWL", ".pef": "PEF", ".srw": "SRW", ".3fr": "3FR", ".iiq": "IIQ", ".erf": "ERF",
            ".kdc": "KDC", ".dcr": "DCR", ".mos": "MOS", ".mrw": "MRW", ".x3f": "X3F"}
GENERIC = "RAW"  # a camera RAW of a maker not in MAKERS
FORMATS = frozenset(SUFFIXES.values()) | {GENERIC}
#: a TIFF-based RAW's format, from the first word of its camera's Make
MAKERS = {"NIKON": "NEF", "SONY": "ARW", "PENTAX": "PEF", "RICOH": "PEF", "SAMSUNG": "SRW", "CANON": "CR2",
          "OLYMPUS": "ORF", "OM": "ORF", "PANASONIC": "RW2", "LEICA": "RWL", "HASSELBLAD": "3FR", "KODAK": "DCR",
          "EPSON": "ERF", "MAMIYA": "MOS", "LEAF": "MOS", "PHASE": "IIQ", "FUJIFILM": "RAF", "MINOLTA": "MRW"}
#: the model a RAW is denoised with unless the user names one: trained for camera noise (see the README)
CAMERA_NOISE_MODEL = "blind"

TIFF_MAGIC = (b"II*\0", b"MM\0*")
TIFF_LIKE_MAGIC = {b"IIRO": "ORF", b"IIRS": "ORF", b"MMOR": "ORF", b"IIU\0": "RW2"}  # TIFF structure, own magic
OTHER_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8", b"GIF8", b"RIFF", b"BM")  # formats Pillow reads: never tried as RAW
DNG_VERSION, SUB_IFDS, PHOTOMETRIC, MAKE = 50706, 330, 262, 271
CFA, LINEAR_RAW = 32803, 34892  # PhotometricInterpretation of sensor data
MAX_IFDS = 64  # IFDs visited while identifying: cameras write a handful; a loop or a bomb stops here
MAX_ENTRIES = 1024

#: IFD0 tags carried from a RAW: the photo's description, never its layout or its sensor calibration
CAMERA_IFD0_TAGS = frozenset({270, 271, 272, 274, 282, 283, 296, 305, 306, 315, 33432, 0x8769, 0x8825})
EXPOSURE_TIME, F_NUMBER, ISO, DATE_ORIGINAL, FOCAL_LENGTH = 0x829A, 0x829D, 0x8827, 0x9003, 0x920A
LENS_MAKE, LENS_MODEL, ARTIST, EXIF_IFD = 0xA433, 0xA434, 0x013B, 0x8769
DEVELOP = {"use_camera_wb": True, "output_bps": 16, "gamma": (1, 1), "no_auto_bright": True}


@dataclass
class DevelopedRaw:
    """A demosaiced RAW: ``rgb`` (H, W, 3) uint16, linear, camera white balance, sRGB primaries, upright;
    ``exif`` the camera's EXIF (IFD0 reduced to CAMERA_IFD0_TAGS), or None."""

    rgb: np.ndarray
    exif: Image.Exif | None


# ----------------------------------------------------------------------------- recognising


def identify(data: bytes | BinaryIO, name: str | None = None) -> str | None:
    """The RAW format of the file (``DNG``, ``NEF``, ..., or ``RAW`` for an unknown maker), or None when it is
    not a camera RAW. Reads the header and, for a TIFF, its IFDs (a few hundred bytes), never the pixels.
    ``name``: the file's name, whose extension is trusted only for bytes no other rule recognises."""
    read_at = _reader(data)
    head = read_at(0, 16)
    if head.startswith(b"FUJIFILMCCD-RAW"):
        return "RAF"
    if head[:4] in TIFF_LIKE_MAGIC:
        return TIFF_LIKE_MAGIC[head[:4]]
    if head[4:12] == b"ftypcrx ":
        return "CR3"
    if head[6:14] == b"HEAPCCDR":
        return "CRW"
    if head[:4] == b"\0MRM":
        return "MRW"
    if head[:4] == b"FOVb":
        return "X3F"
    if head[:4] in TIFF_MAGIC:
        if head[8:10] == b"CR":
            return "CR2"
        found = _tiff_raw(read_at, head)
        if found:
            return found
    suffix = os.path.splitext(name or "")[1].lower()
    if suffix in SUFFIXES and not head.startswith(OTHER_IMAGE_MAGIC) and head[4:8] != b"ftyp":
        return SUFFIXES[suffix]
    return None


def _reader(data: bytes | BinaryIO) -> Callable[[int, int], bytes]:
    """read_at(offset, n): up to n bytes of ``data`` (bytes or a seekable file) from ``offset``."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data)
        return lambda at, n: bytes(view[at:at + n])

    def read_at(at: int, n: int) -> bytes:
        data.seek(at)
        return data.read(n)

    return read_at


def _tiff_raw(read_at: Callable[[int, int], bytes], head: bytes) -> str | None:
    """DNG when IFD0 holds DNGVersion; the maker's format when any IFD or SubIFD holds sensor data (CFA or
    linear raw); else None. Classic TIFF only (cameras write no BigTIFF); damaged IFDs end the walk."""
    if len(head) < 8:
        return None
    order = "<" if head[:2] == b"II" else ">"
    first = struct.unpack(order + "I", head[4:8])[0]
    todo, seen, sensor, make = [first], set(), False, ""
    while todo and len(seen) < MAX_IFDS:
        at = todo.pop(0)
        if at < 8 or at in seen:
            continue
        seen.add(at)
        raw_count = read_at(at, 2)
        if len(raw_count) < 2:
            continue
        count = struct.unpack(order + "H", raw_count)[0]
        if count > MAX_ENTRIES:
            continue
        entries = read_at(at + 2, 12 * count)
        for i in range(len(entries) // 12):
            tag, kind, n, value = struct.unpack(order + "HHI4s", entries[12 * i:12 * i + 12])
            if tag == DNG_VERSION and at == first:
                return "DNG"
            if tag == PHOTOMETRIC and n == 1:
                photometric = struct.unpack(order + ("H" if kind == 3 else "I"), value[:2 if kind == 3 else 4])[0]
                sensor = sensor or photometric in (CFA, LINEAR_RAW)
            elif tag == SUB_IFDS and kind in (4, 13):
                n = min(n, 16)
                where = value if n == 1 else read_at(struct.unpack(order + "I", value)[0], 4 * n)
                todo.extend(struct.unpack(f"{order}{len(where) // 4}I", where[:len(where) // 4 * 4]))
            elif tag == MAKE and kind == 2 and at == first:
                text = value[:n] if n <= 4 else read_at(struct.unpack(order + "I", value)[0], min(n, 64))
                make = text.split(b"\0")[0].decode("latin-1").strip()
        next_ifd = read_at(at + 2 + 12 * count, 4)
        if len(next_ifd) == 4:
            todo.append(struct.unpack(order + "I", next_ifd)[0])
    if not sensor:
        return None
    return MAKERS.get(make.split(" ")[0].upper(), GENERIC) if make else GENERIC


# ----------------------------------------------------------------------------- LibRaw


@contextmanager
def _opened(data: bytes | BinaryIO, fmt: str) -> Iterator[Any]:
    """A rawpy.RawPy with the file open (header parsed, nothing decoded); UnsupportedImage naming ``fmt``
    when LibRaw cannot read it. A file object with a real path is opened by path (no copy in memory)."""
    import rawpy

    raw = rawpy.RawPy()
    try:
        path = getattr(data, "name", None)
        if isinstance(path, str) and os.path.isfile(path):
            raw.open_file(path)
        elif isinstance(data, (bytes, bytearray, memoryview)):
            raw.open_buffer(io.BytesIO(data))
        else:
            data.seek(0)
            raw.open_buffer(data)
    except (rawpy.LibRawError, rawpy.NotSupportedError) as e:
        raw.close()
        raise UnsupportedImage(f"cannot read this {fmt} camera RAW file: LibRaw {_libraw_version()} does not "
                               f"support it ({_reason(e)})") from None
    try:
        yield raw
    finally:
        raw.close()


def _libraw_version() -> str:
    import rawpy

    return ".".join(map(str, rawpy.libraw_version))


def _reason(e: BaseException) -> str:
    """LibRaw's message (rawpy gives bytes), without a path: LibRaw messages never name one."""
    message = e.args[0] if e.args else type(e).__name__
    return (message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)).strip()


def _output_size(sizes: Any) -> tuple[int, int]:
    """(width, height) of the developed image: LibRaw stretches non-square pixels and turns the image
    upright (flip bit 4: a quarter turn)."""
    width, height = int(sizes.width), int(sizes.height)
    aspect = float(sizes.pixel_aspect or 1.0)
    if aspect > 1:
        width = round(width * aspect)
    elif aspect < 1:
        height = round(height / aspect)
    return (height, width) if int(sizes.flip) & 4 else (width, height)


def size(data: bytes | BinaryIO, fmt: str) -> tuple[int, int]:
    """(width, height) of the image ``develop`` would make, from the RAW's header: nothing is decoded.
    UnsupportedImage (naming ``fmt``) when LibRaw cannot read the file."""
    with _opened(data, fmt) as raw:
        return _output_size(raw.sizes)


def _check_pixels(sizes: Any) -> None:
    """ImageTooLarge, before any unpacking, beyond the limit at which Pillow refuses a decompression bomb."""
    limit = Image.MAX_IMAGE_PIXELS
    width, height = _output_size(sizes)
    pixels = max(width * height, int(sizes.raw_width) * int(sizes.raw_height))
    if limit is not None and pixels > 2 * limit:
        raise ImageTooLarge(f"image too large: the RAW holds {pixels} pixels, more than {2 * limit}")


def develop(data: bytes | BinaryIO, fmt: str) -> DevelopedRaw:
    """Demosaic the RAW (module docstring): linear 16-bit RGB with the camera's white balance, upright, and
    the camera's EXIF. The pixel count is checked on the header first. UnsupportedImage when LibRaw cannot
    read the file, ImageError when its data is damaged, ImageTooLarge beyond Pillow's bomb limit."""
    import rawpy

    with _opened(data, fmt) as raw:
        _check_pixels(raw.sizes)
        try:
            rgb = raw.postprocess(output_color=rawpy.ColorSpace.sRGB, **DEVELOP)
        except (rawpy.LibRawTooBigError, rawpy.LibRawUnsufficientMemoryError) as e:
            raise ImageTooLarge(f"image too large: LibRaw cannot develop this {fmt} file ({_reason(e)})") from None
        except (rawpy.LibRawError, rawpy.NotSupportedError) as e:
            raise ImageError(f"cannot decode this {fmt} camera RAW file, damaged or truncated? ({_reason(e)})") \
                from None
        exif = camera_exif(data, raw)
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint16:
        raise UnsupportedImage(f"this {fmt} file develops to {rgb.shape} {rgb.dtype} samples, not 16-bit RGB")
    return DevelopedRaw(rgb, exif)


# ----------------------------------------------------------------------------- metadata


def camera_exif(data: bytes | BinaryIO, raw: Any) -> Image.Exif | None:
    """The camera's EXIF: from the file's TIFF structure, else from its embedded JPEG preview, else the
    exposure LibRaw reports; IFD0 reduced to CAMERA_IFD0_TAGS. None when nothing is found. Never raises."""
    for source in (_tiff_exif, _preview_exif, _libraw_exif):
        try:
            exif = source(data, raw)
        except MemoryError:
            raise
        except Exception:  # noqa: BLE001 - damaged metadata never costs the photo
            exif = None
        if exif:
            for tag in [t for t in exif if t not in CAMERA_IFD0_TAGS]:
                del exif[tag]
            if len(exif):
                return exif
    return None


def _tiff_exif(data: bytes | BinaryIO, raw: Any) -> Image.Exif | None:
    """IFD0 of a TIFF-structured RAW (ORF and RW2 have their own magic: read as the TIFF they are)."""
    head = _reader(data)(0, 4)
    if head not in TIFF_MAGIC and head not in TIFF_LIKE_MAGIC:
        return None
    body = data if isinstance(data, (bytes, bytearray)) else _reader(data)(0, 1 << 62)
    if head in TIFF_LIKE_MAGIC:
        body = (b"II*\0" if head.startswith(b"II") else b"MM\0*") + bytes(body[4:])
    exif = Image.Exif()
    exif.load(bytes(body))
    return exif


def _preview_exif(data: bytes | BinaryIO, raw: Any) -> Image.Exif | None:
    """The EXIF of the JPEG preview LibRaw finds in the file (RAF keeps the camera's EXIF there)."""
    import rawpy

    thumb = raw.extract_thumb()
    if thumb.format != rawpy.ThumbFormat.JPEG:
        return None
    with Image.open(io.BytesIO(thumb.data)) as preview:
        return preview.getexif()


def _libraw_exif(data: bytes | BinaryIO, raw: Any) -> Image.Exif | None:
    """What LibRaw parsed itself: exposure, aperture, ISO, focal length, date, artist and lens."""
    other, lens = raw.other, raw.lens
    exif = Image.Exif()
    inner: dict[int, Any] = {}
    if other.shutter_speed and other.shutter_speed > 0:
        inner[EXPOSURE_TIME] = float(other.shutter_speed)
    if other.aperture and other.aperture > 0:
        inner[F_NUMBER] = float(other.aperture)
    if other.iso_speed and other.iso_speed > 0:
        inner[ISO] = int(other.iso_speed)
    if other.focal_length and other.focal_length > 0:
        inner[FOCAL_LENGTH] = float(other.focal_length)
    if other.timestamp is not None and other.timestamp.timestamp() > 0:
        inner[DATE_ORIGINAL] = other.timestamp.strftime("%Y:%m:%d %H:%M:%S")
    if lens.make:
        inner[LENS_MAKE] = str(lens.make)
    if lens.model:
        inner[LENS_MODEL] = str(lens.model)
    if other.artist:
        exif[ARTIST] = str(other.artist)
    if inner:
        exif.get_ifd(EXIF_IFD).update(inner)
    return exif if len(exif) or inner else None


@cache
def srgb_profile() -> bytes:
    """An sRGB ICC profile (littlecms's, through Pillow): what a developed RAW's pixels are encoded in."""
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


# ----------------------------------------------------------------------------- tone

SRGB_ROWS = 64  # rows encoded at a time: no full-size temporaries


def encode_srgb_(pixels: Tensor) -> Tensor:
    """Apply the sRGB transfer curve, in place, to linear floats (C, H, W) in [0, 1]: 12.92·x up to 0.0031308,
    1.055·x^(1/2.4) − 0.055 above (IEC 61966-2-1). Returns ``pixels``."""
    for top in range(0, pixels.shape[1], SRGB_ROWS):
        block = pixels[:, top:top + SRGB_ROWS]
        dark = block <= 0.0031308
        curved = block.clamp(min=0.0031308).pow_(1 / 2.4).mul_(1.055).sub_(0.055)
        block.copy_(torch.where(dark, block * 12.92, curved))
    return pixels


# ----------------------------------------------------------------------------- LibRaw's own messages


@contextmanager
def quiet_libraw() -> Iterator[None]:
    """LibRaw prints data errors ("unknown file: Unexpected end of file") straight to the process's stderr
    (file descriptor 2), where Python cannot catch them. For single-threaded callers that own stderr, such
    as the CLI, whose errors must stay one line each: descriptor 2 goes to /dev/null inside the block.
    Not for a server: other threads' messages would be lost meanwhile."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
