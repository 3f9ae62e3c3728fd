"""Asynchronous denoise jobs: a large photo is accepted at once, denoised in the background through the
same ``DenoiseQueue`` as ``POST /denoise`` (same line, same limit, same round-robin tiles), and its
result kept as a file under ``N2N_RESULT_DIR`` (default ``N2N_DATA_DIR/results/``) for ``N2N_RESULT_TTL_SECONDS``.

``DELETE /denoise/jobs/{id}`` cancels a job: its cancel event stops the work at the next tile, the job is
forgotten at once and its result file (if any) deleted. Results are held to a quota: the bytes kept plus those
reserved by unfinished jobs stay under ``N2N_RESULT_STORE_BYTES`` (``StoreFull``, 507), and one client address
has at most ``N2N_MAX_JOBS_PER_CLIENT`` unfinished or kept jobs (``TooManyJobs``, 429). A kept result is never
evicted early: both refusals say when the oldest one expires.

A job's state lives in this process's memory (jobs belong to the replica that accepted them); its id
is 128 random bits, the only key to its result. Every method runs on the event loop's thread, except
the progress callback, which the tile thread calls (it sets one tuple). Finished jobs, and their files,
are forgotten ``ttl`` seconds after they end: on every access and by a periodic sweep, which also
deletes files no job of this process owns (left by a crash) once they are older than ``ttl``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from n2n_core.nn.atomic import atomic_write_bytes

from app.services.denoiser import Abandoned, DenoiseQueue, Slot
from app.services.imaging import OutputOptions, download_name
from app.core.messages import scrub_paths, without_paths
from app.core.metrics import Metrics

log = logging.getLogger("n2n")
STATUSES = ("queued", "running", "succeeded", "failed")
JOB_ID = re.compile(r"[A-Za-z0-9_-]{22}")  # secrets.token_urlsafe(16): 128 random bits
STOPPED = "the service stopped before the job finished; submit it again"
RETRY_UNFINISHED = 30  # Retry-After (s) when only unfinished jobs hold the quota: they end, then are measured
RESULT_OVERHEAD = 256 * 1024  # bytes reserved beyond the raw pixels: headers, EXIF, ICC, poor compression


class StoreFull(Exception):
    """The result store would exceed N2N_RESULT_STORE_BYTES; ``retry_after``: seconds until space frees."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyJobs(StoreFull):
    """One client address holds N2N_MAX_JOBS_PER_CLIENT unfinished or kept jobs already."""


EIGHT_BIT_ONLY = frozenset({"jpeg", "jpg", "webp", "heic", "avif"})  # formats whose answers hold 8-bit samples


def reserve_bytes(pixels: int, fmt: str = "png") -> int:
    """An upper bound of a result's size: RGBA samples uncompressed (16-bit, or 8-bit for the formats that only
    hold 8), plus headers and metadata."""
    return pixels * (4 if fmt.lower() in EIGHT_BIT_ONLY else 8) + RESULT_OVERHEAD


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
    client: str = ""  # the address that submitted it (for N2N_MAX_JOBS_PER_CLIENT)
    reserved: int = 0  # bytes held in the quota: an upper bound until it ends, then its result's size
    download_name: str | None = None  # the result's file name, from the upload's (``imaging.download_name``:
    # base name only, safe characters, bounded); None (no name sent): ``denoised.<format>``
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    def eta_seconds(self, now: float | None = None) -> float | None:
        """Seconds left, from the pace of the tiles done so far; None until the first tile is done, 0 once ended."""
        if self.finished_at is not None:
            return 0.0
        done, total = self.progress
        if not done or not total or self.started_at is None:
            return None
        elapsed = max(0.0, (time.time() if now is None else now) - self.started_at)
        return round(elapsed / done * (total - done), 1)


Describe = Callable[[BaseException, str | None], str | None]


