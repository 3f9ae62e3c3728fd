"""POST /denoise: an image in, the denoised image out (same size and mode)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response

from ..deps import MetricsDep, QueueDep, SettingsDep
from ..denoiser import Abandoned, QueueFull, Stopping
from ..imaging import check_header, check_output_size
from ..registry import BrokenModel, NoActiveModel, UnknownModel

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


@router.post(
    "/denoise",
    summary="Denoise an image",
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}},
                     "description": "the denoised image, same size and mode"},
               400: {"description": "unreadable image, or too large for the output format"},
               413: {"description": "too many pixels"}, 415: {"description": "unsupported format"},
               422: {"description": "absurd aspect ratio, or invalid parameters"},
               503: {"description": "busy or shutting down, retry later"}},
    openapi_extra=IMAGE_BODY,
)
async def denoise(
    request: Request,
    settings: SettingsDep,
    queue: QueueDep,
    metrics: MetricsDep,
    format: Literal["png", "jpeg", "webp"] = Query("png", description="output format"),
    model: str | None = Query(None, max_length=64, description="registered model id (default: the active one)"),
) -> Response:
    data = await read_upload(request)
    _, width, height = check_header(data, settings.max_pixels, settings.max_aspect_ratio)
    check_output_size(format, width, height)
    try:
        result = await queue.submit(data, format, model, disconnected=request.is_disconnected,
                                    pixels=width * height)
    except QueueFull:
        metrics.count_rejected()
        raise HTTPException(503, "the denoising queue is full; retry shortly", headers={"Retry-After": "2"}) from None
    except Stopping:
        raise HTTPException(503, "the service is shutting down; retry on another instance or shortly",
                            headers={"Retry-After": "5", "Connection": "close"}) from None
    except Abandoned:  # the client is gone; this answer reaches nobody
        raise HTTPException(499, "client closed the request") from None
    except UnknownModel:
        raise HTTPException(404, f"unknown model {model!r}; see GET /models") from None
    except (NoActiveModel, BrokenModel) as e:
        raise HTTPException(503, f"{e}; activate a working model (POST /models/ID/activate)",
                            headers={"Retry-After": "10"}) from None
    metrics.count_image()
    return Response(result.content, media_type=result.media_type,
                    headers={"X-Model-Id": result.model_id,
                             "Content-Disposition": f'inline; filename="denoised.{format}"'})
