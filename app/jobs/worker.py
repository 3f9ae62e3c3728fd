"""Training jobs: the scheduler thread in the API process and the spawned worker process.

One job runs at a time. The scheduler claims the oldest queued job and starts a worker with the
``spawn`` start method (safe with CUDA and threads). The worker trains with ``n2n_core.Trainer``,
writes progress to the store at least every second, polls the cancel flag, checkpoints under
``<data_dir>/jobs/<id>/`` and, on success, registers the model atomically. A job found running
with no live worker (the service died) is queued again and resumes from its checkpoint.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from .store import JobStore


HEARTBEAT_SECONDS = 2.0
STALE_SECONDS = 15.0  # a running job without a heartbeat for this long has lost its worker


def _heartbeat(store: JobStore, job_id: str, halt: threading.Event) -> None:
    while not halt.wait(HEARTBEAT_SECONDS):
        try:
            store.heartbeat(job_id)
        except Exception:  # noqa: BLE001 - a missed beat is retried; the lease tolerates several
            pass


def run_job(job_id: str, data_dir: str, device: str) -> None:
    """Worker process entry point."""
    import torch

    from n2n_core.card import write_card
    from n2n_core.data import open_dataset
    from n2n_core.noise import noise_from_dict
    from n2n_core.train import TrainConfig, Trainer

    from ..registry import register_model, write_active

    torch.set_grad_enabled(False)
    store = JobStore(Path(data_dir) / "jobs.sqlite3")
    job = store.get(job_id)
    if job is None:
        return
    p = job["params"]
    halt = threading.Event()
    threading.Thread(target=_heartbeat, args=(store, job_id, halt), daemon=True, name="n2n-heartbeat").start()
    try:
        noise = noise_from_dict(p["noise"])
        data_spec = "builtin" if p["dataset"] == "builtin" else str(Path(data_dir) / "datasets" / p["dataset"])
        cfg = TrainConfig(arch=p["arch"], steps=p["steps"], batch_size=p["batch_size"], patch_size=p["patch_size"],
                          init=p.get("init_weights"),
                          learning_rate=p["learning_rate"], seed=p["seed"], device=device, noise=noise.spec(),
                          data=p["dataset"], val_every=max(1, p.get("val_every") or max(p["steps"] // 10, 1)),
                          checkpoint_every=max(1, min(500, p["steps"] // 5 or 1)))
        data = open_dataset(data_spec, noise, seed=p["seed"])
        history: list[dict[str, Any]] = []
        last_poll = [0.0, False]

        def progress(info: dict[str, Any]) -> None:
            if info.get("val_psnr") is not None and (not history or history[-1]["step"] != info["step"]):
                history.append({"step": info["step"], "loss": info.get("loss"), "val_psnr": info["val_psnr"]})
            store.update_progress(
                job_id, {"step": info["step"], "total": info["total"], "fraction": round(info["fraction"], 4)},
                {"loss": info.get("loss"), "val_psnr": info.get("val_psnr"), "lr": info.get("lr"),
                 "elapsed_seconds": round(info.get("elapsed") or 0.0, 2), "history": history[-200:]})

        def should_stop() -> bool:
            now = time.monotonic()
            if now - last_poll[0] > 0.25:
                last_poll[0], last_poll[1] = now, store.cancel_requested(job_id)
            return bool(last_poll[1])

        out = Path(data_dir) / "jobs" / job_id / "model.safetensors"
        trainer = Trainer(cfg, data, out, progress=progress, should_stop=should_stop, progress_seconds=1.0)
        result = trainer.run(resume=True)
        if result.status == "cancelled":
            store.finish(job_id, "cancelled", note=f"cancelled at step {result.step}")
            return
        card = json.loads(write_card(out, trainer).read_text())
        card["job_id"] = job_id
        if p.get("init_model"):
            card["training"]["init"] = p["init_model"]  # the model id, not a server path
        model_id = register_model(Path(data_dir) / "models", out, card)
        store.update_progress(job_id, {"step": result.step, "total": cfg.steps, "fraction": 1.0},
                              {"loss": result.history[-1]["loss"] if result.history else None,
                               "val_psnr": trainer.last_val_psnr(), "elapsed_seconds": round(result.seconds, 2),
                               "history": [{k: h[k] for k in ("step", "loss", "val_psnr")} for h in result.history]})
        if p.get("activate_when_done"):
            write_active(Path(data_dir) / "active.json", model_id)
        store.finish(job_id, "succeeded", model_id=model_id)
    except Exception as e:  # noqa: BLE001 - every failure is recorded on the job
        error, note = f"{type(e).__name__}: {e}", traceback.format_exc(limit=3)[-2000:]
        if p.get("init_weights"):  # name the init model by its id, not by its path on this server
            error, note = (t.replace(p["init_weights"], repr(p["init_model"])) for t in (error, note))
        store.finish(job_id, "failed", error=error, note=note)
    finally:
        halt.set()


class Scheduler:
    """Starts one worker at a time, watches it, settles jobs orphaned by a previous run."""

    def __init__(self, store: JobStore, data_dir: Path, device: str, poll: float = 0.2,
                 cancel_grace: float = 15.0) -> None:
        self.store, self.data_dir, self.device = store, Path(data_dir), device
        self.poll, self.cancel_grace = poll, cancel_grace
        self._ctx = mp.get_context("spawn")
        self._proc: mp.process.BaseProcess | None = None
        self._job: str | None = None
        self._cancel_seen: float | None = None
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="n2n-scheduler")

    def recover(self) -> list[str]:
        """Settle running jobs whose worker stopped sending heartbeats (the service or the worker died).

        Such a job goes back to the queue and resumes from its last checkpoint; one that was being
        cancelled ends as cancelled. Jobs of a live worker (ours, or another instance's) are left alone.
        """
        recovered = []
        for job in self.store.stale_running(STALE_SECONDS):
            if job["id"] == self._job:
                continue
            if job["cancel_requested"]:
                self.store.finish(job["id"], "cancelled", note="worker lost while cancelling")
            else:
                self.store.requeue(job["id"], "service restarted: resuming from the last checkpoint")
            recovered.append(job["id"])
        return recovered

    def start(self) -> None:
        self.recover()
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._halt.set()
        self._thread.join(timeout)
        if self._proc is not None and self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
            if self._job:
                job = self.store.get(self._job)
                if job and job["cancel_requested"]:
                    self.store.finish(self._job, "cancelled", note="service stopped while cancelling")
                else:  # the next start resumes it from its checkpoint
                    self.store.requeue(self._job, "service stopped: resuming from the last checkpoint")

    def _loop(self) -> None:
        last_recover = time.monotonic()
        while not self._halt.is_set():
            try:
                self._tick()
                if time.monotonic() - last_recover > 5:
                    last_recover = time.monotonic()
                    self.recover()
            except Exception:  # noqa: BLE001 - the scheduler must outlive any one failure
                traceback.print_exc()
            self._halt.wait(self.poll)

    def _tick(self) -> None:
        if self._proc is None:
            job = self.store.claim_next()
            if job is None:
                return
            self._job, self._cancel_seen = job["id"], None
            self._proc = self._ctx.Process(target=run_job, args=(job["id"], str(self.data_dir), self.device),
                                           name=f"n2n-job-{job['id']}", daemon=True)
            self._proc.start()
            self.store.set_pid(job["id"], self._proc.pid)
            return
        job_id = self._job
        assert job_id is not None
        if self._proc.is_alive():
            if self.store.cancel_requested(job_id):
                self._cancel_seen = self._cancel_seen or time.monotonic()
                if time.monotonic() - self._cancel_seen > self.cancel_grace:
                    self._proc.kill()
            return
        self._proc.join()
        code = self._proc.exitcode
        self._proc, self._job = None, None
        job = self.store.get(job_id)
        if job and job["status"] == "running":
            if job["cancel_requested"]:
                self.store.finish(job_id, "cancelled", note="worker stopped on cancel")
            else:
                self.store.finish(job_id, "failed", error=f"training worker exited with code {code}")
