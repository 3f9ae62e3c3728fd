"""The shared store: several API replicas and `n2n worker` processes on one PostgreSQL database (and the
same code on SQLite), claim exclusivity, leases, hand-back, cancel and activation across replicas,
migration of an existing SQLite data directory, and bad database URLs.

The PostgreSQL tests skip (saying why) when no server answers; CI sets N2N_REQUIRE_POSTGRES=1, which
turns that skip into a failure. Waits poll for a state; their timeouts are hang guards only."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text
from sqlalchemy.exc import OperationalError

from app.jobs.scheduler import Scheduler
from app.main import create_app
from app.store import JobStore, StoreConfigError, open_database, open_store

from tests.helpers import AUTH, make_settings, png_bytes, poll_until, rgb

ROOT = Path(__file__).resolve().parents[3]
LONG = {"dataset": "builtin", "arch": "tiny", "steps": 1_000_000, "batch_size": 2, "patch_size": 32}
CHECKPOINT_EVERY = 500  # what the worker uses for a job this long: min(500, steps // 5)

CLAIMER = """
import json, os, sys, time
from pathlib import Path
from app.store import JobStore, open_database
store = JobStore(open_database(sys.argv[1] or None, Path(sys.argv[2])))
while not Path(sys.argv[3]).exists():
    time.sleep(0.01)
got = []
while (job := store.claim_next("test-host", os.getpid())) is not None:
    got.append(job.id)
