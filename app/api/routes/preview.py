"""POST /preview: the uploaded photo as an 8-bit PNG, for clients that cannot display its format (TIFF, HEIC,
camera RAW, unusual modes). Same size and orientation as the image /denoise answers, so before and after
align; a camera RAW is developed as /denoise develops it (linear, camera white balance, then the sRGB curve)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Annotated, BinaryIO

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from app.core.config import Settings
from app.api.deps import SettingsDep
from app.services.imaging import decode, encode
from app.api.uploads import spool_upload
from app.api.routes.denoise import IMAGE_BODY

router = APIRouter(tags=["denoise"])
REFUSALS = {400: {"description": "unreadable image"}, 413: {"description": "too many pixels, or too many bytes"},
            415: {"description": "unsupported format"}, 422: {"description": "absurd aspect ratio"},
            408: {"description": "the body arrived slower than N2N_MIN_UPLOAD_BYTES_PER_SECOND"}}


async def preview_slot(request: Request) -> asyncio.Semaphore:
    """Previews decode whole photos outside the denoise queue's pixel budget: one at a time bounds their memory
    (async: made on the event loop, so that two requests never make two)."""
    state = request.app.state
    if getattr(state, "preview_slot", None) is None:
        state.preview_slot = asyncio.Semaphore(1)
    return state.preview_slot


def _png(data: BinaryIO, settings: Settings) -> bytes:
    pic = decode(data, settings.max_pixels, settings.max_aspect_ratio)  # EXIF orientation applied, as /denoise does
    content, _ = encode(replace(pic, bits=8), "png")
    return content


@router.post(
    "/preview",
    summary="The uploaded image as an 8-bit PNG",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "the image, oriented, as an 8-bit PNG"},
               **REFUSALS},
    openapi_extra=IMAGE_BODY,
)
async def preview(request: Request, settings: SettingsDep,
                  slot: Annotated[asyncio.Semaphore, Depends(preview_slot)]) -> Response:
    """The image as a browser displays it: decoded like `POST /denoise` decodes it (EXIF orientation applied,
    16 bits reduced to 8), written as PNG. Nothing is denoised."""
    spool = await spool_upload(request)  # read by the decoder, one preview at a time
    try:
        async with slot:
            content = await run_in_threadpool(_png, spool, settings)
    finally:
        spool.close()
    return Response(content, media_type="image/png", headers={"Cache-Control": "no-store"})