class DenoiseJobs:
    """``describe(exc, model)``: the error a job that failed with ``exc`` reports, as ``POST /denoise`` would
    have answered it (``app.api.errors.denoise_failure``, handed in by the app: jobs know nothing of HTTP);
    None for an unexpected failure, reported as an internal error."""

    def __init__(self, queue: DenoiseQueue, data_dir: Path, ttl: float, metrics: Metrics | None = None,
                 results: Path | None = None, store_bytes: int | None = None, per_client: int | None = None,
                 describe: Describe | None = None) -> None:
        self.queue, self.data_dir, self.ttl, self.metrics = queue, data_dir, ttl, metrics
        self.describe = describe
        self.results = results or data_dir / "results"
        self.store_bytes, self.per_client = store_bytes, per_client
        self._jobs: dict[str, DenoiseJob] = {}
        self._tasks: set[asyncio.Task] = set()
        self._sweeper: asyncio.Task | None = None

    # -- submission and lookup ------------------------------------------------------------------
    def submit(self, data: bytes, fmt: str, model: str | None, pixels: int, strength: float = 1.0,
               output: OutputOptions | None = None, client: str = "", model_id: str | None = None,
               filename: str | None = None) -> DenoiseJob:
        """A queued job, already running in the background; TooManyJobs or StoreFull past the quotas, QueueFull
        or Stopping as ``DenoiseQueue.admit``. ``model_id``: the model resolved now, reported from the start;
        ``filename``: the name the client gave the upload, kept only as its result's sanitised download name
        (``IMG_1000.jpg`` -> ``IMG_1000-denoised.jpg``)."""
        self.sweep()
        reserved = reserve_bytes(pixels, fmt)
        self._check_quota(client, reserved)
        slot = self.queue.admit(pixels)
        job = DenoiseJob(secrets.token_urlsafe(16), fmt, model, time.time(), strength, output, slot=slot,
                         model_id=model_id, client=client, reserved=reserved,
                         download_name=download_name(filename, fmt) if filename else None)
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

    def cancel(self, job_id: str) -> bool:
        """Cancel a job: its work stops at the next tile, it is forgotten at once (GET answers 404) and its
        result file, if written, deleted. False when it is unknown or expired."""
        job = self.get(job_id)
        if job is None:
            return False
        job.cancel.set()
        self._forget(job)
        return True

    # -- quota -------------------------------------------------------------------------------------
    def _retry_after(self, jobs: list[DenoiseJob]) -> int:
        """Seconds until the first of ``jobs`` that has ended expires (RETRY_UNFINISHED when none has)."""
        ends = [j.expires_at for j in jobs if j.expires_at is not None]
        if not ends:
            return RETRY_UNFINISHED
        return max(1, math.ceil(min(ends) - time.time()))

    def held_bytes(self) -> int:
        """Bytes of kept results plus those reserved by unfinished jobs."""
        return sum(j.reserved for j in list(self._jobs.values()))

    def _check_quota(self, client: str, reserved: int) -> None:
        """TooManyJobs when ``client`` holds N2N_MAX_JOBS_PER_CLIENT jobs unfinished or kept (a failed job keeps
        nothing); StoreFull when ``reserved`` more bytes would take the store past N2N_RESULT_STORE_BYTES."""
        if self.per_client is not None:
            mine = [j for j in self._jobs.values() if j.client == client and j.status != "failed"]
            if len(mine) >= self.per_client:
                raise TooManyJobs(f"this client already has {len(mine)} denoise jobs unfinished or kept "
                                  f"(N2N_MAX_JOBS_PER_CLIENT={self.per_client}); DELETE /denoise/jobs/{{id}} "
                                  f"those whose result you have, or retry later", self._retry_after(mine))
        if self.store_bytes is not None:
            held = self.held_bytes()
            if held + reserved > self.store_bytes:
                raise StoreFull(f"the denoise-job result store is full: {held} bytes kept or reserved, this photo "
                                f"needs up to {reserved} more (N2N_RESULT_STORE_BYTES={self.store_bytes}); retry "
                                f"once older results expire, or use POST /denoise",
                                self._retry_after(list(self._jobs.values())))

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

        async def cancelled() -> bool:
            return job.cancel.is_set()

        path = self.results / f"{job.id}.{job.format}"
        try:
            result = await self.queue.run(job.slot, data, job.format, job.model, cancelled, progress=progress,
                                          strength=job.strength, output=job.output)
            del data
            if job.cancel.is_set():
                raise Abandoned
            if self.store_bytes is not None and \
                    self.held_bytes() - job.reserved + len(result.content) > self.store_bytes:
                self._finish(job, "failed", f"the result ({len(result.content)} bytes) does not fit in the "
                                            f"denoise-job result store (N2N_RESULT_STORE_BYTES); use POST /denoise")
                return
            job.reserved = len(result.content)
            await asyncio.to_thread(atomic_write_bytes, path, result.content)
            if job.cancel.is_set():  # cancelled while it was being written: it is no one's any more
                path.unlink(missing_ok=True)
                return
        except Abandoned:  # DELETE /denoise/jobs/{id}: already forgotten
            job.slot = None  # run() released it
            if self.metrics is not None:
                self.metrics.count_denoise_job("cancelled")
            return
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
        known = self.describe(exc, job.model) if self.describe is not None else None
        if known is not None:
            return known
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            what = "could not store the result, the result store's disk is full (ENOSPC); retry later"
        elif isinstance(exc, OSError):
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
        if status != "succeeded":
            job.reserved = 0  # a failed job keeps no result
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
