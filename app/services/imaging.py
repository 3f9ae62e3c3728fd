"""Bytes <-> pictures for the service: limits checked on the header before any pixel is decoded.

Refusals are ``ImageRefused`` exceptions named for what is wrong, their text the reason; the HTTP answer to
each (status code) is ``app.api.errors``'s."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import BinaryIO

from n2n_core.data import images
from n2n_core.data.images import ImageError, ImageTooLarge, MultiFrameImage, Picture, UnsupportedImage


class ImageRefused(ValueError):
    """An image, or the options asked for its result, that the service will not take; ``str()``: why."""


class EmptyBody(ImageRefused):
    """No bytes were sent."""


class UnreadableImage(ImageRefused):
    """The bytes are not an image the decoder can read."""


class UnsupportedFormat(ImageRefused):
    """A format the service does not read (a camera RAW LibRaw cannot open included)."""


class TooManyPixels(ImageRefused):
    """More pixels than the service's limit (a decompression bomb included)."""


class MultipleFrames(ImageRefused):
    """A file of several frames (an animation, a multi-page TIFF)."""


class BadAspectRatio(ImageRefused):
    """A long side absurdly longer than the short one."""


class BadOutputOptions(ImageRefused):
    """Output options out of range, or 16 bits asked of a format that holds 8."""


class OutputTooLarge(ImageRefused):
    """The output format cannot hold an image this large."""


class UnsupportedOutput(ImageRefused):
    """The result cannot be written as asked."""


def size_of(file: BinaryIO) -> int:
    """The file's size in bytes (its position is left at 0)."""
    file.seek(0, 2)
    size = file.tell()
    file.seek(0)
    return size


