"""POST /denoise: an image in, the denoised image out (same size and mode)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response

from ..config import Settings
from ..deps import MetricsDep, QueueDep, SettingsDep
from ..denoiser import QueueFull, refusal
from ..imaging import check_header, check_output_size, output_options
from ..metrics import Metrics

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
        },
    }
}


async def read_upload(request: Request, field: str = "file", accept: tuple[str, ...] = ("image/",)) -> bytes:
    """The upload as bytes: multipart field ``field``, or the raw body with an accepted content type."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        form = await request.form()
        item = form.get(field)
        if item is None or isinstance(item, str):
            raise HTTPException(400, f"multipart upload needs a file in field '{field}'")
        return await item.read()
    if any(ctype.startswith(a) for a in accept) or ctype == "application/octet-stream":
        return await request.body()
    raise HTTPException(415, f"send multipart/form-data with field '{field}' or a raw body of type "
                             f"{' or '.join(a + '*' if a.endswith('/') else a for a in accept)}; got {ctype or 'none'}")


OutputFormat = Annotated[Literal["png", "jpeg", "webp", "tiff"],
                         Query(description="output format: png, jpeg, webp or tiff (image/tiff, zlib-compressed)")]
Quality = Annotated[int, Query(ge=1, le=100, description="JPEG and WebP quality, 1..100 (png and tiff are lossless)")]
StripMetadata = Annotated[bool, Query(description="leave the EXIF block (camera, lens, dates, GPS, ...) out of the "
                                      "result; the ICC colour profile is always kept. Default: the result carries "
                                      "the input's EXIF (Orientation 1, the pixels being upright) and ICC profile")]


class SampleBits(IntEnum):
    """Bits a sample of the result: 8, or 16 (png and tiff only)."""

    EIGHT = 8
    SIXTEEN = 16


Bits = Annotated[SampleBits | None, Query(description="bits a sample: 16 gives a 16-bit png or tiff from any input "
                                          "(the denoised pixels are finer than an 8-bit input's levels), 8 an 8-bit "
                                          "one; default: a 16-bit png or tiff input stays 16-bit as png or tiff, "
                                          "anything else is 8-bit. 16 with jpeg or webp is a 422")]
ModelId = Annotated[str | None, Query(max_length=64, description="registered model id (default: the active one)")]
Strength = Annotated[float, Query(ge=0, le=1, allow_inf_nan=False,
                                  description="how much to denoise: 1 the model's output, 0 the input unchanged, "
                                  "between them a blend (keeps some grain)")]
IMAGE_RESPONSE = {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}, "image/tiff": {}},
                  "description": "the denoised image, same size and mode, with the input's EXIF (unless "
                                 "strip_metadata) and ICC profile"}
REFUSALS = {400: {"description": "unreadable image, or too large for the output format"},
            404: {"description": "unknown model"},
            413: {"description": "too many pixels"}, 415: {"description": "unsupported format"},
            422: {"description": "absurd aspect ratio, or invalid parameters"},
            503: {"description": "busy or shutting down, retry later"}}


async def read_image(request: Request, settings: Settings, format: str) -> tuple[bytes, int]:
    """The uploaded image and its pixels, checked on its header before any work: 400, 413, 415, 422 as
    documented, and 400 when the output ``format`` cannot hold it."""
    data = await read_upload(request)
    _, width, height = check_header(data, settings.max_pixels, settings.max_aspect_ratio)
    check_output_size(format, width, height)
    return data, width * height


@contextmanager
def refused(metrics: Metrics, model: str | None) -> Iterator[None]:
    """Denoise failures inside the block as their HTTP answers (503 with Retry-After when busy, ...)."""
    try:
        yield
    except Exception as e:
        answer = refusal(e, model)
        if answer is None or answer is e:  # unexpected, or already an HTTP answer
            raise
        if isinstance(e, QueueFull):
            metrics.count_rejected()
        raise answer from None


def image_response(content: bytes, media_type: str, model_id: str, format: str, noise_sigma: float,
                   precision: str) -> Response:
    """A denoised image as ``/denoise`` answers it: ``X-Model-Id`` names the model that made it,
    ``X-Noise-Sigma`` the noise level estimated in the input (standard deviation, 0..255 scale),
    ``X-Precision`` the type the network's products ran in (float32, bfloat16, float16)."""
    return Response(content, media_type=media_type,
                    headers={"X-Model-Id": model_id, "X-Noise-Sigma": f"{noise_sigma:.1f}", "X-Precision": precision,
                             "Content-Disposition": f'inline; filename="denoised.{format}"'})


@router.post(
    "/denoise",
    summary="Denoise an image",
    response_class=Response,
    responses={200: IMAGE_RESPONSE, **REFUSALS},
    openapi_extra=IMAGE_BODY,
)
async def denoise(request: Request, settings: SettingsDep, queue: QueueDep, metrics: MetricsDep,
                  format: OutputFormat = "png", model: ModelId = None, strength: Strength = 1.0,
                  quality: Quality = 95, bits: Bits = None, strip_metadata: StripMetadata = False) -> Response:
    """The denoised image in ``format``: same size and mode, EXIF (unless ``strip_metadata``) and ICC
    profile kept; ``quality`` for jpeg and webp; ``bits=16`` for a 16-bit png or tiff."""
    output = output_options(format, quality, bits, strip_metadata, settings.png_compression)
    data, pixels = await read_image(request, settings, format)
    with refused(metrics, model):
        result = await queue.submit(data, format, model, disconnected=request.is_disconnected, pixels=pixels,
                                    strength=strength, output=output)
    metrics.count_image()
    return image_response(result.content, result.media_type, result.model_id, format, result.noise_sigma,
                          result.precision)
