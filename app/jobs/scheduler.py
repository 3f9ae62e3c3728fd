"""The scheduler: a thread (in the API process, or in an ``n2n worker`` process) that runs training jobs
in spawned training processes (``training.run_job``).

Each scheduler runs one job at a time; start as many schedulers (``n2n worker``) as you like, on any
host that sees the database and the shared data directory. A scheduler claims the oldest queued job
(exactly one scheduler gets it, with a lease token) and starts a training process with the ``spawn``
start method (safe with CUDA and threads). A job whose lease ran out (its worker died, or its host was
lost) is queued again by any scheduler and resumes from its checkpoint.

No worker outlives the process that started it: on Linux the kernel kills it when its parent goes
(``PR_SET_PDEATHSIG``), and on every platform its heartbeat thread ends the process once its parent
has changed. A live worker orphaned all the same (by a service without these guards) is stopped by
``Scheduler.recover`` before its job resumes, so that a job never has two trainers. The worker's pid
is shown as for a single-process job, also for a data-parallel one.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import socket
import threading
import time
from pathlib import Path

from n2n_core.inference.runtime import cores, split_threads

from app.core.config import Settings
from app.core.messages import without_paths
from app.store import JobRow, JobStatus, JobStore
from app.jobs.procs import HEARTBEAT_SECONDS, is_orphaned, job_worker, kill_process, process_start
from app.jobs.training import run_job

log = logging.getLogger("n2n")

STALE_SECONDS = 15.0  # a running job without a heartbeat for this long has lost its worker
RECOVER_SECONDS = 5.0  # how often the scheduler looks for jobs that lost their worker
MAX_BACKOFF_SECONDS = 30.0  # a scheduler that cannot reach the database retries at most this far apart


class Scheduler:
    """Claims one job at a time, runs it in a spawned training process, watches it, and settles jobs
    that lost their worker (on any host, by their lease; on this host, also orphans found in /proc).

    ``stale_seconds``: the lease: a running job whose worker sent no heartbeat for this long has lost
    it; ``heartbeat_seconds``: how often training processes renew it (keep it well below the lease).
    ``database_url``: N2N_DATABASE_URL, handed to the training processes (None: SQLite in data_dir).
    ``runs_jobs``: False for an API replica without an embedded worker (N2N_EMBEDDED_WORKER=0): it claims
    nothing but still settles jobs whose worker was lost, so that none stays running without one.
    """

    def __init__(self, store: JobStore, data_dir: Path, device: str, poll: float = 0.2,
                 cancel_grace: float = 15.0, stale_seconds: float = STALE_SECONDS,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS, recover_seconds: float = RECOVER_SECONDS,
                 database_url: str | None = None, runs_jobs: bool = True, threads: int | None = None) -> None:
        if not 0 < heartbeat_seconds < stale_seconds:
            raise ValueError(f"heartbeat_seconds ({heartbeat_seconds}) must be > 0 and below stale_seconds "
                             f"({stale_seconds})")
        self.store, self.data_dir, self.device = store, Path(data_dir), device
        self.database_url, self.runs_jobs = database_url, runs_jobs
        self.threads = threads  # torch threads of each training process (None: torch's default)
        self.poll, self.cancel_grace = poll, cancel_grace
        self.stale_seconds, self.heartbeat_seconds, self.recover_seconds = (stale_seconds, heartbeat_seconds,
                                                                            recover_seconds)
        self.host = socket.gethostname()
        self._ctx = mp.get_context("spawn")
        self._proc: mp.process.BaseProcess | None = None
        self._job: str | None = None
        self._lease: str | None = None
        self._cancel_seen: float | None = None
        self._beat = 0.0  # when this scheduler last renewed its job's lease (monotonic)
        self._halt = threading.Event()
        self._worker_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="n2n-scheduler")

    @classmethod
    def from_settings(cls, store: JobStore, settings: Settings, runs_jobs: bool = True,
                      beside_the_api: bool = False) -> Scheduler:
        """A scheduler with the service's settings (the embedded worker's, and `n2n worker`'s).

        Beside the API (the embedded worker), a training process takes its share of N2N_THREADS
        (N2N_TRAIN_THREADS, default half) and denoising the rest; a `n2n worker` host gives it all."""
        total = settings.threads or cores()
        threads = split_threads(total, True, settings.train_threads)[1] if beside_the_api else total
        return cls(store, settings.data_dir, settings.device, cancel_grace=settings.cancel_grace_seconds,
                   stale_seconds=settings.job_lease_seconds, heartbeat_seconds=settings.job_heartbeat_seconds,
                   database_url=settings.database, runs_jobs=runs_jobs, threads=threads)

    @property
    def training(self) -> bool:
        """Whether a training process of this scheduler runs now."""
        proc = self._proc
        return proc is not None and proc.is_alive()

    def recover(self) -> list[str]:
        """Settle running jobs that lost their worker, or whose worker lost its service.

        A job whose worker stopped sending heartbeats for the lease's length (the worker, its service
        or its host died), or whose training process still runs on this host but was orphaned by a
        service that is gone, goes back to the queue and resumes from its last checkpoint; one that
        was being cancelled ends as cancelled. A live orphan on this host is killed first. Jobs of
        other hosts are judged by their lease alone: their pids mean nothing here.
        """
        recovered = []
        cutoff = time.time() - self.stale_seconds
        for job in self.store.running():
            if job.id == self._job:
                continue
            local = job.worker_host in (None, self.host)
            worker = job_worker(job) if local else None
            orphaned = worker is not None and is_orphaned(job, worker)
            if not orphaned and (job.heartbeat_at or job.updated_at) >= cutoff:
                continue
            if worker is not None and not kill_process(worker):
                log.error("job %s: cannot stop its worker (pid %d); it stays running", job.id, worker.pid)
                continue
            lost = (f"stopped worker pid {worker.pid}, orphaned by a previous service process" if orphaned
                    else "worker lost")
            if orphaned:  # it was still heartbeating: settle it whatever its lease says
                done = (self.store.finish(job.id, JobStatus.CANCELLED, note=f"{lost} while cancelling")
                        if job.cancel_requested else
                        self.store.requeue(job.id, f"the job lost its worker ({lost}) and restarted from its "
                                           "last checkpoint"))
            else:
                note = (f"{lost} while cancelling" if job.cancel_requested else
                        f"the job lost its worker ({lost}) and restarted from its last checkpoint")
                done = self.store.requeue_if_stale(job.id, cutoff, note, cancel=job.cancel_requested)
            if done:
                recovered.append(job.id)
        return recovered

    def start(self) -> None:
        try:
            self.recover()
        except Exception as e:  # noqa: BLE001 - the loop retries it with backoff
            log.warning("job recovery failed at start (retried): %s", without_paths(str(e)).splitlines()[0])
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop scheduling and the running job, which is checkpointed and handed back to the queue."""
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join(timeout)  # the thread stops the worker on its way out
        if not self._thread.is_alive():
            self._stop_worker()  # a no-op unless the thread never ran

    def _stop_worker(self) -> None:
        """SIGTERM the training process (it checkpoints and hands its job back), SIGKILL it after
        ``cancel_grace`` seconds, and settle its job. Runs on the scheduler thread as it ends: the
        process's parent-death signal follows the thread that started it."""
        with self._worker_lock:
            proc, job_id, lease = self._proc, self._job, self._lease
            if proc is None or job_id is None:
                return
            if proc.is_alive():
                proc.terminate()
                proc.join(self.cancel_grace)
                if proc.is_alive():
                    proc.kill()
                    proc.join(5)
            if proc.is_alive():
                log.error("job %s: its worker (pid %s) did not stop", job_id, proc.pid)
                return
            self._proc, self._job, self._lease = None, None, None
            job = self.store.get(job_id)
            if job and job.status == JobStatus.RUNNING:
                if job.cancel_requested:
                    self.store.finish(job_id, JobStatus.CANCELLED, note="worker stopped while cancelling", lease=lease)
                else:  # the next free worker resumes it from its checkpoint
                    self.store.requeue(job_id, "worker stopped: resuming from the last checkpoint", lease)

    def _loop(self) -> None:
        last_recover = time.monotonic()
        failures = 0
        try:
            while not self._halt.is_set():
                try:
                    if self.runs_jobs:
                        self._tick()
                    if time.monotonic() - last_recover > self.recover_seconds:
                        last_recover = time.monotonic()
                        self.recover()
                    failures = 0
                except Exception as e:  # noqa: BLE001 - the scheduler outlives any failure, the database's too
                    failures += 1
                    wait = min(MAX_BACKOFF_SECONDS, self.poll * 2 ** failures)
                    log.warning("scheduler: %s (attempt %d; retrying in %.1f s)",
                                without_paths(f"{type(e).__name__}: {e}").splitlines()[0], failures, wait)
                    self._halt.wait(wait)
                    continue
                self._halt.wait(self.poll)
        finally:
            self._stop_worker()

    def _launch(self, job: JobRow) -> mp.process.BaseProcess:
        """Start the training process of a claimed job.

        A data-parallel job (the jobs table's ``nproc_per_node`` > 1; None or 1: one process) gets the
        same training process, which launches its N ranks (``n2n_core.training.distributed.launch``) and shares
        this scheduler's threads among them. The worker process that claimed the job stays its
        recorded owner (``worker_parent``), the training process its recorded pid.
        """
        proc = self._ctx.Process(target=run_job, name=f"n2n-job-{job.id}", daemon=True,
                                 args=(job.id, str(self.data_dir), self.device, os.getpid(),
                                       self.heartbeat_seconds, self.database_url, job.lease, self.threads,
                                       int(job.nproc_per_node or 1)))
        proc.start()
        return proc

    def _tick(self) -> None:
        if self._proc is None:
            job = self.store.claim_next(self.host, os.getpid())
            if job is None:
                return
            self._job, self._lease, self._cancel_seen = job.id, job.lease, None
            self._beat = time.monotonic()
            try:
                self._proc = self._launch(job)
            except Exception as e:
                self.store.finish(job.id, JobStatus.FAILED, error=without_paths(f"{type(e).__name__}: {e}"),
                                  lease=job.lease)
                self._job = self._lease = None
                return
            self.store.set_pid(job.id, self._proc.pid, os.getpid(), process_start(self._proc.pid))
            return
        job_id, lease = self._job, self._lease
        assert job_id is not None
        if self._proc.is_alive():
            if time.monotonic() - self._beat >= self.heartbeat_seconds:
                # The worker renews the lease too: its training process needs seconds to start (a fresh
                # interpreter) before its own heartbeat thread runs.
                self._beat = time.monotonic()
                self.store.heartbeat(job_id, lease)
            if self.store.cancel_requested(job_id):
                self._cancel_seen = self._cancel_seen or time.monotonic()
                if time.monotonic() - self._cancel_seen > self.cancel_grace:
                    self._proc.kill()
            return
        self._proc.join()
        code = self._proc.exitcode
        self._proc, self._job, self._lease = None, None, None
        job = self.store.get(job_id)
        if job and job.status == JobStatus.RUNNING and job.lease == lease:
            if job.cancel_requested:
                self.store.finish(job_id, JobStatus.CANCELLED, note="worker stopped on cancel", lease=lease)
            else:
                self.store.finish(job_id, JobStatus.FAILED, error=f"training worker exited with code {code}",
                                  lease=lease)
