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
    if registry.active_id is None:
        error = getattr(request.app.state, "startup_error", None)
        return JSONResponse({"status": "loading", "error": error}, status_code=503)
    return JSONResponse({"status": "ready", "model": registry.active_id, "device": str(registry.device)})


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(metrics: MetricsDep, store: StoreDep, queue: QueueDep) -> PlainTextResponse:
    return PlainTextResponse(metrics.render(store.counts, queue.waiting),
                             media_type="text/plain; version=0.0.4; charset=utf-8")
