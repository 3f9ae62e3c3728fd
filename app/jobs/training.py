"""The training process of one job (spawned by the scheduler): it trains with ``n2n_core.Trainer``,
renews the job's lease by heartbeat, writes progress to the store at least every second, polls the
cancel flag, checkpoints under ``<data_dir>/jobs/<id>/`` and, on success, registers the model. A
training process that lost its lease stops at its next heartbeat and can no longer write the job. On
SIGTERM it checkpoints and hands its job back (queued again).

A data-parallel job (``nproc_per_node`` N > 1) runs the same way: its training process becomes the
launcher of N ranks (``n2n_core.training.distributed.launch``: gloo on CPU, NCCL on CUDA), which die with it.
The launcher keeps the lease, the parent checks and the signals; rank 0 reports progress, polls the
cancel flag, checkpoints and registers the model; a cancel, a hand-back or a lost lease stops every
rank at the same step.

A run that fails the quality gate (``quality_gate``) ends as failed and is neither registered nor
activated.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import signal
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import OperationalError

from n2n_core.inference.runtime import die_with_parent

from app.core.messages import without_paths
from app.store import JobRow, JobStatus, JobStore, ModelRows, open_database
from app.jobs.procs import HEARTBEAT_SECONDS, heartbeat, orphaned_exit
from app.jobs.quality_gate import divergence, json_safe, mean_psnr_of_noisy

if TYPE_CHECKING:
    from n2n_core.training.distributed import DistContext
    from n2n_core.training.train import TrainConfig, Trainer


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
    from n2n_core.inference.runtime import set_threads, tune_allocator

    tune_allocator()
    set_threads(threads if nproc == 1 else 1)
    # With ranks, the flags cross processes: a stop asked here (SIGTERM, a lost lease) reaches them all.
    events = mp.get_context("spawn") if nproc > 1 else threading
    handed_back, lost = events.Event(), events.Event()
    _hand_back_on_signals(handed_back)
    store = JobStore(open_database(database_url, Path(data_dir), check=False))
    halt = threading.Event()
    threading.Thread(target=heartbeat, args=(store, job_id, halt, parent_pid, heartbeat_seconds, orphaned_exit,
                                             lease, lost), daemon=True, name="n2n-heartbeat").start()
    try:
        job = store.get(job_id)
        if job is None:
            return
        if nproc == 1:
            _train(store, job, Path(data_dir), device, lease, handed_back, lost)
            return
        _launch_ranks(store, job, data_dir, device, database_url, lease, threads, nproc, handed_back, lost)
    finally:
        halt.set()


def _launch_ranks(store: JobStore, job: JobRow, data_dir: str, device: str, database_url: str | None,
                  lease: str | None, threads: int | None, nproc: int, handed_back: Any, lost: Any) -> None:
    """Train a data-parallel job in ``nproc`` ranks launched from this process, sharing ``threads``."""
    from n2n_core.training import distributed

    # Started as a daemon (its parent's exit ends it), it may not have children of its own unless it
    # says otherwise; its ranks are tied to it (die_with_parent) as it is to its parent.
    mp.current_process().daemon = False
    per_rank = max(1, threads // nproc) if threads else None
    try:
        distributed.launch(_train_rank, nproc, (job, data_dir, device, database_url, lease, per_rank,
                                                handed_back, lost), distributed.device_type_of(device))
    except Exception as e:  # noqa: BLE001 - a rank that died, or too many ranks for this host
        # A no-op when rank 0 already settled the job (it records its own failures).
        store.finish(job.id, JobStatus.FAILED, error=without_paths(f"{type(e).__name__}: {e}")[:2000], lease=lease)


def _hand_back_on_signals(handed_back: Any) -> None:
    """SIGTERM (the scheduler stopping) and SIGINT (Ctrl-C on a terminal reaches the whole process group)
    end the run at the next step with a checkpoint; the job is then handed back."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: handed_back.set())


def _train_rank(ctx: DistContext, job: JobRow, data_dir: str, device: str, database_url: str | None,
                lease: str | None, threads: int | None, handed_back: Any, lost: Any) -> None:
    """One rank of a data-parallel job (spawned by ``n2n_core.training.distributed.launch``, in its process group).

    Rank 0 does what a single-process job does (progress, cancel polling, checkpoints, registration);
    the others train their slice of each batch and stop at the same step as rank 0."""
    from n2n_core.inference.runtime import set_threads

    set_threads(threads)
    _hand_back_on_signals(handed_back)
    store = JobStore(open_database(database_url, Path(data_dir), check=False))
    try:
        _train(store, job, Path(data_dir), device, lease, handed_back, lost, ctx)
    finally:
        store.db.dispose()


