"""Bytes <-> pictures for HTTP: limits checked on the header before any pixel is decoded."""

from __future__ import annotations

from fastapi import HTTPException

from n2n_core import images
from n2n_core.images import ImageError, ImageTooLarge, Picture


def check_header(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """(format, width, height); 400/415 for unreadable or unsupported bytes, 413 above max_pixels."""
    if not data:
        raise HTTPException(400, "empty body: send an image as multipart field 'file' or as the raw body")
    try:
        fmt, w, h = images.probe(data)
    except ImageTooLarge as e:
        raise HTTPException(413, f"{e}; the limit is {max_pixels} pixels") from None
    except ImageError as e:
        status = 415 if "unsupported" in str(e) else 400
        raise HTTPException(status, str(e)) from None
    if w * h > max_pixels:
        raise HTTPException(413, f"image is {w}x{h} = {w * h} pixels; the limit is {max_pixels}")
    return fmt, w, h


def decode(data: bytes, max_pixels: int) -> Picture:
    check_header(data, max_pixels)
    try:
        pic = images.decode(data)
    except ImageError as e:
        raise HTTPException(400, str(e)) from None
    w, h = pic.size
    if w * h > max_pixels:  # EXIF rotation cannot grow it, but the decoder's own view is what counts
        raise HTTPException(413, f"image is {w}x{h} pixels; the limit is {max_pixels}")
    return pic


def encode(pic: Picture, fmt: str) -> tuple[bytes, str]:
    """(bytes, media type)."""
    try:
        data = images.encode(pic, fmt)
    except ImageError as e:
        raise HTTPException(400, str(e)) from None
    return data, images.MEDIA_TYPES[images.OUTPUT_FORMATS[fmt.lower()]]
