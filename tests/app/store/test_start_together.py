"""Replicas starting together (issue 22): 4 API replicas (`n2n serve`) and 2 `n2n worker` processes
started at the same instant on a fresh store, SQLite and PostgreSQL, all come up and find the schema at
its newest version, migrated once. A faster test opens many fresh stores from 8 processes behind a
multiprocessing barrier, round after round: the race that made a replica exit with "database is locked"
(turning a new SQLite file to WAL mode takes a lock SQLite does not wait for) lost about one round in 20 before the fix.

Each process is a real `n2n serve` / `n2n worker` (``n2n_core.cli.main``), started through a launcher that
first asks the kernel to kill it with its parent, imports the heavy modules (torch, the app), says so with
a file, then waits for one start file: the test creates it once every process is waiting, so that all six
open (and migrate) the store at the same instant, not one import time apart.

The PostgreSQL test skips (saying why) when no server answers; CI sets N2N_REQUIRE_POSTGRES=1, which turns
that skip into a failure. Waits poll for a state; their timeouts are hang guards only."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import text

from app.store import open_database, open_store

from tests.helpers import HANG_GUARD, TOKEN, poll_until

ROOT = Path(__file__).resolve().parents[3]
REPLICAS, WORKERS = 4, 2

LAUNCHER = """
import os, sys, time
from n2n_core.inference.runtime import die_with_parent
die_with_parent(int(sys.argv[1]))
import app.jobs.cli, app.main, n2n_core.cli, uvicorn  # the imports before the start line
open(sys.argv[2], "w").close()  # waiting
while not os.path.exists(sys.argv[3]):
    time.sleep(0.001)
sys.exit(n2n_core.cli.main(sys.argv[4:]))
"""


def open_stores(barrier, url: str | None, folder: str, rounds: int, results) -> None:
    """In each of several processes: ``rounds`` times, wait at the barrier with the others, then open (and
    migrate) the store in ``folder``/<round> (a new SQLite file each round, or ``url``)."""
    outcome = []
    for r in range(rounds):
        barrier.wait(timeout=HANG_GUARD)
        try:
            open_store(url, Path(folder) / str(r)).dispose()
            outcome.append("ok")
        except Exception as e:  # noqa: BLE001 - reported by the test
            outcome.append(f"round {r}: {type(e).__name__}: {e}")
    results.put(outcome)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_opening_a_fresh_store_at_the_same_instant_all_open_it(backend, tmp_path, request):
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    n, rounds = 8, 12 if backend == "sqlite" else 2  # PostgreSQL: one database, migrated in the first round
    ctx = multiprocessing.get_context("spawn")  # no fork of a process with torch's threads
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=open_stores, args=(barrier, url, str(tmp_path), rounds, results), daemon=True)
             for _ in range(n)]
    try:
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=HANG_GUARD) for _ in procs]
    finally:
        for p in procs:  # daemonic: they end with the test in any case
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
    failures = [o for outcome in outcomes for o in outcome if o != "ok"]
    assert not failures, failures[:5]
    assert all(p.exitcode == 0 for p in procs)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as r:
            return r.status == 200
    except OSError:
        return False


def logs_of(folder: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(folder.glob("*.log")))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_four_replicas_and_two_workers_started_at_once_on_a_fresh_store_all_come_up(backend, tmp_path, tiny_weights,
                                                                                      request):
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    data_dir, logs, marks = tmp_path / "data", tmp_path / "logs", tmp_path / "marks"
    logs.mkdir()
    marks.mkdir()
    go = tmp_path / "go"
    env = {**os.environ, "N2N_DATA_DIR": str(data_dir), "N2N_API_TOKEN": TOKEN, "N2N_WEIGHTS": str(tiny_weights),
           "N2N_EMBEDDED_WORKER": "0", "N2N_DEVICE": "cpu", "N2N_THREADS": "1", "OMP_NUM_THREADS": "1"}
    env.pop("N2N_DATABASE_URL", None)
    if url:
        env["N2N_DATABASE_URL"] = url
    ports = [free_port() for _ in range(REPLICAS)]
    commands = ([["serve", "--host", "127.0.0.1", "--port", str(p), "--log-level", "info"] for p in ports]
                + [["worker"] for _ in range(WORKERS)])
    names = [f"api-{i + 1}" for i in range(REPLICAS)] + [f"worker-{i + 1}" for i in range(WORKERS)]
    procs: list[subprocess.Popen] = []
    try:
        for name, command in zip(names, commands, strict=True):
            with open(logs / f"{name}.log", "wb") as fh:
                procs.append(subprocess.Popen(
                    [sys.executable, "-c", LAUNCHER, str(os.getpid()), str(marks / name), str(go), *command],
                    cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT))

        def all_waiting() -> bool:
            exited = [n for n, p in zip(names, procs, strict=True) if p.poll() is not None]
            assert not exited, f"{exited} exited before the start line:\n{logs_of(logs)}"
            return all((marks / n).exists() for n in names)

        poll_until(all_waiting, "every process waiting at the start line", timeout=HANG_GUARD)
        go.touch()  # all six open the fresh store now

        def all_up() -> bool:
            exited = {n: p.returncode for n, p in zip(names, procs, strict=True) if p.poll() is not None}
            assert not exited, f"exited at start: {exited}\n{logs_of(logs)}"
            workers_up = all("worker started" in (logs / f"{n}.log").read_text(errors="replace")
                             for n in names[REPLICAS:])
            return workers_up and all(ready(p) for p in ports)

        poll_until(all_up, "4 replicas ready and 2 workers started", every=0.5)
        assert "database is locked" not in logs_of(logs)

        db = open_database(url, data_dir)
        try:
            with db.engine.connect() as c:
                versions = c.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
                active = c.execute(text("SELECT count(*) FROM settings")).scalar()
        finally:
            db.dispose()
        head = sorted(p.stem.split("_")[0] for p in (ROOT / "app/store/migrations/versions").glob("0*.py"))[-1]
        assert versions == [head]  # migrated once, to the newest version
        assert active == 1  # one active-model setting, whoever wrote it first
    finally:
        for p in procs:  # every process ends with the test (the kernel kills them too if pytest dies)
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_a_cluster_that_fails_to_start_names_logs_that_outlive_its_temporary_folder(tmp_path):
    """benchmarks/scale.py runs each cluster in a temporary folder: its error used to name the logs folder
    inside it, deleted by the time anyone read the message."""
    import tempfile

    sys.path.insert(0, str(ROOT))
    from benchmarks.cluster import LocalCluster, nginx_binary

    if nginx_binary() is None:
        why = "nginx is not installed (Debian: apt-get install nginx); .ci/run installs it"
        if os.environ.get("N2N_REQUIRE_NGINX") == "1":
            pytest.fail(f"N2N_REQUIRE_NGINX=1 but {why}", pytrace=False)
        pytest.skip(why)
    kept = tmp_path / "kept"
    with tempfile.TemporaryDirectory(prefix="n2n-test-cluster-") as tmp:
        with pytest.raises(RuntimeError) as e:  # a replica exits at start: its store cannot be opened
            with LocalCluster(Path(tmp), replicas=1, keep_logs=kept,
                              env={"N2N_DATABASE_URL": "mysql://n2n@127.0.0.1:1/none"}):
                pass
    assert not Path(tmp).exists()
    assert "replica 1 exited with code 1" in str(e.value) and str(kept) in str(e.value)
    assert "N2N_DATABASE_URL" in (kept / "api-1.log").read_text()
