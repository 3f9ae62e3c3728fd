"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from ..deps import DenoiseJobsDep, MetricsDep, QueueDep, RegistryDep, SettingsDep, StoreDep

router = APIRouter(tags=["health"])


@router.get("/healthz", responses={503: {"description": "the denoise worker is stuck"}})
def healthz(queue: QueueDep, settings: SettingsDep) -> JSONResponse:
    """Liveness: fails when the denoise worker has not finished a tile for N2N_WATCHDOG_SECONDS."""
    stuck = queue.stalled(settings.watchdog_seconds)
    if stuck is not None:
        return JSONResponse({"status": "stalled", "error": f"the denoise worker has made no progress for "
                                                           f"{stuck:.0f} s"}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/readyz", responses={503: {"description": "no model loaded yet, or shutting down"}})
def readyz(request: Request, registry: RegistryDep, queue: QueueDep) -> JSONResponse:
    if queue.stopping.is_set():
        return JSONResponse({"status": "stopping", "error": "the service is shutting down"}, status_code=503)
    active = registry.active_id
    error = getattr(request.app.state, "startup_error", None)
    if active is None or (error and not registry.is_loaded(active)):
        return JSONResponse({"status": "not ready", "error": error or "no model loaded yet"}, status_code=503)
    return JSONResponse({"status": "ready", "model": active, "device": str(registry.device),
                         "precision": queue.precision})


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(metrics: MetricsDep, store: StoreDep, queue: QueueDep, registry: RegistryDep,
            jobs: DenoiseJobsDep) -> PlainTextResponse:
    return PlainTextResponse(metrics.render(store.counts, queue.waiting, queue.abandoned, len(registry.loaded_ids()),
                                            jobs.counts()),
                             media_type="text/plain; version=0.0.4; charset=utf-8")
