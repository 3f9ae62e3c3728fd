"""Training jobs: start, list, follow, cancel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response

from n2n_core.distributed import check_nproc, device_type_of
from n2n_core.models import DEFAULT_ARCH, arch_of, build, size_multiple
from n2n_core.noise import noise_from_dict
from n2n_core.serialize import read_metadata
from n2n_core.train_memory import machine_memory, training_memory

from ..config import Settings
from ..deps import Authorized, DatasetsDep, RegistryDep, SettingsDep, StoreDep
from ..jobs.store import JobStore
from ..model_names import default_name
from ..registry import ModelRegistry, UnknownModel
from ..schemas import Job, Message, TrainRequest, without_none

router = APIRouter(prefix="/train", tags=["train"])
MiB = 1024 * 1024
NOT_FOUND = {404: {"model": Message, "description": "unknown job"}}


@router.post("", status_code=202, response_model=Job, dependencies=[Authorized],
             responses={401: {"model": Message},
                        422: {"description": "invalid body, or a job whose memory estimate is over N2N_TRAIN_MEMORY"},
                        429: {"description": "N2N_MAX_QUEUED_JOBS jobs are already queued; retry after Retry-After"}})
def start(req: TrainRequest, response: Response, store: StoreDep, datasets: DatasetsDep,
          registry: RegistryDep, settings: SettingsDep) -> Job:
    """Queue a training job. The job records what it trains on: the dataset, its kind, and the noise added
    (``noise`` structured, ``noise_spec`` as `n2n train --noise` writes it) or none for noisy pairs."""
    _check_processes(req.nproc_per_node, settings)
    kind = "clean" if req.dataset == "builtin" else datasets.kind(req.dataset)
    if kind is None:
        raise HTTPException(422, f"unknown dataset {req.dataset!r}: use 'builtin' or an id from POST /datasets")
    if kind == "pairs":
        _check_pairs_options(req)
    init_weights = None
    if req.init_model is not None:
        req, init_weights = _with_init_arch(req, registry)
    _check_memory(req, settings)
    _check_queue(store, settings)
    params = req.model_dump()
    if init_weights is not None:
        params["init_weights"] = init_weights  # for the worker; not shown in responses (PRIVATE_PARAMS)
    params["name"] = req.name or default_name(params["arch"], req.dataset)
    params.update(_data_record(req.dataset, kind, without_none(params["noise"]), req.jpeg))
    job = store.create(params)
    response.headers["Location"] = f"/train/{job['id']}"
    return Job.from_row(job)


def train_memory_limit(settings: Settings) -> int | None:
    """N2N_TRAIN_MEMORY, else half of this machine's memory (None where it is unknown: no limit)."""
    if settings.train_memory is not None:
        return settings.train_memory
    total = machine_memory()
    return total // 2 if total else None


def _check_memory(req: TrainRequest, settings: Settings) -> None:
    """422 when the job's estimated memory (``n2n_core.train_memory``) is over N2N_TRAIN_MEMORY."""
    limit = train_memory_limit(settings)
    if limit is None:
        return
    arch = req.arch or DEFAULT_ARCH
    need = training_memory(arch, req.batch_size, req.patch_size, req.nproc_per_node)
    if need > limit:
        procs = f" in {req.nproc_per_node} processes" if req.nproc_per_node > 1 else ""
        raise HTTPException(422, f"this job would need about {need / MiB:,.0f} MiB (arch {arch!r}, batch_size "
                                 f"{req.batch_size}, patch_size {req.patch_size}{procs}), more than the "
                                 f"{limit / MiB:,.0f} MiB a training job may use (N2N_TRAIN_MEMORY); lower "
                                 "batch_size or patch_size")


def _check_queue(store: JobStore, settings: Settings) -> None:
    """429 with Retry-After when N2N_MAX_QUEUED_JOBS jobs already wait."""
    queued = store.counts().get("queued", 0)
    if queued >= settings.max_queued_jobs:
        raise HTTPException(429, f"{queued} training jobs are already queued, the most this service takes "
                                 "(N2N_MAX_QUEUED_JOBS); retry when one has started, or cancel one",
                            headers={"Retry-After": "60"})


def _check_pairs_options(req: TrainRequest) -> None:
    """422 when a job on noisy pairs asks for noise or JPEG inputs: nothing would be added to its images."""
    given = [field for field in ("noise", "jpeg") if field in req.model_fields_set and getattr(req, field) is not None]
    if given:
        raise HTTPException(422, f"dataset {req.dataset!r} holds noisy pairs (A/ and B/): their noise is in the "
                                 f"images, so {' and '.join(given)} does not apply; leave it out")


