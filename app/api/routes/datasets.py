"""Uploaded datasets: zips of images (kind "clean": clean photos for noise2noise with a noise model, or your
own noisy photos for neighbor2neighbor) or of A/ and B/ noisy pairs (kind "pairs")."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from app.services.datasets import DatasetError, ingest_zip
from app.api.deps import Authorized, DatasetsDep, SettingsDep
from app.api.errors import dataset_refusal
from app.api.schemas import DatasetInfo, Message
from app.api.routes.denoise import read_upload

router = APIRouter(prefix="/datasets", tags=["datasets"])

ZIP_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                       "properties": {"file": {"type": "string", "format": "binary"}}}},
    "application/zip": {"schema": {"type": "string", "format": "binary"}}}}}


@router.post("", status_code=201, response_model=DatasetInfo, dependencies=[Authorized], openapi_extra=ZIP_BODY,
             responses={400: {"model": Message}, 401: {"model": Message}, 413: {"model": Message}})
async def upload(request: Request, settings: SettingsDep, datasets: DatasetsDep) -> DatasetInfo:
    """Upload a zip: a flat folder of images (kind "clean": clean photos to train noise2noise on with a noise
    model, or your own noisy photos to train neighbor2neighbor on), or noisy pairs in A/ and B/ with matching
    names (kind "pairs")."""
    data = await read_upload(request, accept=("application/zip", "application/x-zip-compressed"))
    root = settings.data_dir / "datasets"
    try:
        info = await run_in_threadpool(ingest_zip, data, root, settings.max_dataset_files,
                                       settings.max_dataset_uncompressed, settings.max_compression_ratio,
                                       settings.max_pixels, settings.max_dataset_pixels)
    except DatasetError as e:
        raise dataset_refusal(e, settings.data_dir) from None
    await run_in_threadpool(datasets.add, info)
    return DatasetInfo(**info)


@router.get("", response_model=list[DatasetInfo])
def list_all(datasets: DatasetsDep) -> list[DatasetInfo]:
    return [DatasetInfo(**d) for d in datasets.all()]
