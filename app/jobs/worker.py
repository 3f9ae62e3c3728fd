"""Training jobs: the scheduler thread (in the API process, or in an ``n2n worker`` process) and the
training process it spawns for each job.

Each scheduler runs one job at a time; start as many schedulers (``n2n worker``) as you like, on any
host that sees the database and the shared data directory. A scheduler claims the oldest queued job
(exactly one scheduler gets it, with a lease token) and starts a training process with the ``spawn``
start method (safe with CUDA and threads). That process trains with ``n2n_core.Trainer``, renews the
lease by heartbeat, writes progress to the store at least every second, polls the cancel flag (set by
whichever replica received the cancel), checkpoints under ``<data_dir>/jobs/<id>/`` and, on success,
registers the model. A job whose lease ran out (its worker died, or its host was lost) is queued
again by any scheduler and resumes from its checkpoint; a training process that lost its lease stops
at its next heartbeat and can no longer write the job. On SIGTERM the training process checkpoints
and hands its job back (queued again).

No worker outlives the process that started it: on Linux the kernel kills it when its parent goes
(``PR_SET_PDEATHSIG``), and on every platform its heartbeat thread ends the process once its parent
has changed. A live worker orphaned all the same (by a service without these guards) is stopped by
``Scheduler.recover`` before its job resumes, so that a job never has two trainers.

A data-parallel job (``nproc_per_node`` N > 1) runs the same way: its training process becomes the
launcher of N ranks (``n2n_core.distributed.launch``: gloo on CPU, NCCL on CUDA), which die with it.
The launcher keeps the lease, the parent checks and the signals; rank 0 reports progress, polls the
cancel flag, checkpoints and registers the model; a cancel, a hand-back or a lost lease stops every
rank at the same step. The worker's pid is shown as for a single-process job.

A run that diverged (a NaN or infinite loss, or validation images made worse than both the noisy
input and the network it started from) ends as failed and is neither registered nor activated.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import OperationalError

from n2n_core.runtime import ORPHANED_EXIT_CODE, cores, die_with_parent, split_threads

from ..config import Settings
from ..messages import without_paths
from ..store import JobStore, ModelRows, open_database

if TYPE_CHECKING:
    from n2n_core.distributed import DistContext

log = logging.getLogger("n2n")

HEARTBEAT_SECONDS = 2.0
STALE_SECONDS = 15.0  # a running job without a heartbeat for this long has lost its worker
PARENT_CHECK_SECONDS = 0.5  # how often a worker checks that the process that started it is still there
RECOVER_SECONDS = 5.0  # how often the scheduler looks for jobs that lost their worker
MAX_BACKOFF_SECONDS = 30.0  # a scheduler that cannot reach the database retries at most this far apart


# -- the worker's ties to its parent -------------------------------------------------------------
def _orphaned() -> None:
    os._exit(ORPHANED_EXIT_CODE)  # no cleanup: checkpoints are atomic, the next service resumes the job


def _heartbeat(store: JobStore, job_id: str, halt: threading.Event, parent_pid: int | None,
               interval: float = HEARTBEAT_SECONDS, orphaned: Callable[[], None] = _orphaned,
               lease: str | None = None, lost: threading.Event | None = None) -> None:
    """Renew the job's lease every ``interval`` seconds; end the process (``orphaned()``) as soon as its
    parent is no longer ``parent_pid`` (None: no parent check). With a ``lease`` token, set ``lost`` once
    the job no longer runs under it (another worker reclaimed it): the training then stops."""
    next_beat = time.monotonic() + interval
    while not halt.wait(min(PARENT_CHECK_SECONDS, interval)):
        if parent_pid is not None and os.getppid() != parent_pid:
            orphaned()
            return
        if time.monotonic() >= next_beat:
            next_beat = time.monotonic() + interval
            try:
                held = store.heartbeat(job_id, lease)
            except Exception:  # noqa: BLE001 - a missed beat is retried; the lease tolerates several
                continue
            if lease is not None and not held and lost is not None:
                lost.set()


# -- processes seen through /proc (Linux); elsewhere nothing is ever found, so nothing is killed -----
@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    start: int  # clock ticks after boot: with the pid, it names one process for good


def proc_info(pid: int) -> ProcInfo | None:
    """The live process ``pid``; None when there is none (gone, a zombie, or no /proc)."""
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        if fields[0] in ("Z", "X", "x"):
            return None
        return ProcInfo(int(pid), int(fields[1]), int(fields[19]))
    except (OSError, ValueError, IndexError):
        return None


def process_start(pid: int) -> int | None:
    info = proc_info(pid)
    return info.start if info else None


def job_worker(job: dict[str, Any]) -> ProcInfo | None:
    """The job's recorded worker process when it is still alive here, else None.

    A pid counts only when its start time is the one recorded when the worker started (a reused pid
    is another process). Rows from before start times were recorded need the command line of a
    multiprocessing 'spawn' child of this Python instead.
    """
    pid = job.get("worker_pid")
    info = proc_info(pid) if pid else None
    if info is None:
        return None
    if job.get("worker_start") is not None:
        return info if info.start == job["worker_start"] else None
    try:
        argv = Path(f"/proc/{info.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    spawned = argv[0] == os.fsencode(sys.executable) and any(b"spawn_main" in a for a in argv)
    return info if spawned and b"--multiprocessing-fork" in argv else None


def is_orphaned(job: dict[str, Any], worker: ProcInfo) -> bool:
    """Whether the job's live worker lost the process that started it (it was re-parented)."""
    if job.get("worker_parent") is None:  # rows from before parents were recorded: re-parented to init
        return worker.ppid == 1 and os.getpid() != 1
    return worker.ppid != job["worker_parent"]


