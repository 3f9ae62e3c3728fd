"""The n2n service: ``create_app()`` and the module-level ``app`` for ``uvicorn app.main:app``."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import torch
from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from n2n_core.inference.precision import resolve_precision
from n2n_core.inference.runtime import cores, release_memory, serial_thread, split_threads, tune_allocator
from n2n_core.training.train import resolve_device

from app.core.config import Settings, old_default_data_dir_note
from app.jobs.denoise import DenoiseJobs
from app.services.denoiser import DenoiseQueue
from app.api.errors import denoise_failure, install as install_error_handlers
from app.jobs.scheduler import Scheduler
from app.api.limits import BodyLimit, MinUploadRate
from app.core.messages import scrub_paths, without_paths
from app.core.metrics import Metrics
from app.services.registry import ModelRegistry
from app.api.security_headers import SecurityHeaders
from app.api.routes import datasets, denoise, denoise_jobs, health, models, page, preview, train
from app.api.routes import docs as api_docs
from app.core.shutdown import stop_on_signals
from app.store import DatasetRows, JobStore, StoreConfigError, open_store

log = logging.getLogger("n2n")
STATIC = Path(__file__).parent / "static"


class MetricsMiddleware:
    """Counts requests and latencies per route template (not per raw path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [500]

        async def send_wrapper(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(endpoint, scope.get("method", ""), status[0], time.perf_counter() - start)


def serial_io_thread() -> None:
    """A thread that decodes, encodes or loads: serial torch (``serial_thread``), gradients off."""
    serial_thread()
    torch.set_grad_enabled(False)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # torch works on several cores in the tile thread only; the event loop's thread and the pool
        # that decodes, encodes and loads stay serial (see n2n_core.inference.runtime.serial_thread)
        serial_io_thread()
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(thread_name_prefix="n2n-io", initializer=serial_io_thread))
        tune_allocator()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            db = open_store(settings.database, settings.data_dir)  # migrated to the newest schema
        except StoreConfigError as e:
            log.error("n2n: error: %s", e)  # one line, naming the setting, never the password
            raise
        # where the data lives, so that a service started from another folder never looks empty by surprise
        # (uvicorn's logger: shown at its --log-level, info by default)
        logging.getLogger("uvicorn.error").info("n2n: data dir %s; store %s", settings.data_dir,
                                                "PostgreSQL" if db.is_postgres else "SQLite in the data dir")
        if note := old_default_data_dir_note(settings.data_dir):
            logging.getLogger("uvicorn.error").warning("n2n: %s", note)
        device = resolve_device(settings.device)
        registry = ModelRegistry(settings.data_dir, device, settings.weights, cache_bytes=settings.model_cache_bytes,
                                 db=db)
        app.state.registry = registry
        app.state.store = store = JobStore(db)
        app.state.datasets = DatasetRows(db)
        stopping = threading.Event()
        host_threads = settings.threads or cores()

        def denoise_threads() -> int:  # all the cores, or what a training job beside us leaves
            scheduler = getattr(app.state, "scheduler", None)
            return split_threads(host_threads, bool(scheduler and scheduler.training), settings.train_threads)[0]

        app.state.queue = DenoiseQueue(registry, settings.queue_limit, settings.max_pixels, settings.tile_memory,
                                       settings.tile, settings.max_aspect_ratio, stopping, denoise_threads,
                                       settings.max_inflight_pixels,
                                       resolve_precision(settings.precision, registry.device),
                                       settings.memory_release_seconds, release_memory)
        app.state.denoise_jobs = jobs = DenoiseJobs(app.state.queue, settings.data_dir, settings.result_ttl_seconds,
                                                    app.state.metrics, results=settings.results_dir,
                                                    store_bytes=settings.result_store_bytes,
                                                    per_client=settings.max_jobs_per_client,
                                                    describe=denoise_failure)
        jobs.start()
        app.state.startup_error = None
        try:
            registry.load_startup_model()
        except Exception as e:  # noqa: BLE001 - reported by /readyz, the service stays up
            app.state.startup_error = without_paths(scrub_paths(f"{type(e).__name__}: {e}", settings.data_dir))
            log.error("could not load the startup model: %s", e)

        # Without the embedded worker, `n2n worker` processes run the jobs; this scheduler then only
        # settles jobs whose worker was lost.
        app.state.scheduler = scheduler = Scheduler.from_settings(store, settings, runs_jobs=settings.embedded_worker,
                                                                  beside_the_api=True)
        scheduler.start()
        try:
            with stop_on_signals(stopping, settings.shutdown_seconds):
                yield
        finally:
            app.state.queue.close()  # first: denoise work stops at its next tile
            await jobs.close()  # denoise jobs end as failed; their results are deleted
            scheduler.stop(timeout=min(10.0, settings.shutdown_seconds / 2))
            db.dispose()

    app = FastAPI(
        title="n2n",
        version="0.1.0",
        summary="Image denoising with a Noise2Noise network on a handmade framework.",
        description="POST an image to /denoise and get it back clean. Train your own model from noisy pairs with "
                    "/datasets and /train; manage models under /models. Changing anything needs "
                    "`Authorization: Bearer $N2N_API_TOKEN`.",
        lifespan=lifespan,
        docs_url=None,  # served from the app's own assets by routes/docs.py: no CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics = Metrics()
    app.add_middleware(BodyLimit, limit_for=lambda path: (
        (settings.max_dataset_bytes, "N2N_MAX_DATASET_BYTES") if path.startswith("/datasets")
        else (settings.max_upload_bytes, "N2N_MAX_UPLOAD_BYTES")))
    app.add_middleware(MinUploadRate, rate=settings.min_upload_bytes_per_second, grace=settings.upload_grace_seconds)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(SecurityHeaders)  # outermost: every answer, refusals of the limits above included
    install_error_handlers(app)
    for r in (denoise.router, denoise_jobs.router, train.router, models.router, health.router):
        app.include_router(r)
    app.include_router(datasets.router)
    for r in (preview.router, page.router):
        app.include_router(r)
    api_docs.install(app)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    return app


app = create_app()
