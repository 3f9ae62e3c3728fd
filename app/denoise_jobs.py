"""Asynchronous denoise jobs: a large photo is accepted at once, denoised in the background through the
same ``DenoiseQueue`` as ``POST /denoise`` (same line, same limit, same round-robin tiles), and its
result kept as a file under ``N2N_DATA_DIR/results/`` for ``N2N_RESULT_TTL_SECONDS``.

A job's state lives in this process's memory (jobs belong to the replica that accepted them); its id
is 128 random bits, the only key to its result. Every method runs on the event loop's thread, except
the progress callback, which the tile thread calls (it sets one tuple). Finished jobs, and their files,
are forgotten ``ttl`` seconds after they end: on every access and by a periodic sweep, which also
deletes files no job of this process owns (left by a crash) once they are older than ``ttl``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from n2n_core.atomic import atomic_write_bytes

from .denoiser import DenoiseQueue, Slot, refusal
from .imaging import OutputOptions
from .messages import scrub_paths, without_paths
from .metrics import Metrics

log = logging.getLogger("n2n")
STATUSES = ("queued", "running", "succeeded", "failed")
JOB_ID = re.compile(r"[A-Za-z0-9_-]{22}")  # secrets.token_urlsafe(16): 128 random bits
STOPPED = "the service stopped before the job finished; submit it again"


@dataclass
class DenoiseJob:
    id: str
    format: str
    model: str | None  # as asked; None: the active model
    created_at: float  # wall-clock seconds, like the other times
    strength: float = 1.0
    output: OutputOptions | None = None  # quality, bits, strip_metadata (None: the defaults)
    status: str = "queued"
    progress: tuple[int, int] = (0, 0)  # (done, total) tiles: one tuple, so that a reader never sees half
    error: str | None = None
    model_id: str | None = None  # the model that made the result
    noise_sigma: float | None = None  # the input's estimated noise level (0..255), once succeeded
    precision: str | None = None  # the type the network's products ran in, once succeeded
    media_type: str | None = None
    path: Path | None = None  # the result file, once succeeded
    started_at: float | None = None
    finished_at: float | None = None
    expires_at: float | None = None
    slot: Slot | None = field(default=None, repr=False)


class DenoiseJobs:
    def __init__(self, queue: DenoiseQueue, data_dir: Path, ttl: float, metrics: Metrics | None = None) -> None:
        self.queue, self.data_dir, self.ttl, self.metrics = queue, data_dir, ttl, metrics
        self.results = data_dir / "results"
        self._jobs: dict[str, DenoiseJob] = {}
        self._tasks: set[asyncio.Task] = set()
        self._sweeper: asyncio.Task | None = None

    # -- submission and lookup ------------------------------------------------------------------
    def submit(self, data: bytes, fmt: str, model: str | None, pixels: int, strength: float = 1.0,
               output: OutputOptions | None = None) -> DenoiseJob:
        """A queued job, already running in the background; QueueFull or Stopping as ``DenoiseQueue.admit``."""
        self.sweep()
        slot = self.queue.admit(pixels)
        job = DenoiseJob(secrets.token_urlsafe(16), fmt, model, time.time(), strength, output, slot=slot)
        self._jobs[job.id] = job
        task = asyncio.get_running_loop().create_task(self._run(job, data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    def get(self, job_id: str) -> DenoiseJob | None:
        """The job, or None when it is unknown or expired (an id of the wrong shape is never looked up)."""
        if not JOB_ID.fullmatch(job_id):
            return None
        self.sweep()
        return self._jobs.get(job_id)

    def counts(self) -> dict[str, int]:
        """Jobs held now, by status (safe from any thread: it reads a copy)."""
        counts = dict.fromkeys(STATUSES, 0)
        for job in list(self._jobs.values()):
            counts[job.status] += 1
        return counts

    # -- running -----------------------------------------------------------------------------------
    async def _run(self, job: DenoiseJob, data: bytes) -> None:
        job.status, job.started_at = "running", time.time()

        def progress(done: int, total: int) -> None:
            job.progress = (done, total)

        try:
            result = await self.queue.run(job.slot, data, job.format, job.model, progress=progress,
                                          strength=job.strength, output=job.output)
            del data
            path = self.results / f"{job.id}.{job.format}"
            await asyncio.to_thread(atomic_write_bytes, path, result.content)
        except asyncio.CancelledError:
            self._finish(job, "failed", STOPPED)
            raise
        except Exception as e:  # noqa: BLE001 - a job's failure is its status, never the loop's
            self._finish(job, "failed", self._describe(e, job))
            return
        job.model_id, job.media_type, job.path = result.model_id, result.media_type, path
        job.noise_sigma, job.precision = result.noise_sigma, result.precision
        self._finish(job, "succeeded")
        if self.metrics is not None:
            self.metrics.count_image()

    def _describe(self, exc: Exception, job: DenoiseJob) -> str:
        answer = refusal(exc, job.model)
        if answer is not None:
            return str(answer.detail)
        if isinstance(exc, OSError):
            what = "could not store the result"
        else:
            log.error("denoise job failed", exc_info=exc)
            what = "internal error while denoising"
        return without_paths(scrub_paths(f"{what}: {type(exc).__name__}: {exc}", self.data_dir))

    def _finish(self, job: DenoiseJob, status: str, error: str | None = None) -> None:
        if job.slot is not None:
            self.queue.release(job.slot)  # run() did already, unless the job was cancelled before it began
            job.slot = None
        job.status, job.error = status, error
        job.finished_at = time.time()
        job.expires_at = job.finished_at + self.ttl
        if self.metrics is not None:
            self.metrics.count_denoise_job(status)

    # -- expiry ------------------------------------------------------------------------------------
    def sweep(self) -> None:
        """Forget finished jobs older than ``ttl``, and delete their files."""
        now = time.time()
        for job in [j for j in self._jobs.values() if j.expires_at is not None and j.expires_at <= now]:
            self._forget(job)

    def _forget(self, job: DenoiseJob) -> None:
        self._jobs.pop(job.id, None)
        if job.path is not None:
            try:
                job.path.unlink(missing_ok=True)
            except OSError as e:
                log.warning("could not delete an expired denoise result: %s", e)

    def _sweep_orphans(self, owned: set[str]) -> None:
        """Delete files under results/ older than ``ttl`` that no job in ``owned`` (ids) may still write or serve."""
        cutoff = time.time() - self.ttl
        try:
            entries = list(self.results.iterdir())
        except OSError:
            return
        for f in entries:
            if f.name.lstrip(".").split(".")[0] in owned:
                continue
            try:
                if f.is_file() and f.stat().st_mtime <= cutoff:
                    f.unlink(missing_ok=True)
            except OSError:
                continue

    async def _sweep_forever(self) -> None:
        every = max(0.1, min(60.0, self.ttl / 2))
        while True:
            self.sweep()
            await asyncio.to_thread(self._sweep_orphans, set(self._jobs))
            await asyncio.sleep(every)

    # -- life ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Begin the periodic sweep (call on the event loop)."""
        self.results.mkdir(parents=True, exist_ok=True)
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def close(self) -> None:
        """Stop: cancel the jobs still running (after ``queue.close()`` they end at their next tile anyway)
        and delete this process's results, which no one can ask for once it has gone."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for job in list(self._jobs.values()):
            if job.slot is not None:  # cancelled before it began
                self._finish(job, "failed", STOPPED)
            self._forget(job)
