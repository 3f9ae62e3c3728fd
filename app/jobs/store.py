"""Training jobs in SQLite (WAL) under the data directory; shared by the API and worker processes.

Every call opens its own short-lived connection, so the store is safe across threads and
processes; WAL lets readers run while a worker writes progress.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED = ("succeeded", "failed", "cancelled")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    params TEXT NOT NULL,
    progress TEXT NOT NULL,
    metrics TEXT NOT NULL,
    model_id TEXT,
    error TEXT,
    note TEXT,
    worker_pid INTEGER,
    worker_parent INTEGER,
    worker_start INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    updated_at REAL NOT NULL,
    heartbeat_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, created_at);
"""


class JobStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._conn() as c:
            c.execute("PRAGMA journal_mode=WAL")
            c.executescript(SCHEMA)
            cols = {r["name"] for r in c.execute("PRAGMA table_info(jobs)")}
            if "heartbeat_at" not in cols:  # databases made before the lease existed
                c.execute("ALTER TABLE jobs ADD COLUMN heartbeat_at REAL")
            for col in ("worker_parent", "worker_start"):  # databases made before orphans were recognised
                if col not in cols:
                    c.execute(f"ALTER TABLE jobs ADD COLUMN {col} INTEGER")

    @contextmanager
    def _conn(self):
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA busy_timeout=30000")
            yield conn
        finally:
            conn.close()

    @staticmethod
    def _row(r: sqlite3.Row | None) -> dict[str, Any] | None:
        if r is None:
            return None
        d = dict(r)
        for k in ("params", "progress", "metrics"):
            d[k] = json.loads(d[k])
        d["cancel_requested"] = bool(d["cancel_requested"])
        return d

    # -- create / read ---------------------------------------------------------------------------
    def create(self, params: dict[str, Any]) -> dict[str, Any]:
        job_id = "j-" + uuid.uuid4().hex[:12]
        now = time.time()
        progress = {"step": 0, "total": params.get("steps", 0), "fraction": 0.0}
        metrics = {"loss": None, "val_psnr": None, "history": []}
        with self._conn() as c:
            c.execute("INSERT INTO jobs (id, status, params, progress, metrics, created_at, updated_at) "
                      "VALUES (?, 'queued', ?, ?, ?, ?, ?)",
                      (job_id, json.dumps(params), json.dumps(progress), json.dumps(metrics), now, now))
        # What was inserted (a re-read could already see the scheduler's claim).
        return {"id": job_id, "status": "queued", "params": params, "progress": progress, "metrics": metrics,
                "model_id": None, "error": None, "note": None, "worker_pid": None, "worker_parent": None,
                "worker_start": None, "cancel_requested": False,
                "created_at": now, "started_at": None, "finished_at": None, "updated_at": now, "heartbeat_at": None}

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._conn() as c:
            return self._row(c.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())

    def list(self, limit: int = 200) -> list[dict[str, Any]]:
        with self._conn() as c:
            rows = c.execute("SELECT * FROM jobs ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
        return [self._row(r) for r in rows]  # type: ignore[misc]

    def counts(self) -> dict[str, int]:
        with self._conn() as c:
            rows = c.execute("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status").fetchall()
        return {s: 0 for s in STATUSES} | {r["status"]: r["n"] for r in rows}

    # -- transitions -----------------------------------------------------------------------------
    def claim_next(self) -> dict[str, Any] | None:
        """Atomically move the oldest queued job to running."""
        with self._conn() as c:
            c.execute("BEGIN IMMEDIATE")
            r = c.execute("SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at LIMIT 1").fetchone()
            if r is None:
                c.execute("COMMIT")
                return None
            now = time.time()
            c.execute("UPDATE jobs SET status = 'running', started_at = COALESCE(started_at, ?), updated_at = ?, "
                      "heartbeat_at = ? WHERE id = ?", (now, now, now, r["id"]))
            c.execute("COMMIT")
        return self.get(r["id"])

    def set_pid(self, job_id: str, pid: int | None, parent: int | None = None, start: int | None = None) -> None:
        """Record the job's worker: its pid, the pid of the process that started it, and its start time
        (clock ticks after boot, /proc/<pid>/stat) so that a reused pid is never taken for the worker."""
        with self._conn() as c:
            c.execute("UPDATE jobs SET worker_pid = ?, worker_parent = ?, worker_start = ?, updated_at = ? "
                      "WHERE id = ?", (pid, parent, start, time.time(), job_id))

    def update_progress(self, job_id: str, progress: dict[str, Any], metrics: dict[str, Any]) -> None:
        with self._conn() as c:
            c.execute("UPDATE jobs SET progress = ?, metrics = ?, updated_at = ? WHERE id = ? AND status = 'running'",
                      (json.dumps(progress), json.dumps(metrics), time.time(), job_id))

    def finish(self, job_id: str, status: str, *, model_id: str | None = None, error: str | None = None,
               note: str | None = None) -> None:
        assert status in FINISHED
        now = time.time()
        with self._conn() as c:
            c.execute("UPDATE jobs SET status = ?, model_id = COALESCE(?, model_id), error = COALESCE(?, error), "
                      "note = COALESCE(?, note), finished_at = ?, updated_at = ?, "
                      "worker_pid = NULL, worker_parent = NULL, worker_start = NULL "
                      "WHERE id = ? AND status NOT IN ('succeeded', 'failed', 'cancelled')",
                      (status, model_id, error, note, now, now, job_id))

    def request_cancel(self, job_id: str) -> dict[str, Any] | None:
        """Flag a job for cancellation; a queued job is cancelled at once (one atomic statement)."""
        now = time.time()
        with self._conn() as c:
            c.execute(
                "UPDATE jobs SET cancel_requested = 1, updated_at = ?, "
                "finished_at = CASE WHEN status = 'queued' THEN ? ELSE finished_at END, "
                "note = CASE WHEN status = 'queued' THEN 'cancelled before it started' ELSE note END, "
                "status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END "
                "WHERE id = ?", (now, now, job_id))
        return self.get(job_id)

    def heartbeat(self, job_id: str) -> None:
        with self._conn() as c:
            c.execute("UPDATE jobs SET heartbeat_at = ? WHERE id = ? AND status = 'running'", (time.time(), job_id))

    def stale_running(self, max_age: float) -> list[dict[str, Any]]:
        """Running jobs whose worker has not sent a heartbeat for ``max_age`` seconds."""
        cutoff = time.time() - max_age
        with self._conn() as c:
            rows = c.execute("SELECT * FROM jobs WHERE status = 'running' AND COALESCE(heartbeat_at, updated_at) < ?",
                             (cutoff,)).fetchall()
        return [self._row(r) for r in rows]  # type: ignore[misc]

    def cancel_requested(self, job_id: str) -> bool:
        with self._conn() as c:
            r = c.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(r and r["cancel_requested"])

    def requeue(self, job_id: str, note: str) -> None:
        with self._conn() as c:
            c.execute("UPDATE jobs SET status = 'queued', worker_pid = NULL, worker_parent = NULL, "
                      "worker_start = NULL, note = ?, updated_at = ? "
                      "WHERE id = ? AND status = 'running'", (note, time.time(), job_id))

    def running(self) -> list[dict[str, Any]]:
        with self._conn() as c:
            rows = c.execute("SELECT * FROM jobs WHERE status = 'running'").fetchall()
        return [self._row(r) for r in rows]  # type: ignore[misc]
