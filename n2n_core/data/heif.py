"""HEIC/HEIF files (iPhone photos) through ``pillow-heif``: the Pillow opener, deep decoding and encoding.

Importing this module registers pillow-heif's opener with Pillow, once per process (Python imports a
module once); nothing else here holds state. Pillow then opens HEIF files like any other format:
8-bit ones decode through it, with their EXIF and ICC profile in ``im.getexif()`` and ``im.info``.

Orientation: a HEIF file turns its pixels with its own ``irot``/``imir`` properties, which libheif applies
while decoding, and pillow-heif resets the EXIF Orientation to 1 so that nobody turns them twice; the
pixels arrive upright, as a JPEG's do after ``ImageOps.exif_transpose``.

Bit depth: 10 and 12-bit files (HDR iPhone photos) are read by ``decode_deep`` as 16-bit samples (the
full 0..65535 range), like a 16-bit PNG; ``encode`` writes 16-bit samples as a 10-bit HEIF.

AVIF is not here: pillow-heif 1.x leaves it to Pillow, which reads and writes it natively (8 bits).
"""

from __future__ import annotations

import io

import numpy as np
import pillow_heif

# thumbnails, depth maps and auxiliary images are never used: not decoding them saves time and memory
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

#: encoded as a grid of tiles of this side, as iPhones do: a single HEVC picture has size limits that a
#: long thin photo can break (x265 refuses 8192 x 16), and a grid has none below 65535 pixels a side
GRID_TILE = 512
MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}  # by channels; LA is stored as RGBA (HEIF has no grey + alpha)


def bit_depth(info: dict) -> int:
    """Bits a sample of an opened HEIF image (``im.info``): 8, 10 or 12."""
    return int(info.get("bit_depth") or 8)


def decode_deep(data: bytes) -> np.ndarray:
    """The primary image of a 10 or 12-bit HEIF file as (H, W) or (H, W, C) uint16 over 0..65535, upright.

    libheif hands the samples shifted to the top of 16 bits (a 10-bit white is 65472); they are scaled
    exactly instead, so that white stays white."""
    heif_file = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=False)
    depth = int(heif_file.info.get("bit_depth") or 16)
    a = np.asarray(heif_file)
    if a.dtype != np.uint16 or depth >= 16:
        return np.ascontiguousarray(a)
    top = (1 << depth) - 1
    scaled = (a >> (16 - depth)).astype(np.uint32) * 65535 + top // 2
    return (scaled // top).astype(np.uint16)


def encode(px: np.ndarray, quality: int, exif: bytes | None, icc_profile: bytes | None) -> bytes:
    """A HEIC file of (H, W) or (H, W, 1..4) samples: uint8 as 8 bits, uint16 as 10 bits; grey + alpha as
    RGBA. ``quality`` 1..100; ``exif``: the EXIF block (TIFF structure); ``icc_profile``: the profile's bytes."""
    channels = 1 if px.ndim == 2 else px.shape[2]
    if px.ndim == 3 and channels == 1:
        px = px[:, :, 0]
    mode = MODES[channels] + (";16" if px.dtype == np.uint16 else "")
    height, width = px.shape[:2]
    heif_file = pillow_heif.from_bytes(mode=mode, size=(width, height), data=np.ascontiguousarray(px).tobytes())
    out = io.BytesIO()
    options: dict = {"quality": quality, "tile_size": GRID_TILE}
    if exif:
        options["exif"] = exif if exif.startswith(b"Exif\0\0") else b"Exif\0\0" + exif
    if icc_profile:
        options["icc_profile"] = icc_profile
    heif_file.save(out, **options)
    return out.getvalue()
