"""Photo metadata that a denoised copy keeps: the EXIF block and the ICC colour profile.

Formats, as ``Picture.exif`` and ``Picture.icc_profile`` hold them:

- ``exif``: the EXIF block as a TIFF structure (byte-order mark, IFD0 and its Exif, Interop and GPS
  sub-IFDs), exactly the body of a PNG ``eXIf`` or WebP ``EXIF`` chunk; a JPEG's APP1 segment puts
  ``Exif\\0\\0`` before it (``read_exif`` accepts either). Camera, lens, exposure, dates, GPS, artist,
  copyright and the like all live there.
- ``icc_profile``: the ICC profile's bytes, as embedded (JPEG APP2, PNG ``iCCP``, WebP ``ICCP``, TIFF tag
  34675).

``read`` takes them from an opened image and ``normalised_exif`` fits the EXIF to the decoded pixels:
Orientation is 1 (decoding turns the pixels upright), PixelXDimension/PixelYDimension are the decoded
size, and the tags that describe a file's layout (strips, tiles, compression, bit depth, a TIFF writer's
own ImageDescription, ...) rather than the photo are dropped, as are the thumbnail (IFD1, stale once
denoised) and the XMP, IPTC and Photoshop blocks (not carried). A profile whose colour space is not that of the decoded channels (the CMYK profile
of a photo decoded to RGB) is dropped. Unreadable metadata is dropped, never an error.

Writing: Pillow writes both for JPEG, PNG and WebP (``pillow_options``); ``png_with_metadata`` adds them
to a PNG written by another encoder (16 bits); ``tiff_with_exif`` adds the EXIF to a TIFF (its writer
stores the profile itself, tag 34675).
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

from PIL import Image

ORIENTATION = 0x0112
EXIF_IFD, GPS_IFD, INTEROP_IFD = 0x8769, 0x8825, 0xA005
PIXEL_X, PIXEL_Y = 0xA002, 0xA003  # in the Exif IFD: the image's width and height
MAKER_NOTE = 0x927C
X_RESOLUTION, Y_RESOLUTION, RESOLUTION_UNIT = 282, 283, 296
ICC_TAG = 34675  # a TIFF's InterColorProfile
JPEG_MAX_EXIF = 65533  # an APP1 segment's payload: "Exif\0\0" and the block

# IFD0 tags that describe how a file stores its pixels, or that hold other metadata blocks: never part of
# the EXIF that is carried (a TIFF's IFD0 is its EXIF IFD0 too, so these are found there).
LAYOUT_TAGS = frozenset({
    254, 255, 256, 257, 258, 259, 262, 263, 264, 265, 266, 273, 277, 278, 279, 280, 281, 284, 290, 291,
    292, 293, 317, 320, 322, 323, 324, 325, 330, 332, 334, 338, 339, 340, 341, 343, 347, 512, 513, 514,
    515, 517, 518, 519, 520, 521, 529, 530, 531, 532, 700, 32995, 32996, 32997, 32998, 33723, 34377,
    ICC_TAG, 37724, 50838, 50839,
})
COLOUR_SPACES = {1: b"GRAY", 3: b"RGB "}  # an ICC profile's data colour space (header bytes 16..20), by channels


def read(im: Image.Image | None, data: bytes, fmt: str) -> tuple[Image.Exif | None, bytes | None]:
    """(EXIF, ICC profile) of an image opened by Pillow (``im``, before any transpose), or of a TIFF's
    ``data`` that Pillow cannot open (``im`` None); None for what is absent or unreadable."""
    try:
        exif = _tiff_ifd0(data) if im is None else im.getexif()
        icc = None if im is None else im.info.get("icc_profile")
        if fmt == "TIFF" and exif is not None:
            icc = icc or exif.get(ICC_TAG)
        return (exif if exif else None), (bytes(icc) if icc else None)
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - damaged metadata never costs the photo
        return None, None


def _tiff_ifd0(data: bytes) -> Image.Exif:
    """A TIFF file's first IFD, read as EXIF (the structure is the same)."""
    exif = Image.Exif()
    exif.load(data)
    return exif


def normalised_exif(exif: Image.Exif | None, size: tuple[int, int]) -> bytes | None:
    """The EXIF block (module docstring) for upright pixels of ``size`` (width, height); None when no tag
    of the photo remains."""
    if exif is None:
        return None
    try:
        out = Image.Exif()
        for tag, value in exif.items():
            if tag not in LAYOUT_TAGS and tag not in (EXIF_IFD, GPS_IFD) and not _machine_description(tag, value):
                out[tag] = value
        if out.get(RESOLUTION_UNIT) == 1:  # no unit: a writer's placeholder (1 x 1), not the photo's print size
            for tag in (X_RESOLUTION, Y_RESOLUTION, RESOLUTION_UNIT):
                out.pop(tag, None)
        inner = _sub_ifd(exif, EXIF_IFD)
        inner.update({tag: value for tag, value in zip((PIXEL_X, PIXEL_Y), size, strict=True) if tag in inner})
        if INTEROP_IFD in inner:  # a pointer into the original block: carried as the IFD it points to
            interop = _sub_ifd(exif, INTEROP_IFD)
            if interop:
                inner[INTEROP_IFD] = interop
            else:
                del inner[INTEROP_IFD]
        gps = _sub_ifd(exif, GPS_IFD)
        for ifd, tags in ((EXIF_IFD, inner), (GPS_IFD, gps)):
            if tags:
                out[ifd] = tags
        if not len(out):
            return None
        out[ORIENTATION] = 1  # the pixels are upright, whatever the file said
        return out.tobytes()[6:]
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - tags Pillow cannot write back are dropped with the block
        return None


