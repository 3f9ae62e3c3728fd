"""Data-parallel training jobs: ``POST /train`` with ``nproc_per_node`` runs the job in N local processes
(gloo on the CPU here) with the same progress, cancel, hand-back and resume as a one-process job.

Waits poll for a state; their timeouts are hang guards only."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
from fastapi.testclient import TestClient

from app.jobs.procs import ProcInfo, proc_info
from app.main import create_app
from app.store import JobStore, open_database
from n2n_core.inference.runtime import cores
from n2n_core.weights import load

from tests.helpers import AUTH, make_settings, poll_until, wait_for

SMALL = {"dataset": "builtin", "arch": "tiny", "steps": 12, "batch_size": 4, "patch_size": 32, "seed": 3}
LONG = {**SMALL, "steps": 1_000_000, "nproc_per_node": 2}


def app_on(data_dir: Path, weights: Path, **kw) -> TestClient:
    """An API with its embedded worker; a long grace so that a loaded machine still checkpoints on stop."""
    return TestClient(create_app(make_settings(data_dir, weights, cancel_grace_seconds=240.0, **kw)))


def children(pid: int) -> list[ProcInfo]:
    """The live processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := proc_info(int(entry.name))) is not None and info.ppid == pid:
            found.append(info)
    return found


def gone(procs: list[ProcInfo]) -> bool:
    return all((now := proc_info(p.pid)) is None or now.start != p.start for p in procs)


def test_two_processes_train_the_model_that_one_process_trains(tmp_path, tiny_weights):
    with app_on(tmp_path / "data", tiny_weights) as c:
        ids = [c.post("/train", json={**SMALL, "nproc_per_node": n}, headers=AUTH).json()["id"] for n in (2, 1)]
        jobs = [wait_for(c, job_id) for job_id in ids]
        assert [j["status"] for j in jobs] == ["succeeded", "succeeded"], jobs
        parallel, single = jobs
        assert parallel["params"]["nproc_per_node"] == 2 and "2 processes" in parallel["note"]
        assert parallel["progress"]["step"] == 12 and parallel["metrics"]["history"]
        cards = {m["id"]: m["card"] for m in c.get("/models").json()["models"]}
        assert cards[parallel["model_id"]]["job_id"] == parallel["id"]
    models = [load(tmp_path / "data" / "models" / f"{j['model_id']}.safetensors").state_dict() for j in jobs]
    assert models[0].keys() == models[1].keys()
    for k in models[0]:  # the same batches, split over two ranks: the same weights (float32 rounding apart)
        torch.testing.assert_close(models[0][k], models[1][k], rtol=1e-4, atol=1e-5)


def test_a_data_parallel_job_reports_progress_is_handed_back_resumes_and_is_cancelled(tmp_path, tiny_weights):
    data_dir = tmp_path / "data"
    with app_on(data_dir, tiny_weights) as c:
        job_id = c.post("/train", json=LONG, headers=AUTH).json()["id"]
        job = poll_until(lambda: (j := c.get(f"/train/{job_id}").json())["progress"]["step"] >= 3 and j,
                         "the data-parallel job training")
        # The worker shown is the one that claimed the job (here: the API with its embedded worker).
        assert job["status"] == "running" and job["worker"] == {"host": socket.gethostname(), "pid": os.getpid()}
        launcher = proc_info(JobStore(open_database(None, data_dir)).get(job_id).worker_pid)
        assert launcher is not None and launcher.ppid == os.getpid()
        ranks = poll_until(lambda: len(found := children(launcher.pid)) >= 2 and found, "the two ranks")
    # The service stopped: the job was checkpointed and handed back, and no process of it is left.
    store = JobStore(open_database(None, data_dir))
    job = poll_until(lambda: (j := store.get(job_id)).status == "queued" and j, "the job handed back")
    assert "handed back at step" in job.note
    stopped_at = int(job.note.split("handed back at step ")[1].split()[0])
    assert stopped_at >= 3 and (data_dir / "jobs" / job_id / "model.ckpt.safetensors").exists()
    poll_until(lambda: gone([launcher, *ranks]), "the training processes gone")

    with app_on(data_dir, tiny_weights) as c:
        steps: list[int] = []

        def resumed():
            j = c.get(f"/train/{job_id}").json()
            if j["status"] == "running" and j["progress"]["step"] > 0:
                steps.append(j["progress"]["step"])
            return j if j["status"] == "running" and j["progress"]["step"] > stopped_at + 2 else None

        poll_until(resumed, "the job resumed past its checkpoint", every=0.05)
        assert min(steps) >= stopped_at  # from its checkpoint, not from step 0
        launcher = proc_info(store.get(job_id).worker_pid)
        ranks = children(launcher.pid) if launcher else []
        assert c.post(f"/train/{job_id}/cancel", headers=AUTH).status_code == 202
        job = wait_for(c, job_id)
        assert job["status"] == "cancelled" and job["worker"] is None and "cancelled at step" in job["note"]
        poll_until(lambda: gone([p for p in (launcher, *ranks) if p]), "the cancelled job's processes gone")


def test_more_processes_than_a_host_offers_are_refused_with_the_reason(tmp_path, tiny_weights):
    with app_on(tmp_path / "data", tiny_weights) as c:
        too_many = cores() + 1
        r = c.post("/train", json={**SMALL, "batch_size": 64, "nproc_per_node": too_many}, headers=AUTH)
        assert r.status_code == 422 and f"nproc_per_node={too_many} is more than" in r.text
        r = c.post("/train", json={**SMALL, "batch_size": 2, "nproc_per_node": 3}, headers=AUTH)
        assert r.status_code == 422 and "batch_size (2) must be at least nproc_per_node (3)" in r.text
    # N2N_MAX_NPROC_PER_NODE speaks for the worker hosts; a worker host with fewer cores fails the job, saying why.
    # (64 processes would exceed the training-memory estimate of a CI machine: that check is not this test's)
    with app_on(tmp_path / "data", tiny_weights, max_nproc_per_node=64, train_memory=1 << 40) as c:
        assert c.post("/train", json={**SMALL, "batch_size": 64, "nproc_per_node": 65},
                      headers=AUTH).status_code == 422
        job_id = c.post("/train", json={**SMALL, "batch_size": 64, "nproc_per_node": 64}, headers=AUTH).json()["id"]
        job = wait_for(c, job_id)
        assert job["status"] == "failed" and "nproc_per_node=64 is more than this machine's" in job["error"]
        assert str(tmp_path) not in job["error"]
