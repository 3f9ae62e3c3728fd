"""Photographers' files made by the tests themselves: DNGs (tifffile, with the DNG tags LibRaw needs), HEICs
(pillow-heif, 8 and 10-bit), and files of several frames."""

from __future__ import annotations

import io

import numpy as np
import pillow_heif
import tifffile
from PIL import Image, ImageCms

from n2n_core.data import metadata

MAKE, MODEL, ORIENTATION, DATE_ORIGINAL, EXPOSURE_TIME = 0x010F, 0x0110, 0x0112, 0x9003, 0x829A
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
GPS = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
BLACK, WHITE = 256, 4095  # the DNGs' sensor black and white levels (12 bits)
AS_SHOT_NEUTRAL = (0.5, 1.0, 0.8)  # the camera's white balance: a grey patch reads R 0.5, G 1, B 0.8 of green
DNG_TAGS = (50706, 50707, 50708, 50714, 50717, 50721, 50728, 50778, 33421, 33422)  # never carried to the result


def camera_exif(make: str = "N2N", model: str = "Test Camera", orientation: int | None = None) -> Image.Exif:
    """Camera, model, date taken and exposure (Exif IFD) and a position (GPS IFD)."""
    exif = Image.Exif()
    exif[MAKE], exif[MODEL] = make, model
    if orientation is not None:
        exif[ORIENTATION] = orientation
    exif.get_ifd(EXIF_IFD).update({DATE_ORIGINAL: "2024:05:01 10:00:00", EXPOSURE_TIME: 0.01})
    exif.get_ifd(GPS_IFD).update(GPS)
    return exif


def _rationals(values) -> list[int]:
    out: list[int] = []
    for v in values:
        out += [round(v * 10000), 10000]
    return out


def bayer(scene: np.ndarray, seed: int = 0, noise: float = 0.0) -> np.ndarray:
    """An RGGB mosaic (H, W) uint16 of a linear ``scene`` (H, W, 3) in [0, 1] as the camera sees it: each
    channel scaled by AS_SHOT_NEUTRAL, between BLACK and WHITE, with Gaussian read noise of ``noise`` levels."""
    seen = scene * np.asarray(AS_SHOT_NEUTRAL)
    h, w = scene.shape[:2]
    mosaic = np.empty((h, w))
    mosaic[0::2, 0::2] = seen[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = seen[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = seen[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = seen[1::2, 1::2, 2]
    levels = BLACK + mosaic * (WHITE - BLACK) + np.random.default_rng(seed).normal(0, noise, mosaic.shape)
    return levels.round().clip(0, WHITE).astype(np.uint16)


def dng(scene: np.ndarray | None = None, orientation: int = 1, exif: Image.Exif | None = None,
        noise: float = 0.0, size: tuple[int, int] = (64, 96)) -> bytes:
    """A DNG of a linear ``scene`` (default: a horizontal gradient of size (H, W)): a CFA (Bayer RGGB) mosaic
    in IFD0, with DNGVersion, CFARepeatPatternDim/CFAPattern, black and white levels, an identity
    ColorMatrix1 (D65), AsShotNeutral, Orientation and the camera's ``exif``."""
    if scene is None:
        h, w = size
        ramp = np.linspace(0.02, 0.6, w)[None, :, None]  # below 0.75 of white: LibRaw keeps the white level
        scene = np.broadcast_to(ramp, (h, w, 3)).copy()
    tags = [
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, (0, 1, 1, 2), True),  # CFAPattern: R G / G B
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, "N2N Test Camera", True),  # UniqueCameraModel
        (50714, "H", 1, BLACK, True),  # BlackLevel
        (50717, "H", 1, WHITE, True),  # WhiteLevel
        (50721, "2i", 9, _rationals([1, 0, 0, 0, 1, 0, 0, 0, 1]), True),  # ColorMatrix1 (SRATIONAL)
        (50728, "2I", 3, _rationals(AS_SHOT_NEUTRAL), True),  # AsShotNeutral
        (50778, "H", 1, 21, True),  # CalibrationIlluminant1: D65
        (274, "H", 1, orientation, True),
    ]
    buf = io.BytesIO()
    tifffile.imwrite(buf, bayer(scene, noise=noise), photometric=32803, extratags=tags, metadata=None,
                     software=False)
    data = buf.getvalue()
    return metadata.tiff_with_exif(data, exif.tobytes()[6:]) if exif is not None else data


def nef_like() -> bytes:
    """A TIFF as Nikon writes a NEF: IFD0 an 8-bit RGB preview (what Pillow would open), the sensor's CFA
    data in a SubIFD, Make NIKON."""
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as w:
        w.write(np.zeros((8, 12, 3), np.uint8), photometric="rgb", subfiletype=1, subifds=1,
                extratags=[(271, "s", 0, "NIKON CORPORATION", True), (272, "s", 0, "NIKON D850", True)])
        w.write(bayer(np.full((64, 96, 3), 0.3)), photometric=32803,
                extratags=[(33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True)])
    return buf.getvalue()


def heic(a: np.ndarray, exif: Image.Exif | None = None, icc: bytes | None = None, lossless: bool = False,
         quality: int = 95) -> bytes:
    """A HEIC of (H, W) or (H, W, C) uint8 (8-bit) or uint16 (written at 10 bits) samples, as an iPhone
    writes one: EXIF Orientation becomes the file's own rotation (irot), EXIF and ICC profile kept."""
    channels = 1 if a.ndim == 2 else a.shape[2]
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels] + (";16" if a.dtype == np.uint16 else "")
    heif_file = pillow_heif.from_bytes(mode=mode, size=(a.shape[1], a.shape[0]), data=np.ascontiguousarray(a).tobytes())
    options: dict = {"quality": -1, "chroma": 444, "matrix_coefficients": 0} if lossless else {"quality": quality}
    if exif is not None:
        options["exif"] = exif.tobytes()
    if icc is not None:
        options["icc_profile"] = icc
    buf = io.BytesIO()
    heif_file.save(buf, **options)
    return buf.getvalue()


def frames(fmt: str, count: int = 3, size: tuple[int, int] = (10, 8)) -> bytes:
    """A file of ``count`` frames: an animated PNG/GIF/WebP/AVIF, a multi-page TIFF, a HEIF collection."""
    pictures = [Image.fromarray(np.full((size[1], size[0], 3), 40 * i, np.uint8)) for i in range(count)]
    buf = io.BytesIO()
    pictures[0].save(buf, format=fmt, save_all=True, append_images=pictures[1:])
    return buf.getvalue()