print(json.dumps(got))
"""


# -- helpers ---------------------------------------------------------------------------------------
def start_worker(data_dir: Path, url: str, log: Path, **env: str) -> subprocess.Popen:
    """An `n2n worker` process on the database ``url`` with a shorter lease than the default 15 s."""
    environ = {**os.environ, "N2N_DATABASE_URL": url, "N2N_DATA_DIR": str(data_dir), "N2N_DEVICE": "cpu",
               "N2N_JOB_LEASE_SECONDS": "6", "N2N_JOB_HEARTBEAT_SECONDS": "0.5", "OMP_NUM_THREADS": "1", **env}
    with open(log, "ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "n2n_core.cli", "worker"], cwd=ROOT, env=environ,
                                stdout=fh, stderr=subprocess.STDOUT)


def stop_all(procs: list[subprocess.Popen]) -> None:
    """Clean-up: SIGKILL the worker processes this test started (their training processes die with them)."""
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def replica(data_dir: Path, weights: Path, url: str) -> TestClient:
    """An API replica that only serves HTTP: the jobs are run by `n2n worker` processes."""
    return TestClient(create_app(make_settings(data_dir, weights, database_url=url, embedded_worker=False)))


def job_of(client: TestClient, job_id: str) -> dict:
    return client.get(f"/train/{job_id}").json()


def running_under(client: TestClient, job_id: str, pid: int, min_step: int = 1) -> dict | None:
    job = job_of(client, job_id)
    ok = (job["status"] == "running" and (job["worker"] or {}).get("pid") == pid
          and job["progress"]["step"] >= min_step)
    return job if ok else None


# -- claims -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_each_job_is_claimed_by_exactly_one_of_many_racing_workers(backend, tmp_path, request):
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    store = JobStore(open_store(url, tmp_path))
    ids = {store.create({"steps": 1}).id for _ in range(60)}
    go = tmp_path / "go"
    claimers = [subprocess.Popen([sys.executable, "-c", CLAIMER, url or "", str(tmp_path), str(go)], cwd=ROOT,
                                 stdout=subprocess.PIPE, text=True) for _ in range(6)]
    try:
        time.sleep(1.0)  # let them all connect, then start them together
        go.touch()
        claimed = [json.loads(p.communicate(timeout=300)[0]) for p in claimers]
    finally:
        stop_all(claimers)
    every = [job_id for got in claimed for job_id in got]
    assert sorted(every) == sorted(ids)  # all claimed, none twice
    assert store.counts()["running"] == 60 and store.counts()["queued"] == 0


# -- workers ----------------------------------------------------------------------------------------
def test_two_workers_run_two_jobs_a_killed_workers_job_resumes_elsewhere_and_cancel_works_anywhere(
        tmp_path, tiny_weights, pg_url):
    data_dir = tmp_path / "data"
    workers: list[subprocess.Popen] = []
    with replica(data_dir, tiny_weights, pg_url) as one, replica(data_dir, tiny_weights, pg_url) as two:
        a = one.post("/train", json=LONG, headers=AUTH).json()["id"]
        b = two.post("/train", json=LONG, headers=AUTH).json()["id"]
        try:
            workers += [start_worker(data_dir, pg_url, tmp_path / f"w{i}.log") for i in (1, 2)]
            w1, w2 = workers

            # Two workers, two jobs at the same time; each job names its worker process.
            def both_running():
                jobs = [job_of(one, j) for j in (a, b)]
                pids = {(j["worker"] or {}).get("pid") for j in jobs if j["status"] == "running"}
                return jobs if pids == {w1.pid, w2.pid} else None

            jobs = poll_until(both_running, "both jobs running, one per worker")
            assert all(j["worker"]["host"] == socket.gethostname() for j in jobs)
            killed_job = a if jobs[0]["worker"]["pid"] == w1.pid else b
            other_job = b if killed_job == a else a

            # kill -9 of a worker once its job has a checkpoint: the job is reclaimed when the lease
            # runs out and resumes from that checkpoint under another worker.
            poll_until(lambda: running_under(one, killed_job, w1.pid, CHECKPOINT_EVERY + 1),
                       "the first checkpoint written")
            w1.send_signal(signal.SIGKILL)
            w1.wait()
            workers.append(start_worker(data_dir, pg_url, tmp_path / "w3.log"))
            w3 = workers[-1]
            steps_seen: list[int] = []

            def resumed_under_w3():
                job = job_of(two, killed_job)
                if job["status"] == "running" and (job["worker"] or {}).get("pid") == w3.pid:
                    steps_seen.append(job["progress"]["step"])
                    return job if job["progress"]["step"] > CHECKPOINT_EVERY + 50 else None
                return None

            job = poll_until(resumed_under_w3, "the killed worker's job training again under a new worker",
                             every=0.05)
            assert "lost its worker" in job["note"]
            assert min(steps_seen) >= CHECKPOINT_EVERY  # resumed from its checkpoint, not from step 0
            assert job_of(one, other_job)["worker"]["pid"] == w2.pid  # the other job never moved

            # Cancel through the replica that did not start the job, whichever worker runs it.
            for job_id, via in ((killed_job, one), (other_job, two)):
                assert via.post(f"/train/{job_id}/cancel", headers=AUTH).status_code == 202
            for job_id in (killed_job, other_job):
                done = poll_until(lambda: job_of(one, job_id)["status"] in ("cancelled", "failed", "succeeded")
                                  and job_of(one, job_id), f"job {job_id} cancelled")
                assert done["status"] == "cancelled" and done["worker"] is None
        finally:
            stop_all(workers)


def test_sigterm_checkpoints_the_running_job_and_hands_it_back(tmp_path, tiny_weights, pg_url):
    data_dir = tmp_path / "data"
    worker = None
    with replica(data_dir, tiny_weights, pg_url) as api:
        job_id = api.post("/train", json=LONG, headers=AUTH).json()["id"]
        try:
            worker = start_worker(data_dir, pg_url, tmp_path / "w.log")
            job = poll_until(lambda: running_under(api, job_id, worker.pid, 10), "the job training")
            assert job["worker"] == {"host": socket.gethostname(), "pid": worker.pid}  # not its training child
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=300) == 0
            job = job_of(api, job_id)
            assert job["status"] == "queued" and "handed back" in job["note"] and job["worker"] is None
            checkpoint = data_dir / "jobs" / job_id
            assert any(checkpoint.glob("*ckpt*")), list(checkpoint.iterdir())
        finally:
            stop_all([worker] if worker else [])
        assert api.post(f"/train/{job_id}/cancel", headers=AUTH).json()["status"] == "cancelled"


# -- activation ------------------------------------------------------------------------------------
def test_activation_on_one_replica_reaches_the_others(tmp_path, tiny_weights, pg_url):
    data_dir = tmp_path / "data"
    with replica(data_dir, tiny_weights, pg_url) as one, replica(data_dir, tiny_weights, pg_url) as two:
        assert two.get("/readyz").json()["model"] == "tiny"
        assert one.post("/models/fast/activate", headers=AUTH).status_code == 200
        # The design says within 5 s (each replica reads the active model at most 1 s apart); the
        # guard here is generous so that a loaded machine cannot fail the test.
        poll_until(lambda: two.get("/readyz").json().get("model") == "fast", "replica two serving 'fast'",
                   timeout=60)
        r = two.post("/denoise", content=png_bytes(rgb(16, 16)), headers={"content-type": "image/png"})
        assert r.status_code == 200 and r.headers["x-model-id"] == "fast"
        assert two.get("/models").json()["active"] == "fast"


# -- migration -------------------------------------------------------------------------------------
LEGACY_SCHEMA = """
CREATE TABLE jobs (id TEXT PRIMARY KEY, status TEXT NOT NULL, params TEXT NOT NULL, progress TEXT NOT NULL,
    metrics TEXT NOT NULL, model_id TEXT, error TEXT, note TEXT, worker_pid INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, started_at REAL, finished_at REAL,
    updated_at REAL NOT NULL);