def _sub_ifd(exif: Image.Exif, tag: int) -> dict[int, Any]:
    """The tags of the sub-IFD ``tag`` (Exif, GPS, Interop) of ``exif``, a copy; {} when it has none."""
    value = exif.get(tag)
    return dict(value) if isinstance(value, dict) else dict(exif.get_ifd(tag))


def _machine_description(tag: int, value: Any) -> bool:
    """An ImageDescription that a TIFF writer filled with its own layout metadata (tifffile's JSON shape,
    ImageJ's or OME's header) rather than a caption: it would describe the wrong file."""
    if tag != 270:
        return False
    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return text.lstrip().startswith(("{", "ImageJ=", "<?xml", "<OME"))


def icc_for(icc: bytes | None, channels: int) -> bytes | None:
    """``icc`` when its colour space is that of pixels with ``channels`` channels (1 grey, 3 RGB), else None."""
    if icc is None or len(icc) < 20 or icc[16:20] != COLOUR_SPACES.get(channels):
        return None
    return icc


def exif_tags(exif: bytes) -> Image.Exif:
    """The EXIF block (with or without ``Exif\\0\\0``) as Pillow's mapping of tags, for writing."""
    tags = Image.Exif()
    tags.load(exif)
    return tags


def pillow_options(fmt: str, exif: bytes | None, icc: bytes | None) -> dict[str, Any]:
    """The keyword arguments of ``Image.save`` that write ``exif`` and ``icc`` into a JPEG, PNG or WebP.

    A JPEG holds at most 64 KiB of EXIF: a longer block loses its maker note, then, if still too long, is
    left out."""
    options: dict[str, Any] = {}
    if icc:
        options["icc_profile"] = icc
    if exif:
        tags = exif_tags(exif)
        if fmt == "JPEG" and len(tags.tobytes()) > JPEG_MAX_EXIF:
            if EXIF_IFD in tags:
                tags.get_ifd(EXIF_IFD).pop(MAKER_NOTE, None)
            if len(tags.tobytes()) > JPEG_MAX_EXIF:
                return options
        options["exif"] = tags
    return options


def png_with_metadata(png: bytes, exif: bytes | None, icc: bytes | None) -> bytes:
    """``png`` with an ``iCCP`` chunk for ``icc`` and an ``eXIf`` chunk for ``exif``, right after IHDR."""
    chunks = b""
    if icc:
        chunks += _png_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(icc))  # name, NUL, method 0 (zlib)
    if exif:
        chunks += _png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif)
    if not chunks:
        return png
    ihdr_end = 8 + 8 + struct.unpack(">I", png[8:12])[0] + 4  # signature, then length + type, body, CRC
    return png[:ihdr_end] + chunks + png[ihdr_end:]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def tiff_with_exif(tiff: bytes, exif: bytes | None) -> bytes:
    """``tiff`` with the tags of ``exif`` in its first IFD, its Exif and GPS sub-IFDs included.

    The file is kept as written; after it come the EXIF's values and sub-IFDs (laid out by Pillow for this
    place) and a new first IFD merging the writer's entries with the EXIF's (the writer's layout tags win;
    for any other tag, the EXIF's), to which the header then points. Classic TIFF of either byte order,
    and little-endian BigTIFF (what tifffile writes past 4 GiB)."""
    if not exif:
        return tiff
    order = "<" if tiff[:2] == b"II" else ">"
    big = struct.unpack(order + "H", tiff[2:4])[0] == 43
    if big and order == ">":
        raise ValueError("EXIF cannot be added to a big-endian BigTIFF")  # Pillow lays out no such IFD
    count_fmt, offset_fmt, entry_size, head_size = ("Q", "Q", 20, 16) if big else ("H", "I", 12, 8)
    offset_at, offset_size = (8, 8) if big else (4, 4)
    first = struct.unpack_from(order + offset_fmt, tiff, offset_at)[0]
    ours, end = _ifd_entries(tiff, first, order, count_fmt, entry_size)
    next_ifd = tiff[end:end + offset_size]

    tags = exif_tags(exif)
    for tag in LAYOUT_TAGS & set(tags):
        del tags[tag]
    tags.endian, tags.bigtiff = order, big
    at = _aligned(len(tiff))
    block = tags.tobytes(at)[6 + head_size:]  # an IFD (only its entries are used) and its values, to lie at ``at``
    theirs, _ = _ifd_entries(block, 0, order, count_fmt, entry_size)
    merged = {**theirs, **{tag: e for tag, e in ours.items() if tag in LAYOUT_TAGS or tag not in theirs}}
    ifd_at = _aligned(at + len(block))
    ifd = struct.pack(order + count_fmt, len(merged)) + b"".join(merged[t] for t in sorted(merged)) + next_ifd
    head = tiff[:offset_at] + struct.pack(order + offset_fmt, ifd_at)
    return b"".join([head, memoryview(tiff)[len(head):], b"\0" * (at - len(tiff)), block,
                     b"\0" * (ifd_at - at - len(block)), ifd])


def _ifd_entries(data: bytes, at: int, order: str, count_fmt: str, entry_size: int) -> tuple[dict[int, bytes], int]:
    """The raw entries of the IFD at ``at``, by tag, and where its next-IFD offset lies."""
    count = struct.unpack_from(order + count_fmt, data, at)[0]
    start = at + struct.calcsize(count_fmt)
    raw = (data[start + i * entry_size: start + (i + 1) * entry_size] for i in range(count))
    return {struct.unpack(order + "H", e[:2])[0]: e for e in raw}, start + count * entry_size


def _aligned(n: int) -> int:
    return n + (n & 1)
