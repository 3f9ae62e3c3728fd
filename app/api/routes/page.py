"""What the web page needs besides the API: the limits it checks before uploading, and the favicon."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

from fastapi import APIRouter
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from n2n_core.data.images import FORMATS, RAW_FORMATS
from n2n_core.data.raw import GENERIC

from app.api.deps import SettingsDep
from app.api.routes.denoise import OutputFormatName

router = APIRouter(tags=["page"])
STATIC = Path(__file__).resolve().parents[2] / "static"
INPUT_MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "TIFF": "image/tiff", "WEBP": "image/webp",
                     "BMP": "image/bmp", "HEIF": "image/heic", "AVIF": "image/avif"}


class Limits(BaseModel):
    max_upload_bytes: int = Field(..., description="largest /denoise upload in bytes (N2N_MAX_UPLOAD_BYTES)")
    max_pixels: int = Field(..., description="largest image in pixels (N2N_MAX_PIXELS)")
    max_aspect_ratio: float = Field(..., description="long side over short side, at most (N2N_MAX_ASPECT_RATIO)")
    input_formats: list[str] = Field(..., description="image formats /denoise reads (camera RAW formats included: "
                                     "dng, cr2, nef, ...)")
    input_media_types: list[str] = Field(..., description="their media types")
    output_formats: list[str] = Field(..., description="formats /denoise can answer in (?format=)")
    page_job_pixels: int = Field(..., description="the web page sends photos above this many pixels to "
                                 "POST /denoise/jobs (N2N_PAGE_JOB_PIXELS)")


@router.get("/limits", response_model=Limits)
def limits(settings: SettingsDep) -> Limits:
    """The upload limits, so that a client can check a photo before sending it."""
    formats = sorted(FORMATS) + sorted(RAW_FORMATS - {GENERIC})
    return Limits(max_upload_bytes=settings.max_upload_bytes, max_pixels=settings.max_pixels,
                  max_aspect_ratio=settings.max_aspect_ratio, input_formats=[f.lower() for f in formats],
                  input_media_types=[INPUT_MEDIA_TYPES[f] for f in formats if f in INPUT_MEDIA_TYPES],
                  output_formats=list(get_args(OutputFormatName)),
                  page_job_pixels=settings.page_job_pixels)


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> FileResponse:
    return FileResponse(STATIC / "favicon.ico", media_type="image/x-icon",
                        headers={"Cache-Control": "public, max-age=86400"})