@dataclass
class _Run:
    """One training run of a job, as this process sees it."""

    store: JobStore
    job: JobRow
    data_dir: Path
    lease: str | None
    handed_back: Any  # set: stop, checkpoint and hand the job back (SIGTERM)
    lost: Any  # set: the lease went to another worker; nothing here is ours to write any more
    dist: DistContext

    @property
    def job_id(self) -> str:
        return self.job.id

    def finish(self, status: JobStatus, **fields: Any) -> None:
        self.store.finish(self.job_id, status, lease=self.lease, **fields)


def _train(store: JobStore, job: JobRow, data_dir: Path, device: str, lease: str | None = None,
           handed_back: Any = None, lost: Any = None, dist: DistContext | None = None) -> None:
    """Train the job; ``dist``: this process's rank of a data-parallel run (None: the only process).

    Only the main rank writes to the store. A failure is recorded by the main rank; in a data-parallel
    run it is raised as well (on every rank), so that the launcher stops the ranks still waiting."""
    import torch

    from n2n_core.training import distributed

    torch.set_grad_enabled(False)
    run = _Run(store, job, data_dir, lease, handed_back or threading.Event(), lost or threading.Event(),
               dist or distributed.SINGLE)
    try:
        _train_and_settle(run, device)
    except Exception as e:  # noqa: BLE001 - every failure is recorded on the job
        if not run.dist.is_main:
            raise
        _record_failure(run, e)
        if run.dist.active:
            raise


def _train_and_settle(run: _Run, device: str) -> None:
    """Train, then settle the job by the result: handed back, cancelled, failed by the gate, or registered."""
    from n2n_core.training.train import Trainer

    cfg, data = _config_and_data(run.job.params, run.data_dir, device)
    reports = _Reports(run)
    out = run.data_dir / "jobs" / run.job_id / "model.safetensors"
    trainer = Trainer(cfg, data, out, progress=reports.progress, should_stop=reports.should_stop,
                      progress_seconds=1.0, dist=run.dist)
    val_pairs = data.val[: cfg.val_images]
    noisy_psnr = mean_psnr_of_noisy(val_pairs)
    start_psnr = trainer.validate() if val_pairs else None  # the untrained (or init) network: before run()
    result = trainer.run(resume=True)  # a NaN or infinite loss raises TrainingDiverged
    if not run.dist.is_main:
        return
    if result.status == "cancelled":  # the trainer's result: stopped before its last step
        _settle_stopped(run, cfg, result.step, reports.reported)
        return
    final_psnr = trainer.last_val_psnr()
    _report_final(run, cfg, result, final_psnr, noisy_psnr)
    problem = divergence(final_psnr, noisy_psnr, start_psnr)
    if problem:
        run.finish(JobStatus.FAILED, error=problem, note="the model was not registered")
        return
    if run.lost.is_set():
        return
    _register(run, trainer, out, noisy_psnr)