CREATE INDEX jobs_status ON jobs(status, created_at);
ALTER TABLE jobs ADD COLUMN heartbeat_at REAL;
"""


def test_an_existing_sqlite_data_dir_keeps_its_jobs_models_datasets_and_active_model(tmp_path, tiny_weights):
    data_dir = tmp_path / "data"
    (data_dir / "models").mkdir(parents=True)
    db = sqlite3.connect(data_dir / "jobs.sqlite3")
    db.executescript(LEGACY_SCHEMA)  # a jobs table from before the shared store (one ad-hoc column)
    now = time.time()
    db.execute("INSERT INTO jobs (id, status, params, progress, metrics, model_id, created_at, finished_at, "
               "updated_at) VALUES ('j-legacy', 'succeeded', ?, ?, ?, 'm-legacy', ?, ?, ?)",
               (json.dumps({"dataset": "builtin", "steps": 3}), json.dumps({"step": 3, "total": 3, "fraction": 1}),
                json.dumps({"history": []}), now, now, now))
    db.commit()
    db.close()
    shutil.copyfile(tiny_weights, data_dir / "models" / "m-legacy.safetensors")
    (data_dir / "models" / "m-legacy.json").write_text(json.dumps({"name": "legacy", "id": "m-legacy"}))
    (data_dir / "active.json").write_text(json.dumps({"active": "m-legacy", "setting": str(tiny_weights)}))
    ds = data_dir / "datasets" / "d-legacy"
    ds.mkdir(parents=True)
    (ds / "00000_a.png").write_bytes(png_bytes(rgb(64, 64)))
    (ds / "dataset.json").write_text(json.dumps({"id": "d-legacy", "kind": "clean", "images": 1, "bytes": 10}))

    with TestClient(create_app(make_settings(data_dir, tiny_weights))) as c:
        job = c.get("/train/j-legacy").json()
        assert job["status"] == "succeeded" and job["model_id"] == "m-legacy"
        models = c.get("/models").json()
        assert models["active"] == "m-legacy"
        assert {m["id"]: m["card"] for m in models["models"]}["m-legacy"]["name"] == "legacy"
        assert c.get("/datasets").json() == [{"id": "d-legacy", "kind": "clean", "images": 1, "bytes": 10}]
        new = c.post("/train", json={"dataset": "d-legacy", "arch": "tiny", "steps": 2, "batch_size": 2,
                                     "patch_size": 32}, headers=AUTH)
        assert new.status_code == 202
        c.post(f"/train/{new.json()['id']}/cancel", headers=AUTH)
    engine = open_database(None, data_dir).engine
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0003"
    assert {"worker_parent", "worker_host", "lease", "nproc_per_node"} <= {
        col["name"] for col in inspect(engine).get_columns("jobs")}


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["postgresql://n2n:s3cret-pw@127.0.0.1:1/nowhere", "mysql://n2n:s3cret-pw@db/x",
                                 "not a url"])
def test_a_wrong_database_url_fails_at_start_with_one_line_without_the_password(url, tmp_path, tiny_weights):
    env = {**os.environ, "N2N_DATABASE_URL": url, "N2N_DATA_DIR": str(tmp_path)}
    for command in (["worker"], ["serve", "--port", "0"]):
        r = subprocess.run([sys.executable, "-m", "n2n_core.cli", *command], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 1, (command, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "N2N_DATABASE_URL" in lines[0] and "s3cret-pw" not in r.stderr, (command, r.stderr)
    with pytest.raises(StoreConfigError) as e:
        with TestClient(create_app(make_settings(tmp_path / "api", tiny_weights, database_url=url))):
            pass
    assert "N2N_DATABASE_URL" in str(e.value) and "s3cret-pw" not in str(e.value)


class UnreachableStore:
    """A job store whose database is gone: every call fails as a lost connection does."""

    def __init__(self) -> None:
        self.calls = 0

    def _fail(self, *args, **kwargs):
        self.calls += 1
        raise OperationalError("SELECT 1", {}, ConnectionError("server closed the connection unexpectedly"))

    claim_next = running = get = _fail


def test_a_worker_that_loses_the_database_retries_with_backoff(tmp_path):
    store = UnreachableStore()
    scheduler = Scheduler(store, tmp_path, "cpu", poll=0.05)  # type: ignore[arg-type]
    scheduler.start()
    try:
        time.sleep(2.0)
        assert scheduler._thread.is_alive()  # it does not crash
        # Without backoff it would have tried about 40 times (every 0.05 s); with it, far fewer. A slow
        # machine only makes fewer attempts, so this bound never depends on speed.
        assert 1 <= store.calls <= 10, store.calls
    finally:
        scheduler.stop(timeout=5)
