"""Training jobs: start, list, follow, cancel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response

from n2n_core.training.distributed import check_nproc, device_type_of
from n2n_core.models import DEFAULT_ARCH
from n2n_core.data.noise import noise_from_dict
from n2n_core.nn.serialize import read_metadata
from n2n_core.training.train import arch_of_weights
from n2n_core.training.memory import machine_memory, training_memory

from app.core.config import Settings
from app.api.deps import Authorized, DatasetsDep, RegistryDep, SettingsDep, StoreDep
from app.services.model_names import default_name
from app.services.registry import ModelRegistry, UnknownModel
from app.api.schemas import Job, JobStatuses, Message, TrainRequest, without_none
from app.store import JobStatus, JobStore, statuses_document

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
    (``noise`` structured, ``noise_spec`` as `n2n train --noise` writes it) or none for noisy pairs and for
    single noisy photos (``method`` neighbor2neighbor on an uploaded dataset)."""
    _check_processes(req.nproc_per_node, settings)
    kind = "clean" if req.dataset == "builtin" else datasets.kind(req.dataset)
    if kind is None:
        raise HTTPException(422, f"unknown dataset {req.dataset!r}: use 'builtin' or an id from POST /datasets")
    if req.method == "neighbor2neighbor":
        _check_singles_options(req, kind)
        kind = "singles"
    elif kind == "pairs":
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
    if req.method != "neighbor2neighbor":
        params["gamma"] = params["cell"] = None  # neighbor2neighbor's settings: none for noise2noise
    params.update(_data_record(req.dataset, kind, without_none(params["noise"]), req.jpeg))
    job = store.create(params)
    response.headers["Location"] = f"/train/{job.id}"
    return Job.from_row(job)


def train_memory_limit(settings: Settings) -> int | None:
    """N2N_TRAIN_MEMORY, else half of this machine's memory (None where it is unknown: no limit)."""
    if settings.train_memory is not None:
        return settings.train_memory
    total = machine_memory()
    return total // 2 if total else None


def _check_memory(req: TrainRequest, settings: Settings) -> None:
    """422 when the job's estimated memory (``n2n_core.training.memory``) is over N2N_TRAIN_MEMORY."""
    limit = train_memory_limit(settings)
    if limit is None:
        return
    arch = req.arch or DEFAULT_ARCH
    # neighbor2neighbor trains the network on sub-images of patch_size / cell a side, after a forward pass
    # without gradients on the whole patch (its activations freed before the training pass): the estimate of
    # a noise2noise step on the whole patch (forward and backward at patch_size) bounds both, so it is the
    # one taken whatever the method.
    need = training_memory(arch, req.batch_size, req.patch_size, req.nproc_per_node)
    if need > limit:
        procs = f" in {req.nproc_per_node} processes" if req.nproc_per_node > 1 else ""
        raise HTTPException(422, f"this job would need about {need / MiB:,.0f} MiB (arch {arch!r}, batch_size "
                                 f"{req.batch_size}, patch_size {req.patch_size}{procs}), more than the "
                                 f"{limit / MiB:,.0f} MiB a training job may use (N2N_TRAIN_MEMORY); lower "
                                 "batch_size or patch_size")


def _check_queue(store: JobStore, settings: Settings) -> None:
    """429 with Retry-After when N2N_MAX_QUEUED_JOBS jobs already wait."""
    queued = store.counts().get(JobStatus.QUEUED, 0)
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


def _check_singles_options(req: TrainRequest, kind: str) -> None:
    """422 when a neighbor2neighbor job cannot train on its dataset as single noisy photos: a dataset of
    pairs; ``noise`` set on an uploaded dataset (its photos are noisy already: nothing is added); ``jpeg``."""
    if kind == "pairs":
        raise HTTPException(422, f"dataset {req.dataset!r} holds noisy pairs (A/ and B/): method neighbor2neighbor "
                                 "trains on single noisy photos; upload a zip of your noisy photos (a flat folder "
                                 "of images), or train on these pairs with method noise2noise")
    if "jpeg" in req.model_fields_set and req.jpeg is not None:
        raise HTTPException(422, "jpeg does not apply to method neighbor2neighbor (it trains on the photos as "
                                 "they are); leave it out")
    if req.dataset != "builtin" and "noise" in req.model_fields_set:
        raise HTTPException(422, f"noise does not apply to method neighbor2neighbor on dataset {req.dataset!r}: "
                                 "its images are taken as your noisy photos, and nothing is added to them; leave "
                                 "it out (on 'builtin', noise is the one draw made on each photograph)")


def _data_record(dataset: str, kind: str, noise: dict[str, Any], jpeg: str | None) -> dict[str, Any]:
    """What a job trains on, as its params record it: noise (structured and as a spec) on clean images,
    none on noisy pairs, and on single noisy photos (neighbor2neighbor) none, or the one draw made on each
    builtin photograph; 422 when the core refuses the noise."""
    if kind == "pairs":
        return {"noise": None, "noise_spec": None, "data_kind": "pairs",
                "data": f"pairs {dataset}: noisy pairs (A/ and B/), no noise added"}
    if kind == "singles" and dataset != "builtin":
        return {"noise": None, "noise_spec": None, "data_kind": "singles",
                "data": f"singles {dataset}: single noisy photos (neighbor2neighbor), no noise added"}
    try:
        spec = noise_from_dict(noise).spec()  # validated again by the core
    except (ValueError, TypeError) as e:
        raise HTTPException(422, f"invalid noise: {e}") from None
    if kind == "singles":
        return {"noise": noise, "noise_spec": spec, "data_kind": "singles",
                "data": f"singles {dataset}: single noisy photos (neighbor2neighbor), one fixed {spec} noise draw "
                        "on each builtin photograph"}
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
    except UnknownModel:
        raise HTTPException(422, f"unknown init_model {req.init_model!r}: see GET /models") from None
    try:
        read_metadata(path)  # a readable weights file (its header), before the network is built
    except ValueError:
        raise HTTPException(422, f"init_model {req.init_model!r} is not a readable weights file") from None
    try:
        # the named architecture it trains as, seen through inference wrappers (e.g. 'blind', noise-adaptive
        # around unet-l), as `n2n train --init` finds it
        arch: str | None = arch_of_weights(str(path))
    except ValueError:
        arch = None
    if arch is None:
        raise HTTPException(422, f"init_model {req.init_model!r} is not one of the named architectures, nor a "
                                 "wrapper around one")
    if req.arch is not None and req.arch != arch:
        raise HTTPException(422, f"init_model {req.init_model!r} is a {arch!r} network, not {req.arch!r}")
    problem = req.patch_problem(arch)
    if problem:
        raise HTTPException(422, problem)
    return req.model_copy(update={"arch": arch}), str(path)


@router.get("", response_model=list[Job])
def list_jobs(store: StoreDep) -> list[Job]:
    """All jobs, newest first."""
    return [Job.from_row(j) for j in store.list()]


@router.get("/statuses", response_model=JobStatuses)  # before /{job_id}, which would take "statuses"
def statuses() -> JobStatuses:
    """Every status a training job can have, in its life's order, and the final ones (a job in a final
    status changes no more, unless a cancelled one is resumed)."""
    return JobStatuses(**statuses_document())


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
    if job.finished:
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
        status = (store.get(job_id) or job).status
        raise HTTPException(409, f"job {job_id!r} is {status}: only a cancelled job can be resumed")
    return Job.from_row(resumed)