def _config_and_data(p: dict[str, Any], data_dir: Path, device: str) -> tuple[TrainConfig, Any]:
    """The trainer's configuration from the job's params, and the dataset it trains on."""
    from n2n_core.data.datasets import open_dataset
    from n2n_core.data.noise import noise_from_dict, parse_jpeg_inputs
    from n2n_core.training.train import TrainConfig

    # A job on noisy pairs, or on uploaded single noisy photos, has no noise (None); older jobs recorded the
    # default one, which pairs ignore. Jobs from before the methods have no method: noise2noise.
    noise = noise_from_dict(p["noise"]) if p.get("noise") else None
    method = p.get("method") or "noise2noise"
    singles = method == "neighbor2neighbor"
    settings = {"gamma": p["gamma"], "cell": p["cell"]} if singles else {}  # else TrainConfig's (unused) defaults
    data_spec = "builtin" if p["dataset"] == "builtin" else str(data_dir / "datasets" / p["dataset"])
    no_noise = "none (single noisy photos)" if singles else "none (noisy pairs)"
    cfg = TrainConfig(arch=p["arch"], steps=p["steps"], batch_size=p["batch_size"], patch_size=p["patch_size"],
                      init=p.get("init_weights"), jpeg=p.get("jpeg"),
                      learning_rate=p["learning_rate"], seed=p["seed"], device=device,
                      noise=noise.spec() if noise is not None else no_noise,
                      data=p["dataset"], val_every=max(1, p.get("val_every") or max(p["steps"] // 10, 1)),
                      checkpoint_every=max(1, min(500, p["steps"] // 5 or 1)), method=method, **settings)
    data = open_dataset(data_spec, noise, seed=p["seed"], jpeg=parse_jpeg_inputs(p.get("jpeg")),
                        singles=singles, cell=cfg.cell)
    return cfg, data


class _Reports:
    """The trainer's callbacks: progress reports to the store (main rank only), and the stop poll."""

    def __init__(self, run: _Run) -> None:
        from app.jobs.eta import StepRate

        self.run = run
        self.history: list[dict[str, Any]] = []
        self.reported: dict[str, Any] = {}  # the metrics of the last progress report
        self.rate = StepRate()  # steps per second of this run, for the job's ETA
        self.last_poll, self.cancel = 0.0, False

    def progress(self, info: dict[str, Any]) -> None:  # called on the main rank only
        history = self.history
        if info.get("val_psnr") is not None and (not history or history[-1]["step"] != info["step"]):
            history.append({"step": info["step"], "loss": info.get("loss"), "val_psnr": info["val_psnr"]})
        self.reported.update(json_safe({"loss": info.get("loss"), "val_psnr": info.get("val_psnr"),
                                        "lr": info.get("lr"), "steps_per_second": self.rate.add(info["step"]),
                                        "elapsed_seconds": round(info.get("elapsed") or 0.0, 2),
                                        "history": history[-200:]}))
        try:
            self.run.store.update_progress(
                self.run.job_id, {"step": info["step"], "total": info["total"], "fraction": round(info["fraction"], 4)},
                self.reported, self.run.lease)
        except OperationalError:  # the database is away: training goes on, the next report catches up
            pass

    def should_stop(self) -> bool:  # a stop on any rank stops them all at the same step
        run = self.run
        if run.handed_back.is_set() or run.lost.is_set():
            return True
        now = time.monotonic()
        if run.dist.is_main and now - self.last_poll > 0.25:
            self.last_poll = now
            try:
                self.cancel = run.store.cancel_requested(run.job_id)
            except OperationalError:  # the database is away: asked again at the next poll
                pass
        return bool(self.cancel)


def _settle_stopped(run: _Run, cfg: TrainConfig, step: int, reported: dict[str, Any]) -> None:
    """A run stopped before its last step: handed back (queued again), or cancelled."""
    if run.lost.is_set():
        return  # another worker runs the job now: nothing here is ours to write
    store, job_id = run.store, run.job_id
    # The step it stopped at, where its checkpoint is: a resumed run reports onwards from there.
    store.update_progress(job_id, {"step": step, "total": cfg.steps, "fraction": round(step / cfg.steps, 4)},
                          reported or run.job.metrics or {}, run.lease)
    if run.handed_back.is_set() and not store.cancel_requested(job_id):
        store.requeue(job_id, f"handed back at step {step} by a stopping worker "
                      f"({socket.gethostname()}): resuming from its checkpoint", run.lease)
        return
    run.finish(JobStatus.CANCELLED, note=f"cancelled at step {step}")


def _report_final(run: _Run, cfg: TrainConfig, result: Any, final_psnr: float | None,
                  noisy_psnr: float | None) -> None:
    """The finished run's last progress and metrics (final and best validation PSNR, the noisy input's)."""
    history = result.history
    best = max((h["val_psnr"] for h in history if isinstance(h.get("val_psnr"), float)
                and math.isfinite(h["val_psnr"])), default=None)
    run.store.update_progress(run.job_id, {"step": result.step, "total": cfg.steps, "fraction": 1.0}, json_safe(
        {"loss": history[-1]["loss"] if history else None, "val_psnr": final_psnr, "best_val_psnr": best,
         "noisy_psnr": noisy_psnr, "elapsed_seconds": round(result.seconds, 2),
         "history": [{k: h[k] for k in ("step", "loss", "val_psnr")} for h in history]}), run.lease)


def _register(run: _Run, trainer: Trainer, out: Path, noisy_psnr: float | None) -> None:
    """Register the trained model (and activate it when the job asked), and end the job as succeeded."""
    from n2n_core.training.card import write_card

    from app.services.model_names import default_name
    from app.services.registry import register_model

    job, p = run.job, run.job.params
    note = None
    if noisy_psnr is None:
        why = "under 5 photos" if p.get("method") == "neighbor2neighbor" else "a paired dataset"
        note = "; ".join(filter(None, [job.note, f"no validation images ({why}): only the "
                                       "finite-loss check guarded this model"]))
    if run.dist.active:
        note = "; ".join(filter(None, [note, f"trained data-parallel in {run.dist.world_size} processes"]))
    name = p.get("name") or default_name(p["arch"], p["dataset"], job.created_at)
    card = json.loads(write_card(out, trainer, name).read_text())
    card["job_id"] = job.id
    if p.get("init_model"):
        card["training"]["init"] = p["init_model"]  # the model id, not a server path
    rows = ModelRows(run.store.db)
    model_id = register_model(run.data_dir, rows, out, card, name)
    if p.get("activate_when_done"):
        rows.set_active(model_id)
    run.finish(JobStatus.SUCCEEDED, model_id=model_id, note=note)


def _record_failure(run: _Run, e: Exception) -> None:
    """End the job as failed with the exception and the end of its traceback, without server paths."""
    p = run.job.params
    error, note = f"{type(e).__name__}: {e}", traceback.format_exc(limit=3)[-2000:]
    if p.get("init_weights"):  # name the init model by its id, not by its path on this server
        error, note = (t.replace(p["init_weights"], repr(p["init_model"])) for t in (error, note))
    run.finish(JobStatus.FAILED, error=without_paths(error), note=without_paths(note))