def _data_record(dataset: str, kind: str, noise: dict[str, Any], jpeg: str | None) -> dict[str, Any]:
    """What a job trains on, as its params record it: noise (structured and as a spec) on clean images,
    or none on noisy pairs; 422 when the core refuses the noise."""
    if kind == "pairs":
        return {"noise": None, "noise_spec": None, "data_kind": "pairs",
                "data": f"pairs {dataset}: noisy pairs (A/ and B/), no noise added"}
    try:
        spec = noise_from_dict(noise).spec()  # validated again by the core
    except (ValueError, TypeError) as e:
        raise HTTPException(422, f"invalid noise: {e}") from None
    inputs = f", half the inputs saved as JPEG of quality {jpeg}" if jpeg else ""
    return {"noise": noise, "noise_spec": spec, "data_kind": "clean",
            "data": f"clean {dataset}: clean images with {spec} noise added{inputs}"}


def _check_processes(nproc: int, settings: Settings) -> None:
    """422 when a data-parallel job asks for more processes than a worker host offers: N2N_MAX_NPROC_PER_NODE,
    else this host's devices (N2N_DEVICE: its GPUs, or its CPU cores)."""
    if nproc == 1:
        return
    if settings.max_nproc_per_node is not None:
        if nproc > settings.max_nproc_per_node:
            raise HTTPException(422, f"nproc_per_node={nproc} is more than the {settings.max_nproc_per_node} "
                                     "processes a worker host offers (N2N_MAX_NPROC_PER_NODE)")
        return
    try:
        check_nproc(nproc, device_type_of(settings.device))
    except ValueError as e:
        raise HTTPException(422, str(e)) from None


def _with_init_arch(req: TrainRequest, registry: ModelRegistry) -> tuple[TrainRequest, str]:
    """(the request with the init model's architecture filled in, its weights file); 422 when it cannot
    start from that model."""
    try:
        path = registry.entry(req.init_model).path
        arch = arch_of(read_metadata(path)[0])
    except UnknownModel:
        raise HTTPException(422, f"unknown init_model {req.init_model!r}: see GET /models") from None
    except ValueError:
        raise HTTPException(422, f"init_model {req.init_model!r} is not a readable weights file") from None
    if arch is None:
        raise HTTPException(422, f"init_model {req.init_model!r} is not one of the named architectures")
    if req.arch is not None and req.arch != arch:
        raise HTTPException(422, f"init_model {req.init_model!r} is a {arch!r} network, not {req.arch!r}")
    mult = size_multiple(build(arch))
    if req.patch_size % mult:
        raise HTTPException(422, f"patch_size must be a multiple of {mult} for arch {arch!r}")
    return req.model_copy(update={"arch": arch}), str(path)


@router.get("", response_model=list[Job])
def list_jobs(store: StoreDep) -> list[Job]:
    """All jobs, newest first."""
    return [Job.from_row(j) for j in store.list()]


@router.get("/{job_id}", response_model=Job, responses=NOT_FOUND)
def get_job(job_id: str, store: StoreDep) -> Job:
    job = store.get(job_id)
    if job is None:
        raise HTTPException(404, f"unknown job {job_id!r}")
    return Job.from_row(job)


@router.post("/{job_id}/cancel", status_code=202, response_model=Job, dependencies=[Authorized],
             responses={**NOT_FOUND, 401: {"model": Message}})
def cancel(job_id: str, store: StoreDep) -> Job:
    """Ask the job to stop: a queued job is cancelled at once, a running one within seconds.

    A job that already finished keeps its final state (returned as is).
    """
    job = store.get(job_id)
    if job is None:
        raise HTTPException(404, f"unknown job {job_id!r}")
    if job["status"] in ("succeeded", "failed", "cancelled"):
        return Job.from_row(job)
    return Job.from_row(store.request_cancel(job_id))  # type: ignore[arg-type]


@router.post("/{job_id}/resume", status_code=202, response_model=Job, dependencies=[Authorized],
             responses={**NOT_FOUND, 401: {"model": Message},
                        409: {"model": Message, "description": "the job is not cancelled"}})
def resume(job_id: str, store: StoreDep) -> Job:
    """Queue a cancelled job again: it goes on from its last checkpoint (the step it was cancelled at, or
    the checkpoint before it when its worker had to be stopped), with the same parameters. 409 for a job
    that is not cancelled."""
    job = store.get(job_id)
    if job is None:
        raise HTTPException(404, f"unknown job {job_id!r}")
    resumed = store.resume(job_id)
    if resumed is None:
        status = (store.get(job_id) or job)["status"]
        raise HTTPException(409, f"job {job_id!r} is {status}: only a cancelled job can be resumed")
    return Job.from_row(resumed)
