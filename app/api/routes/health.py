"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import shutil
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from app.core.config import Settings
from app.api.deps import DenoiseJobsDep, MetricsDep, QueueDep, RegistryDep, SettingsDep, StoreDep

router = APIRouter(tags=["health"])


@router.get("/healthz", responses={503: {"description": "the denoise worker is stuck"}})
def healthz(queue: QueueDep, settings: SettingsDep) -> JSONResponse:
    """Liveness: fails when the denoise worker has not finished a tile for N2N_WATCHDOG_SECONDS."""
    stuck = queue.stalled(settings.watchdog_seconds)
    if stuck is not None:
        return JSONResponse({"status": "stalled", "error": f"the denoise worker has made no progress for "
                                                           f"{stuck:.0f} s"}, status_code=503)
    return JSONResponse({"status": "ok"})


def _free_bytes(path: Path) -> int | None:
    """Free bytes on ``path``'s file system (its nearest existing parent); None when unknown."""
    for p in (path, *path.parents):
        try:
            return shutil.disk_usage(p).free
        except OSError:
            continue
    return None


def disk_report(settings: Settings) -> dict:
    """``disk``: free bytes of the data dir and of the result dir; ``low_disk``: a warning naming the settings
    whose file system has less than N2N_MIN_FREE_DISK_BYTES free, else null (readiness is not failed: a replica
    with little disk still denoises; the operator sees it here)."""
    free = {"data_dir_free_bytes": _free_bytes(settings.data_dir),
            "result_dir_free_bytes": _free_bytes(settings.results_dir)}
    low = [name for name, key in (("N2N_DATA_DIR", "data_dir_free_bytes"), ("N2N_RESULT_DIR", "result_dir_free_bytes"))
           if free[key] is not None and free[key] < settings.min_free_disk_bytes]
    warning = (f"low disk space: {' and '.join(low)} below N2N_MIN_FREE_DISK_BYTES "
               f"({settings.min_free_disk_bytes} bytes free)") if low else None
    return {"disk": free, "low_disk": warning}


@router.get("/readyz", responses={503: {"description": "no model loaded yet, or shutting down"}})
def readyz(request: Request, registry: RegistryDep, queue: QueueDep, settings: SettingsDep) -> JSONResponse:
    """Readiness. ``data_dir`` says where this replica keeps its data (N2N_DATA_DIR, absolute): the one
    server path an answer shows, for the operator who wonders where the jobs and models went. ``disk`` gives
    the free bytes of the data dir and the result dir, and ``low_disk`` a warning (else null) when either is
    below N2N_MIN_FREE_DISK_BYTES; that alone does not make the replica unready."""
    if queue.stopping.is_set():
        return JSONResponse({"status": "stopping", "error": "the service is shutting down"}, status_code=503)
    active = registry.active_id
    error = getattr(request.app.state, "startup_error", None)
    where = {"data_dir": str(settings.data_dir), **disk_report(settings)}
    if active is None or (error and not registry.is_loaded(active)):
        return JSONResponse({"status": "not ready", "error": error or "no model loaded yet", **where},
                            status_code=503)
    return JSONResponse({"status": "ready", "model": active, "device": str(registry.device),
                         "precision": queue.precision, **where})


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(metrics: MetricsDep, store: StoreDep, queue: QueueDep, registry: RegistryDep,
            jobs: DenoiseJobsDep) -> PlainTextResponse:
    return PlainTextResponse(metrics.render(store.counts, queue.waiting, queue.abandoned, len(registry.loaded_ids()),
                                            jobs.counts()),
                             media_type="text/plain; version=0.0.4; charset=utf-8")