def kill_process(info: ProcInfo, wait: float = 60.0) -> bool:
    """SIGKILL the process ``info`` names and wait until it is gone; False when it could not be stopped."""
    pidfd = None
    try:
        pidfd = os.pidfd_open(info.pid)  # pins the process: its pid cannot be reused under us
    except (AttributeError, OSError):
        pass  # gone already, or no pidfd here: checked again just below
    try:
        now = proc_info(info.pid)
        if now is None or now.start != info.start:
            return True
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        else:
            os.kill(info.pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    finally:
        if pidfd is not None:
            os.close(pidfd)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        now = proc_info(info.pid)
        if now is None or now.start != info.start:
            return True
        time.sleep(0.05)
    return False


# -- the quality gate ------------------------------------------------------------------------------
def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinite floats as None: a diverging run's metrics must stay valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def mean_psnr_of_noisy(pairs: list[tuple[Any, Any]]) -> float | None:
    """The PSNR of the noisy validation inputs against their clean images: what doing nothing scores."""
    from n2n_core.metrics import psnr

    if not pairs:
        return None
    return sum(psnr(noisy, clean) for noisy, clean in pairs) / len(pairs)


def divergence(final: float | None, noisy: float | None, start: float | None) -> str | None:
    """Why a finished run's validation PSNR says it diverged, or None.

    Diverged: NaN, or below both the noisy input's PSNR and the starting network's on the same
    validation images (training made the images worse than doing nothing, and worse than where it
    started). A short run still climbing from its start towards the noisy input's PSNR has not diverged.
    """
    if final is None or noisy is None:
        return None
    if math.isnan(final):
        return "training diverged: the validation PSNR is NaN"
    if final < noisy and (start is None or final < start):
        since = f" and the {start:.2f} dB of the network it started from" if start is not None else ""
        return (f"training diverged: validation PSNR {final:.2f} dB is below the noisy input's {noisy:.2f} dB{since} "
                "on the same images; try a lower learning_rate")
    return None


def run_job(job_id: str, data_dir: str, device: str, parent_pid: int | None,
            heartbeat_seconds: float = HEARTBEAT_SECONDS, database_url: str | None = None,
            lease: str | None = None, threads: int | None = None, nproc: int = 1) -> None:
    """Training process entry point. ``parent_pid``: the process that started it, which it must not
    outlive (None: no such tie, for a process started by hand). ``database_url``: N2N_DATABASE_URL
    (None: SQLite in ``data_dir``); ``lease``: the claim's token, which fences this process's writes.
    ``threads``: torch threads of the whole job; ``nproc`` > 1: train data-parallel in that many local
    processes (ranks), spawned here and sharing ``threads``, while this process only keeps the lease.

    SIGTERM (sent by the scheduler when its worker stops) ends the run at the next step with a
    checkpoint, and the job is handed back to the queue."""
    if parent_pid is not None:
        die_with_parent(parent_pid)  # first: the parent may already be gone
    from n2n_core.runtime import set_threads, tune_allocator

    tune_allocator()
    set_threads(threads if nproc == 1 else 1)
    # With ranks, the flags cross processes: a stop asked here (SIGTERM, a lost lease) reaches them all.
    events = mp.get_context("spawn") if nproc > 1 else threading
    handed_back, lost = events.Event(), events.Event()
    _hand_back_on_signals(handed_back)
    store = JobStore(open_database(database_url, Path(data_dir), check=False))
    halt = threading.Event()
    threading.Thread(target=_heartbeat, args=(store, job_id, halt, parent_pid, heartbeat_seconds, _orphaned,
                                              lease, lost), daemon=True, name="n2n-heartbeat").start()
    try:
        job = store.get(job_id)
        if job is None:
            return
        if nproc == 1:
            _train(store, job, Path(data_dir), device, lease, handed_back, lost)
            return
        from n2n_core import distributed

        # Started as a daemon (its parent's exit ends it), it may not have children of its own unless it
        # says otherwise; its ranks are tied to it (die_with_parent) as it is to its parent.
        mp.current_process().daemon = False
        per_rank = max(1, threads // nproc) if threads else None
        try:
            distributed.launch(_train_rank, nproc, (job, data_dir, device, database_url, lease, per_rank,
                                                    handed_back, lost), distributed.device_type_of(device))
        except Exception as e:  # noqa: BLE001 - a rank that died, or too many ranks for this host
            # A no-op when rank 0 already settled the job (it records its own failures).
            store.finish(job_id, "failed", error=without_paths(f"{type(e).__name__}: {e}")[:2000], lease=lease)
    finally:
        halt.set()


def _hand_back_on_signals(handed_back: Any) -> None:
    """SIGTERM (the scheduler stopping) and SIGINT (Ctrl-C on a terminal reaches the whole process group)
    end the run at the next step with a checkpoint; the job is then handed back."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: handed_back.set())


def _train_rank(ctx: DistContext, job: dict[str, Any], data_dir: str, device: str, database_url: str | None,
                lease: str | None, threads: int | None, handed_back: Any, lost: Any) -> None:
    """One rank of a data-parallel job (spawned by ``n2n_core.distributed.launch``, in its process group).

    Rank 0 does what a single-process job does (progress, cancel polling, checkpoints, registration);
    the others train their slice of each batch and stop at the same step as rank 0."""
    from n2n_core.runtime import set_threads

    set_threads(threads)
    _hand_back_on_signals(handed_back)
    store = JobStore(open_database(database_url, Path(data_dir), check=False))
    try:
        _train(store, job, Path(data_dir), device, lease, handed_back, lost, ctx)
    finally:
        store.db.dispose()


def _train(store: JobStore, job: dict[str, Any], data_dir: Path, device: str, lease: str | None = None,
           handed_back: Any = None, lost: Any = None, dist: DistContext | None = None) -> None:
    """Train the job; ``dist``: this process's rank of a data-parallel run (None: the only process).

    Only the main rank writes to the store. A failure is recorded by the main rank; in a data-parallel
    run it is raised as well (on every rank), so that the launcher stops the ranks still waiting."""
    import torch

    from n2n_core import distributed
    from n2n_core.card import write_card
    from n2n_core.data import open_dataset
    from n2n_core.noise import noise_from_dict, parse_jpeg_inputs
    from n2n_core.train import TrainConfig, Trainer

    from ..model_names import default_name
    from ..registry import register_model
    from .eta import StepRate

    torch.set_grad_enabled(False)
    dist = dist or distributed.SINGLE
    job_id, p = job["id"], job["params"]
    handed_back, lost = handed_back or threading.Event(), lost or threading.Event()
    try:
        # A job on noisy pairs has no noise (None); older jobs recorded the default one, which pairs ignore.
        noise = noise_from_dict(p["noise"]) if p.get("noise") else None
        data_spec = "builtin" if p["dataset"] == "builtin" else str(data_dir / "datasets" / p["dataset"])
        cfg = TrainConfig(arch=p["arch"], steps=p["steps"], batch_size=p["batch_size"], patch_size=p["patch_size"],
                          init=p.get("init_weights"), jpeg=p.get("jpeg"),
                          learning_rate=p["learning_rate"], seed=p["seed"], device=device,
                          noise=noise.spec() if noise is not None else "none (noisy pairs)",
                          data=p["dataset"], val_every=max(1, p.get("val_every") or max(p["steps"] // 10, 1)),
                          checkpoint_every=max(1, min(500, p["steps"] // 5 or 1)))
        data = open_dataset(data_spec, noise, seed=p["seed"], jpeg=parse_jpeg_inputs(p.get("jpeg")))
        history: list[dict[str, Any]] = []
        last_poll = [0.0, False]
        reported: dict[str, Any] = {}  # the metrics of the last progress report
        rate = StepRate()  # steps per second of this run, for the job's ETA

        def progress(info: dict[str, Any]) -> None:  # called on the main rank only
            if info.get("val_psnr") is not None and (not history or history[-1]["step"] != info["step"]):
                history.append({"step": info["step"], "loss": info.get("loss"), "val_psnr": info["val_psnr"]})
            reported.update(json_safe({"loss": info.get("loss"), "val_psnr": info.get("val_psnr"), "lr": info.get("lr"),
                                       "steps_per_second": rate.add(info["step"]),
                                       "elapsed_seconds": round(info.get("elapsed") or 0.0, 2),
                                       "history": history[-200:]}))
            try:
                store.update_progress(
                    job_id, {"step": info["step"], "total": info["total"], "fraction": round(info["fraction"], 4)},
                    reported, lease)
            except OperationalError:  # the database is away: training goes on, the next report catches up
                pass

        def should_stop() -> bool:  # a stop on any rank stops them all at the same step
            if handed_back.is_set() or lost.is_set():
                return True
            now = time.monotonic()
            if dist.is_main and now - last_poll[0] > 0.25:
                last_poll[0] = now
                try:
                    last_poll[1] = store.cancel_requested(job_id)
                except OperationalError:  # the database is away: asked again at the next poll
                    pass
            return bool(last_poll[1])

        out = data_dir / "jobs" / job_id / "model.safetensors"
        trainer = Trainer(cfg, data, out, progress=progress, should_stop=should_stop, progress_seconds=1.0,
                          dist=dist)
        val_pairs = data.val[: cfg.val_images]
        noisy_psnr = mean_psnr_of_noisy(val_pairs)
        start_psnr = trainer.validate() if val_pairs else None  # the untrained (or init) network: before run()
        result = trainer.run(resume=True)  # a NaN or infinite loss raises TrainingDiverged
        if not dist.is_main:
            return
        if result.status == "cancelled":
            if lost.is_set():
                return  # another worker runs the job now: nothing here is ours to write
            # The step it stopped at, where its checkpoint is: a resumed run reports onwards from there.
            store.update_progress(job_id, {"step": result.step, "total": cfg.steps,
                                           "fraction": round(result.step / cfg.steps, 4)},
                                  reported or job.get("metrics") or {}, lease)
            if handed_back.is_set() and not store.cancel_requested(job_id):
                store.requeue(job_id, f"handed back at step {result.step} by a stopping worker "
                              f"({socket.gethostname()}): resuming from its checkpoint", lease)
                return
            store.finish(job_id, "cancelled", note=f"cancelled at step {result.step}", lease=lease)
            return
        final_psnr = trainer.last_val_psnr()
        store.update_progress(job_id, {"step": result.step, "total": cfg.steps, "fraction": 1.0}, json_safe(
            {"loss": result.history[-1]["loss"] if result.history else None, "val_psnr": final_psnr,
             "best_val_psnr": max((h["val_psnr"] for h in result.history if isinstance(h.get("val_psnr"), float)
                                   and math.isfinite(h["val_psnr"])), default=None),
             "noisy_psnr": noisy_psnr, "elapsed_seconds": round(result.seconds, 2),
             "history": [{k: h[k] for k in ("step", "loss", "val_psnr")} for h in result.history]}), lease)
        problem = divergence(final_psnr, noisy_psnr, start_psnr)
        if problem:
            store.finish(job_id, "failed", error=problem, note="the model was not registered", lease=lease)
            return
        if lost.is_set():
            return
        note = None
        if noisy_psnr is None:
            note = "; ".join(filter(None, [job.get("note"), "no validation images (a paired dataset): only the "
                                           "finite-loss check guarded this model"]))
        if dist.active:
            note = "; ".join(filter(None, [note, f"trained data-parallel in {dist.world_size} processes"]))
        name = p.get("name") or default_name(p["arch"], p["dataset"], job.get("created_at"))
        card = json.loads(write_card(out, trainer, name).read_text())
        card["job_id"] = job_id
        if p.get("init_model"):
            card["training"]["init"] = p["init_model"]  # the model id, not a server path
        rows = ModelRows(store.db)
        model_id = register_model(data_dir, rows, out, card, name)
        if p.get("activate_when_done"):
            rows.set_active(model_id)
        store.finish(job_id, "succeeded", model_id=model_id, note=note, lease=lease)
    except Exception as e:  # noqa: BLE001 - every failure is recorded on the job
        if not dist.is_main:
            raise
        error, note = f"{type(e).__name__}: {e}", traceback.format_exc(limit=3)[-2000:]
        if p.get("init_weights"):  # name the init model by its id, not by its path on this server
            error, note = (t.replace(p["init_weights"], repr(p["init_model"])) for t in (error, note))
        store.finish(job_id, "failed", error=without_paths(error), note=without_paths(note), lease=lease)
        if dist.active:
            raise


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
            if job["id"] == self._job:
                continue
            local = job.get("worker_host") in (None, self.host)
            worker = job_worker(job) if local else None
            orphaned = worker is not None and is_orphaned(job, worker)
            if not orphaned and (job["heartbeat_at"] or job["updated_at"]) >= cutoff:
                continue
            if worker is not None and not kill_process(worker):
                log.error("job %s: cannot stop its worker (pid %d); it stays running", job["id"], worker.pid)
                continue
            lost = (f"stopped worker pid {worker.pid}, orphaned by a previous service process" if orphaned
                    else "worker lost")
            if orphaned:  # it was still heartbeating: settle it whatever its lease says
                done = (self.store.finish(job["id"], "cancelled", note=f"{lost} while cancelling")
                        if job["cancel_requested"] else
                        self.store.requeue(job["id"], f"the job lost its worker ({lost}) and restarted from its "
                                           "last checkpoint"))
            else:
                note = (f"{lost} while cancelling" if job["cancel_requested"] else
                        f"the job lost its worker ({lost}) and restarted from its last checkpoint")
                done = self.store.requeue_if_stale(job["id"], cutoff, note, cancel=job["cancel_requested"])
            if done:
                recovered.append(job["id"])
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

    def running_job(self) -> str | None:
        return self._job

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
            if job and job["status"] == "running":
                if job["cancel_requested"]:
                    self.store.finish(job_id, "cancelled", note="worker stopped while cancelling", lease=lease)
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

    def _launch(self, job: dict[str, Any]) -> mp.process.BaseProcess:
        """Start the training process of a claimed job.

        A data-parallel job (the jobs table's ``nproc_per_node`` > 1; None or 1: one process) gets the
        same training process, which launches its N ranks (``n2n_core.distributed.launch``) and shares
        this scheduler's threads among them. The worker process that claimed the job stays its
        recorded owner (``worker_parent``), the training process its recorded pid.
        """
        proc = self._ctx.Process(target=run_job, name=f"n2n-job-{job['id']}", daemon=True,
                                 args=(job["id"], str(self.data_dir), self.device, os.getpid(),
                                       self.heartbeat_seconds, self.database_url, job["lease"], self.threads,
                                       int(job.get("nproc_per_node") or 1)))
        proc.start()
        return proc

    def _tick(self) -> None:
        if self._proc is None:
            job = self.store.claim_next(self.host, os.getpid())
            if job is None:
                return
            self._job, self._lease, self._cancel_seen = job["id"], job["lease"], None
            self._beat = time.monotonic()
            try:
                self._proc = self._launch(job)
            except Exception as e:
                self.store.finish(job["id"], "failed", error=without_paths(f"{type(e).__name__}: {e}"),
                                  lease=job["lease"])
                self._job = self._lease = None
                return
            self.store.set_pid(job["id"], self._proc.pid, os.getpid(), process_start(self._proc.pid))
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
        if job and job["status"] == "running" and job["lease"] == lease:
            if job["cancel_requested"]:
                self.store.finish(job_id, "cancelled", note="worker stopped on cancel", lease=lease)
            else:
                self.store.finish(job_id, "failed", error=f"training worker exited with code {code}", lease=lease)
