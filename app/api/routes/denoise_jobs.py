"""Asynchronous denoise jobs, for photos too large to wait for: POST, poll, then fetch the result."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Request, Response

from app.api.errors import store_refusal
from app.jobs.denoise import DenoiseJob, DenoiseJobs, StoreFull
from app.services.imaging import output_format, output_options
from app.api.deps import DenoiseJobsDep, MetricsDep, RegistryDep, SettingsDep
from app.services.registry import ModelRegistry, NoActiveModel
from app.api.schemas import DenoiseJobAccepted, DenoiseJobInfo
from app.api.routes.denoise import (
    IMAGE_BODY,
    IMAGE_RESPONSE,
    REFUSALS,
    Bits,
    ModelId,
    OutputFormat,
    Quality,
    Strength,
    StripMetadata,
    image_response,
    model_for,
    read_image,
    refused,
)

router = APIRouter(tags=["denoise"])
UNKNOWN = {404: {"description": "unknown or expired job"}}
QUOTAS = {429: {"description": "this client address has N2N_MAX_JOBS_PER_CLIENT jobs unfinished or kept; "
                               "see Retry-After"},
          507: {"description": "the result store is full (N2N_RESULT_STORE_BYTES); Retry-After: when the oldest "
                               "result expires"}}


def _check_model(registry: ModelRegistry, model: str | None) -> str:
    """The id of the model that will denoise (the active one for None); UnknownModel or NoActiveModel now,
    rather than as a failed job later."""
    if model is not None:
        registry.entry(model)
        return model
    active = registry.active_id
    if active is None:
        raise NoActiveModel("no model is active")
    return active


def client_address(request: Request) -> str:
    """The client's address, as the server sees it (behind a proxy: run uvicorn with --proxy-headers)."""
    return request.client.host if request.client is not None else "unknown"


@router.post(
    "/denoise/jobs",
    summary="Denoise an image in the background",
    status_code=202,
    response_model=DenoiseJobAccepted,
    responses={202: {"description": "accepted: poll the job at its Location"}, **REFUSALS, **QUOTAS},
    openapi_extra=IMAGE_BODY,
)
async def submit_job(request: Request, response: Response, settings: SettingsDep, registry: RegistryDep,
                     jobs: DenoiseJobsDep, metrics: MetricsDep, format: OutputFormat = "auto",
                     model: ModelId = None, strength: Strength = 1.0, quality: Quality = None, bits: Bits = None,
                     strip_metadata: StripMetadata = False) -> DenoiseJobAccepted:
    """Like `POST /denoise` (same body, parameters and refusals), but answers at once with a job to poll;
    its result is kept for N2N_RESULT_TTL_SECONDS after it ends."""
    output = output_options(output_format(format, "PNG"), quality, bits, strip_metadata, settings.png_compression)
    upload = await read_image(request, settings, format, bits)
    model = model_for(upload.input_format, model)
    with refused(metrics, model):
        model_id = await asyncio.to_thread(_check_model, registry, model)
        try:
            job = jobs.submit(upload.data, upload.output_format, model, upload.pixels, strength, output=output,
                              client=client_address(request), model_id=model_id, filename=upload.filename)
        except StoreFull as e:
            raise store_refusal(e) from None
    if await request.is_disconnected():  # the client gave up (the page's Cancel) after its upload: no one
        jobs.cancel(job.id)              # would ever learn this job's id, so it would hold the quota until it expired
        raise HTTPException(400, "the client disconnected before the job was accepted; it was dropped")
    response.headers["Location"] = f"/denoise/jobs/{job.id}"
    return DenoiseJobAccepted(id=job.id, status="queued")


def _job(jobs: DenoiseJobs, job_id: str) -> DenoiseJob:
    job = jobs.get(job_id)
    if job is None:
        raise HTTPException(404, "unknown denoise job, or its result has expired (N2N_RESULT_TTL_SECONDS)")
    return job


@router.get("/denoise/jobs/{job_id}", response_model=DenoiseJobInfo, responses=UNKNOWN)
async def get_job(job_id: str, jobs: DenoiseJobsDep) -> DenoiseJobInfo:
    """Status (queued, running, succeeded, failed), progress in tiles, error and times."""
    return DenoiseJobInfo.from_job(_job(jobs, job_id))


@router.get(
    "/denoise/jobs/{job_id}/result",
    response_class=Response,
    responses={200: IMAGE_RESPONSE, **UNKNOWN, 409: {"description": "the job has not succeeded (yet)"}},
)
async def get_result(job_id: str, jobs: DenoiseJobsDep) -> Response:
    """The denoised image, as `POST /denoise` answers it (named after the uploaded file: `IMG_1000.jpg` ->
    `IMG_1000-denoised.jpg`, else `denoised.<format>`); 409 until the job has succeeded."""
    job = _job(jobs, job_id)
    if job.status == "failed":
        raise HTTPException(409, f"the job failed: {job.error}")
    if job.status != "succeeded" or job.path is None:
        done, total = job.progress
        where = f"{done} of {total} tiles done" if total else "its tile count is not known yet"
        raise HTTPException(409, f"the job is {job.status} ({where}); poll "
                                 f"GET /denoise/jobs/{job.id} until it has succeeded")
    try:
        content = await asyncio.to_thread(job.path.read_bytes)
    except FileNotFoundError:
        raise HTTPException(404, "the result of this job has been deleted") from None
    response = image_response(content, job.media_type or "application/octet-stream", job.model_id or "",
                              job.format, job.noise_sigma or 0.0, job.precision or "float32")
    if job.download_name:  # named after the upload when the job was created (a job without one: denoised.<fmt>)
        response.headers["Content-Disposition"] = f'inline; filename="{job.download_name}"'
    return response


@router.delete("/denoise/jobs/{job_id}", status_code=204, response_class=Response, responses=UNKNOWN)
async def cancel_job(job_id: str, jobs: DenoiseJobsDep) -> Response:
    """Cancel a job: its work stops at the next tile, its result (if any) is deleted and the job forgotten
    (GET then answers 404). No token needed: the job's id is the only key to it."""
    if not jobs.cancel(job_id):
        _job(jobs, job_id)  # the same 404 as GET
    return Response(status_code=204)