def read_all(data: bytes | BinaryIO) -> bytes:
    """The bytes of ``data``: itself, or all of a file (read from its start)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    data.seek(0)
    return data.read()


def image_refusal(e: ImageError, max_pixels: int) -> ImageRefused:
    """The refusal of bytes the core refused: TooManyPixels for a bomb, UnsupportedFormat for a format not read
    (a camera RAW LibRaw cannot open included), MultipleFrames for a file of several frames, UnreadableImage
    for anything unreadable."""
    if isinstance(e, ImageTooLarge):
        return TooManyPixels(f"{e}; the limit is {max_pixels} pixels")
    if isinstance(e, MultiFrameImage):
        return MultipleFrames(str(e))
    if isinstance(e, UnsupportedImage) or "unsupported" in str(e):
        return UnsupportedFormat(str(e))
    return UnreadableImage(str(e))


def check_header(data: bytes | BinaryIO, max_pixels: int,
                 max_aspect_ratio: float = 1000.0) -> tuple[str, int, int]:
    """(format, width, height) of an image's bytes or seekable file (only its header is read); EmptyBody,
    UnreadableImage or UnsupportedFormat for no, unreadable or unsupported bytes, TooManyPixels above
    max_pixels, MultipleFrames for a file of several frames, BadAspectRatio for a long side more than
    ``max_aspect_ratio`` times the short one. A camera RAW's size is that of the developed image,
    read from its header before anything is demosaiced."""
    if not (len(data) if isinstance(data, (bytes, bytearray, memoryview)) else size_of(data)):
        raise EmptyBody("empty body: send an image as multipart field 'file' or as the raw body")
    try:
        fmt, w, h = images.probe(data)
    except ImageError as e:
        raise image_refusal(e, max_pixels) from None
    if w * h > max_pixels:
        raise TooManyPixels(f"image is {w}x{h} = {w * h} pixels; the limit is {max_pixels}")
    if max(w, h) > max_aspect_ratio * max(1, min(w, h)):
        raise BadAspectRatio(f"image is {w}x{h}: its long side is more than {max_aspect_ratio:g} times its "
                             "short side; crop or pad it to a photograph's proportions")
    return fmt, w, h


@dataclass(frozen=True)
class OutputOptions:
    """How a result is written, besides its format (``n2n_core.data.images.encode``): JPEG/WebP ``quality``
    (1..100; None: a JPEG written from a JPEG keeps the input's estimated quality, else 95), sample
    depth ``bits`` (8, 16, or None for the input's where the format holds it) and
    ``strip_metadata`` (leave the EXIF out; the ICC profile stays)."""

    quality: int | None = None
    bits: int | None = None
    strip_metadata: bool = False
    png_compression: int = images.DEFAULT_PNG_COMPRESSION


def output_options(fmt: str, quality: int | None = None, bits: int | None = None, strip_metadata: bool = False,
                   png_compression: int = images.DEFAULT_PNG_COMPRESSION) -> OutputOptions:
    """The options of a request, checked against its output format ``fmt``: BadOutputOptions for 16 bits in a
    format that holds 8 (or any value out of range)."""
    try:
        if quality is not None:
            images.check_quality(quality)
        if bits is not None:
            images.output_bits(16, fmt, int(bits))
    except ValueError as e:
        raise BadOutputOptions(str(e)) from None
    return OutputOptions(None if quality is None else int(quality), None if bits is None else int(bits),
                         bool(strip_metadata), png_compression)


def check_output_size(fmt: str, width: int, height: int) -> None:
    """OutputTooLarge before any work when the output format cannot hold an image of this size (either orientation).
    JPEG and WebP have a largest side; PNG and TIFF none (a TIFF past 4 GiB is written as BigTIFF)."""
    name = images.OUTPUT_FORMATS.get(fmt.lower(), fmt.upper())
    limit = images.MAX_SIDE.get(name)
    if limit is not None and max(width, height) > limit:
        raise OutputTooLarge(f"{fmt} output holds at most {limit} pixels per side and this image is "
                             f"{width}x{height}; ask for format=png or format=tiff")


def output_format(requested: str | None, input_format: str, bits: int | None = None) -> str:
    """The format of the answer: the one asked for; for ``auto`` (or None), the input's default: its own
    format (JPEG in, JPEG out; TIFF, PNG, HEIC, AVIF, WebP likewise), a 16-bit ``tiff`` for a camera RAW,
    ``png`` for a BMP (``n2n_core.data.images.default_output_format``); ``png`` when ``bits=16`` asks for more than
    the input's own format holds (a JPEG, WebP, HEIC or AVIF)."""
    if requested is None or requested == "auto":
        fmt = images.default_output_format(input_format)
        return "png" if bits == 16 and images.OUTPUT_FORMATS[fmt] not in images.DEEP_FORMATS else fmt
    return requested


UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME = 100  # characters of the uploaded file's stem kept in the download's name


def download_name(upload_name: str | None, fmt: str) -> str:
    """The name a result is downloaded as: the uploaded file's, denoised (``IMG_1000.jpg`` ->
    ``IMG_1000-denoised.jpg``; ``n2n_core.data.images.output_name``), without its folders and with only letters,
    digits, ``.``, ``_`` and ``-`` (others become ``_``); ``denoised.<fmt>`` without a usable name."""
    base = re.split(r"[/\\]", upload_name or "")[-1]
    stem, dot, ext = base.rpartition(".") if "." in base.lstrip(".") else (base, "", "")
    stem = UNSAFE_NAME.sub("_", stem).strip("._")[:MAX_NAME]
    ext = UNSAFE_NAME.sub("", ext)[:10]
    if not stem:
        return f"denoised.{fmt}"
    return images.output_name(f"{stem}{dot}{ext}" if ext else stem, fmt, "-denoised")


def decode(data: bytes | BinaryIO, max_pixels: int, max_aspect_ratio: float = 1000.0) -> Picture:
    """The picture in ``data`` (bytes, or a spooled upload: read here, in the caller's thread), its header
    checked first (``check_header``: limits before any decoding, a camera RAW's before demosaicing); refused as
    by the header check, or UnreadableImage when the pixels turn out unreadable."""
    check_header(data, max_pixels, max_aspect_ratio)
    data = read_all(data)
    try:
        pic = images.decode(data)
    except ImageError as e:
        raise (UnreadableImage(str(e)) if type(e) is ImageError else image_refusal(e, max_pixels)) from None
    w, h = pic.size
    if w * h > max_pixels:  # EXIF rotation cannot grow it, but the decoder's own view is what counts
        raise TooManyPixels(f"image is {w}x{h} pixels; the limit is {max_pixels}")
    return pic


def encode(pic: Picture, fmt: str, options: OutputOptions | None = None) -> tuple[bytes, str]:
    """(bytes, media type) of ``pic`` as ``fmt``, written with ``options`` (default: ``OutputOptions()``);
    UnsupportedOutput when it cannot be written so."""
    options = options or OutputOptions()
    try:
        data = images.encode(pic, fmt, options.quality, bits=options.bits, strip_metadata=options.strip_metadata,
                             png_compression=options.png_compression)
    except ValueError as e:  # ImageError included
        raise UnsupportedOutput(str(e)) from None
    return data, images.MEDIA_TYPES[images.OUTPUT_FORMATS[fmt.lower()]]
