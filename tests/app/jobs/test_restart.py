"""Persistence across restarts: a second app instance on the same data directory, and workers that must
not outlive their service (kill -9 of the service, orphans of a service without the parent guards)."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.jobs.procs import heartbeat, proc_info
from app.jobs.scheduler import Scheduler
from app.main import create_app
from app.store import JobRow, JobStore

from tests.helpers import AUTH, make_settings, poll_until, wait_for

ROOT = Path(__file__).resolve().parents[3]
PARAMS = {"dataset": "builtin", "noise": {"kind": "gaussian", "sigma": 25}, "arch": "tiny", "steps": 4,
          "batch_size": 2, "learning_rate": 1e-3, "patch_size": 32, "seed": 0, "activate_when_done": False}
LONG = {**PARAMS, "steps": 1_000_000}  # runs until it is stopped

# A service process reduced to its scheduler (the thread that starts workers, as in the API).
SERVICE = """
import sys, threading
from pathlib import Path
from app.jobs.scheduler import Scheduler
from app.store import JobStore
data = Path(sys.argv[1])
Scheduler(JobStore(data / "jobs.sqlite3"), data, "cpu").start()
threading.Event().wait()
"""

# A service without the parent guards (as before they existed): it starts the worker with no parent pid.
UNGUARDED_SERVICE = """
import multiprocessing as mp, os, sys, threading
from pathlib import Path
from app.jobs.procs import process_start
from app.jobs.training import run_job
from app.store import JobStore
data = Path(sys.argv[1])
store = JobStore(data / "jobs.sqlite3")
job = store.claim_next()
p = mp.get_context("spawn").Process(target=run_job, args=(job.id, str(data), "cpu", None), daemon=True)
p.start()
store.set_pid(job.id, p.pid, os.getpid(), process_start(p.pid))
threading.Event().wait()
"""


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped (pids are reused only after wrapping)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def start_service(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], cwd=ROOT)


def training(store: JobStore, job_id: str) -> JobRow | None:
    """The job once its recorded worker has trained a step, else None."""
    job = store.get(job_id)
    assert job.status in ("queued", "running"), job
    ok = job.status == "running" and job.worker_pid and job.progress["step"] >= 1
    return job if ok else None


def kill_if_alive(pid: int, start: int | None) -> None:
    """Clean-up after a failure: SIGKILL the worker this test made, only if that pid is still that process."""
    info = proc_info(pid)
    if info is not None and info.start == start:
        os.kill(pid, signal.SIGKILL)


def test_jobs_and_models_survive_a_restart_and_orphans_resume(tmp_path, tiny_weights):
    data_dir = tmp_path / "data"
    s = make_settings(data_dir, tiny_weights)
    with TestClient(create_app(s)) as c:
        done = c.post("/train", json={"dataset": "builtin", "steps": 3, "arch": "tiny"}, headers=AUTH).json()["id"]
        job = wait_for(c, done)
        assert job["status"] == "succeeded"
        c.post(f"/models/{job['model_id']}/activate", headers=AUTH)

    # A job the dead service left "running" (its worker pid is gone).
    db = sqlite3.connect(data_dir / "jobs.sqlite3")
    now = time.time() - 60  # its worker died a minute ago: no heartbeat since (the lease is 15 s)
    db.execute("INSERT INTO jobs (id, status, params, progress, metrics, worker_pid, created_at, started_at, "
               "updated_at) VALUES ('j-orphan', 'running', ?, ?, ?, ?, ?, ?, ?)",
               (json.dumps(PARAMS), json.dumps({"step": 2, "total": 4, "fraction": 0.5}),
                json.dumps({"history": []}), dead_pid(), now, now, now))
    db.commit()
    db.close()

    with TestClient(create_app(s)) as c2:
        assert c2.get(f"/train/{done}").json()["status"] == "succeeded"
        assert c2.get("/models").json()["active"] == job["model_id"]
        orphan = wait_for(c2, "j-orphan")  # a hang guard only: training speed depends on the machine's load
        assert orphan["status"] == "succeeded" and "restarted" in (orphan["note"] or "")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_worker_dies_with_its_service_on_kill_9(tmp_path):
    data_dir = tmp_path / "data"
    store = JobStore(data_dir / "jobs.sqlite3")
    job_id = store.create(LONG).id
    service = start_service(SERVICE, data_dir)
    worker = None
    try:
        job = poll_until(lambda: training(store, job_id), "the worker training")
        worker = proc_info(job.worker_pid)
        assert worker is not None and worker.ppid == service.pid and worker.start == job.worker_start
        service.send_signal(signal.SIGKILL)
        service.wait()
        poll_until(lambda: proc_info(worker.pid) is None or proc_info(worker.pid).start != worker.start,
                   f"worker {worker.pid} gone after its service was killed")
    finally:
        service.kill()
        service.wait()
        if worker is not None:
            kill_if_alive(worker.pid, worker.start)


GRANDCHILD = """
import sys, threading
from app.jobs.procs import heartbeat
from app.store import JobStore
heartbeat(JobStore(sys.argv[1]), "j-none", threading.Event(), int(sys.argv[2]))  # until it is orphaned
"""
MIDDLE = """
import os, subprocess, sys, threading
p = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2], str(os.getpid())])
print(p.pid, flush=True)
threading.Event().wait()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_without_the_kernel_signal_the_heartbeat_thread_still_ends_an_orphaned_worker(tmp_path):
    # The grandchild runs only the heartbeat loop (no PR_SET_PDEATHSIG): the fallback used off Linux.
    middle = subprocess.Popen([sys.executable, "-c", MIDDLE, GRANDCHILD, str(tmp_path / "jobs.sqlite3")],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    grandchild = None
    try:
        pid = int(middle.stdout.readline())
        grandchild = poll_until(lambda: proc_info(pid), "the grandchild started")
        middle.send_signal(signal.SIGKILL)
        middle.wait()
        poll_until(lambda: proc_info(pid) is None or proc_info(pid).start != grandchild.start,
                   f"orphaned process {pid} gone")
    finally:
        middle.kill()
        middle.wait()
        if grandchild is not None:
            kill_if_alive(grandchild.pid, grandchild.start)


def test_the_heartbeat_thread_leaves_a_worker_with_its_parent_alone(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    job_id = store.create(PARAMS).id
    store.claim_next()
    first = store.get(job_id).heartbeat_at
    halt, orphaned = threading.Event(), threading.Event()
    beats = threading.Thread(target=heartbeat, args=(store, job_id, halt, os.getppid(), 0.05, orphaned.set))
    beats.start()
    try:
        poll_until(lambda: store.get(job_id).heartbeat_at > first, "a heartbeat")
        assert not orphaned.is_set()
    finally:
        halt.set()
        beats.join()
    gone = threading.Event()  # a parent pid that is not ours: the process would exit
    beats = threading.Thread(target=heartbeat, args=(store, job_id, threading.Event(), dead_pid(), 0.05, gone.set),
                             daemon=True)
    beats.start()
    poll_until(gone.is_set, "the parent check firing")
    beats.join()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_restart_stops_a_live_orphaned_worker_so_only_one_trains_and_cancel_works(tmp_path, tiny_weights):
    data_dir = tmp_path / "data"
    store = JobStore(data_dir / "jobs.sqlite3")
    job_id = store.create(LONG).id
    old_service = start_service(UNGUARDED_SERVICE, data_dir)
    orphan = None
    try:
        job = poll_until(lambda: training(store, job_id), "the first worker training")
        orphan = proc_info(job.worker_pid)
        assert orphan is not None and orphan.start == job.worker_start
        old_service.send_signal(signal.SIGKILL)
        old_service.wait()
        assert proc_info(orphan.pid) is not None  # without the guards it survives its service, heartbeating

        with TestClient(create_app(make_settings(data_dir, tiny_weights))) as c:
            # Startup recovery killed the orphan (it was still heartbeating, so its lease alone would not tell).
            poll_until(lambda: proc_info(orphan.pid) is None or proc_info(orphan.pid).start != orphan.start,
                       f"orphaned worker {orphan.pid} gone")
            job = poll_until(lambda: training(store, job_id), "the job training again under the new service")
            assert job.worker_pid != orphan.pid and "orphaned" in c.get(f"/train/{job_id}").json()["note"]
            assert proc_info(orphan.pid) is None or proc_info(orphan.pid).start != orphan.start  # one trainer
            assert c.post(f"/train/{job_id}/cancel", headers=AUTH).status_code == 202
            assert wait_for(c, job_id)["status"] == "cancelled"
    finally:
        old_service.kill()
        old_service.wait()
        if orphan is not None:
            kill_if_alive(orphan.pid, orphan.start)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_recovery_never_kills_a_process_that_only_reuses_the_workers_pid(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    bystander = subprocess.Popen([sys.executable, "-c", "import threading; threading.Event().wait()"])
    try:
        info = poll_until(lambda: proc_info(bystander.pid), "the bystander started")
        a, b = store.create(PARAMS).id, store.create(PARAMS).id
        for job_id in (a, b):
            store.claim_next()
        store.set_pid(a, bystander.pid, dead_pid(), info.start + 1)  # the pid, but another process's start time
        store.set_pid(b, bystander.pid, None, None)  # a row from before start times: not a spawned worker
        # A short lease (configurable) instead of waiting 15 s; poll until it has run out.
        scheduler = Scheduler(store, tmp_path, "cpu", stale_seconds=0.5, heartbeat_seconds=0.1)
        recovered = set()
        poll_until(lambda: recovered.update(scheduler.recover()) or recovered == {a, b}, "both jobs recovered")
        assert {store.get(a).status, store.get(b).status} == {"queued"}
        assert bystander.poll() is None and proc_info(bystander.pid) == info  # still alive, untouched
    finally:
        bystander.kill()
        bystander.wait()
