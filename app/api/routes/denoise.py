"""POST /denoise: an image in, the denoised image out (same size and mode)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from typing import Annotated, BinaryIO, Literal, NamedTuple

from fastapi import APIRouter, Query, Request, Response

from n2n_core import weights
from n2n_core.data import raw

from app.core.config import Settings
from app.api.deps import MetricsDep, QueueDep, SettingsDep
from app.api.errors import denoise_refusal
from app.services.denoiser import QueueFull
from app.services.imaging import check_header, check_output_size, download_name, output_format, output_options
from app.core.metrics import Metrics
from app.api.uploads import read_all, read_upload, spool_upload

__all__ = ["read_upload"]  # the datasets route reads its zip with it

router = APIRouter(tags=["denoise"])

IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                               "properties": {"file": {"type": "string", "format": "binary"}}}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/webp": {"schema": {"type": "string", "format": "binary"}},
            "image/tiff": {"schema": {"type": "string", "format": "binary"}},
            "image/bmp": {"schema": {"type": "string", "format": "binary"}},
            "image/heic": {"schema": {"type": "string", "format": "binary"}},
            "image/avif": {"schema": {"type": "string", "format": "binary"}},
            "image/x-adobe-dng": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"},
                                         "description": "any of these, or a camera RAW (CR2, CR3, NEF, ARW, RAF, "
                                                        "ORF, RW2, ...): recognised by its content"},
        },
    }
}


OutputFormatName = Literal["png", "jpeg", "webp", "tiff", "heic", "avif"]
OutputFormat = Annotated[Literal["auto", OutputFormatName],
                         Query(description="output format: png, jpeg, webp, tiff (image/tiff, zlib-compressed), heic "
                               "(image/heic; a 16-bit input is written at 10 bits) or avif (8 bits); auto (the "
                               "default): the input's own format (a JPEG stays JPEG, a TIFF TIFF, a PNG PNG, a "
                               "HEIC HEIC, ...), a 16-bit tiff for a camera RAW, png for a BMP")]
Quality = Annotated[int | None, Query(ge=1, le=100, description="JPEG, WebP, HEIC and AVIF quality, 1..100 (png and "
                                      "tiff are lossless); default: a JPEG answered for a JPEG keeps the input's "
                                      "quality (estimated from its quantisation tables), anything else 95")]
StripMetadata = Annotated[bool, Query(description="leave the EXIF block (camera, lens, dates, GPS, ...) out of the "
                                      "result; the ICC colour profile is always kept. Default: the result carries "
                                      "the input's EXIF (Orientation 1, the pixels being upright) and ICC profile")]


class SampleBits(IntEnum):
    """Bits a sample of the result: 8, or 16 (png and tiff only)."""

    EIGHT = 8
    SIXTEEN = 16


Bits = Annotated[SampleBits | None, Query(description="bits a sample: 16 gives a 16-bit png or tiff from any input "
                                          "(the denoised pixels are finer than an 8-bit input's levels), 8 an 8-bit "
                                          "one; default: a 16-bit input (png, tiff, a 10 or 12-bit heic, a camera "
                                          "RAW) stays 16-bit as png or tiff (10-bit as heic), anything else is "
                                          "8-bit. 16 with jpeg, webp, heic or avif is a 422")]
ModelId = Annotated[str | None, Query(max_length=64, description="registered model id (default: the active one; "
                                       "for a camera RAW, the camera-noise model `blind`)")]
Strength = Annotated[float, Query(ge=0, le=1, allow_inf_nan=False,
                                  description="how much to denoise: 1 the model's output, 0 the input unchanged, "
                                  "between them a blend (keeps some grain)")]
IMAGE_RESPONSE = {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}, "image/tiff": {}, "image/heic": {},
                              "image/avif": {}},
                  "description": "the denoised image, same size and mode, with the input's EXIF (unless "
                                 "strip_metadata) and ICC profile"}
REFUSALS = {400: {"description": "unreadable image, or too large for the output format"},
            404: {"description": "unknown model"},
            408: {"description": "the body arrived slower than N2N_MIN_UPLOAD_BYTES_PER_SECOND"},
            413: {"description": "too many pixels"},
            415: {"description": "unsupported format, or a camera RAW that LibRaw cannot read"},
            422: {"description": "a file of several frames, an absurd aspect ratio, or invalid parameters"},
            503: {"description": "busy or shutting down, retry later"}}


class UploadedImage(NamedTuple):
    """An upload checked on its header: its bytes (or its spool: ``open_image``), pixels, format (``PNG``,
    ``HEIF``, ``DNG``, ...) and the format of the answer (the one asked for, else the input's default)."""

    data: bytes | BinaryIO
    pixels: int
    input_format: str
    output_format: str
    filename: str | None = None  # the name a multipart upload gave the file, as sent


async def open_image(request: Request, settings: Settings, format: str | None,
                     bits: int | None = None) -> UploadedImage:
    """The uploaded image in its spool (``app.api.uploads``; the caller closes ``data``), checked on its header
    before any work: ``imaging.ImageRefused`` (400, 413, 415, 422 as documented: ``app.api.errors``), and
    OutputTooLarge (400) when the output format (``format``, or the input's default for ``auto`` or None) cannot
    hold it. Only the header is read here."""
    spool = await spool_upload(request)
    try:
        input_format, width, height = check_header(spool, settings.max_pixels, settings.max_aspect_ratio)
        fmt = output_format(format, input_format, bits)
        check_output_size(fmt, width, height)
    except BaseException:
        spool.close()
        raise
    return UploadedImage(spool, width * height, input_format, fmt, getattr(request.state, "upload_filename", None))


async def read_image(request: Request, settings: Settings, format: str | None,
                     bits: int | None = None) -> UploadedImage:
    """``open_image``, with ``data`` the upload's bytes (read off the event loop; the spool is closed)."""
    upload = await open_image(request, settings, format, bits)
    spool = upload.data
    try:
        return upload._replace(data=await asyncio.to_thread(read_all, spool))
    finally:
        spool.close()  # type: ignore[union-attr]


def model_for(input_format: str, model: str | None) -> str | None:
    """The model a request names; else, for a camera RAW, the camera-noise model (``blind``, when shipped);
    else None: the active model."""
    if model is None and input_format in raw.FORMATS and raw.CAMERA_NOISE_MODEL in weights.shipped():
        return raw.CAMERA_NOISE_MODEL
    return model


@contextmanager
def refused(metrics: Metrics, model: str | None) -> Iterator[None]:
    """Denoise failures inside the block as their HTTP answers (``app.api.errors.denoise_refusal``: 503 with
    Retry-After when busy, ...); a refusal for a full queue is counted."""
    try:
        yield
    except Exception as e:
        answer = denoise_refusal(e, model)
        if answer is None or answer is e:  # unexpected, or already an HTTP answer
            raise
        if isinstance(e, QueueFull):
            metrics.count_rejected()
        raise answer from None


def image_response(content: bytes, media_type: str, model_id: str, format: str, noise_sigma: float,
                   precision: str, filename: str | None = None) -> Response:
    """A denoised image as ``/denoise`` answers it: ``X-Model-Id`` names the model that made it,
    ``X-Noise-Sigma`` the noise level estimated in the input (standard deviation, 0..255 scale),
    ``X-Precision`` the type the network's products ran in (float32, bfloat16, float16); the download is
    named after the uploaded file (``IMG_1000-denoised.jpg``: ``imaging.download_name``), else
    ``denoised.<format>``."""
    return Response(content, media_type=media_type,
                    headers={"X-Model-Id": model_id, "X-Noise-Sigma": f"{noise_sigma:.1f}", "X-Precision": precision,
                             "Content-Disposition": f'inline; filename="{download_name(filename, format)}"'})


@router.post(
    "/denoise",
    summary="Denoise an image",
    response_class=Response,
    responses={200: IMAGE_RESPONSE, **REFUSALS},
    openapi_extra=IMAGE_BODY,
)
async def denoise(request: Request, settings: SettingsDep, queue: QueueDep, metrics: MetricsDep,
                  format: OutputFormat = "auto", model: ModelId = None, strength: Strength = 1.0,
                  quality: Quality = None, bits: Bits = None, strip_metadata: StripMetadata = False) -> Response:
    """The denoised image in ``format`` (default: the input's own; a 16-bit tiff for a camera RAW, png for a
    BMP), named after the uploaded file: same size and mode,
    EXIF (unless ``strip_metadata``) and ICC profile kept; ``quality`` for jpeg, webp, heic and avif;
    ``bits=16`` for a 16-bit png or tiff. A camera RAW is developed (linear, camera white balance, then the
    sRGB curve) and denoised by the camera-noise model `blind` unless ``model`` names another."""
    output = output_options(output_format(format, "PNG"), quality, bits, strip_metadata, settings.png_compression)
    upload = await open_image(request, settings, format, bits)  # the decoder reads the spool, once admitted
    model = model_for(upload.input_format, model)
    try:
        with refused(metrics, model):
            result = await queue.submit(upload.data, upload.output_format, model,
                                        disconnected=request.is_disconnected, pixels=upload.pixels,
                                        strength=strength, output=output)
    finally:
        upload.data.close()  # type: ignore[union-attr]
    metrics.count_image()
    return image_response(result.content, result.media_type, result.model_id, upload.output_format,
                          result.noise_sigma, result.precision, upload.filename)
