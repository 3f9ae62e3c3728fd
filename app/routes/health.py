"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from ..deps import MetricsDep, QueueDep, RegistryDep, StoreDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "no model loaded yet"}})
def readyz(request: Request, registry: RegistryDep) -> JSONResponse:
    active = registry.active_id
    error = getattr(request.app.state, "startup_error", None)
    if active is None or (error and not registry.is_loaded(active)):
        return JSONResponse({"status": "not ready", "error": error or "no model loaded yet"}, status_code=503)
    return JSONResponse({"status": "ready", "model": active, "device": str(registry.device)})


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(metrics: MetricsDep, store: StoreDep, queue: QueueDep) -> PlainTextResponse:
    return PlainTextResponse(metrics.render(store.counts, queue.waiting),
                             media_type="text/plain; version=0.0.4; charset=utf-8")
