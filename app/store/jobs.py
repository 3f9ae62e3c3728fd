"""Training jobs in the shared database: the queue that API replicas fill and workers drain.

A queued job is claimed by exactly one worker (``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL; on
SQLite every transaction is ``BEGIN IMMEDIATE``). A claim hands out a lease token: while the job runs,
its worker renews the lease by heartbeat, and the writes of a running job (progress, heartbeat,
finish, hand-back) given a token only land while the token is still the job's. A worker whose lease
ran out and whose job went to another worker therefore finds out at its next heartbeat, and can no
longer overwrite the new run.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from app.store.database import Database, open_database
from app.store.migrate import upgrade
from app.store.status import FINISHED, STATUSES, JobRow, JobStatus
from app.store.tables import jobs

__all__ = ["FINISHED", "STATUSES", "JobRow", "JobStatus", "JobStore"]

# the statuses as the queries bind them (plain strings, what the table holds)
QUEUED, RUNNING, CANCELLED = JobStatus.QUEUED.value, JobStatus.RUNNING.value, JobStatus.CANCELLED.value
JSON_FIELDS = ("params", "progress", "metrics")
_WORKER_CLEARED = {"worker_pid": None, "worker_parent": None, "worker_start": None, "worker_host": None,
                   "lease": None}


class JobStore:
    """Jobs on ``target``: a Database (the shared store), or the path of a SQLite file (opened, and
    migrated to the newest schema, here: for tools and tests that work on one file)."""

    def __init__(self, target: Database | Path | str) -> None:
        if isinstance(target, Database):
            self.db = target
        else:
            path = Path(target)
            self.db = open_database(f"sqlite:///{path}", path.parent)
            upgrade(self.db, path.parent)
        self.engine = self.db.engine

    @staticmethod
    def _row(r: Any) -> JobRow | None:
        if r is None:
            return None
        d = dict(r._mapping)
        for k in JSON_FIELDS:
            d[k] = json.loads(d[k])
        return JobRow.from_mapping(d)

    # -- create / read ---------------------------------------------------------------------------
    def create(self, params: dict[str, Any]) -> JobRow:
        job_id = "j-" + uuid.uuid4().hex[:12]
        now = time.time()
        progress = {"step": 0, "total": params.get("steps", 0), "fraction": 0.0}
        metrics = {"loss": None, "val_psnr": None, "history": []}
        row = {"id": job_id, "status": QUEUED, "params": json.dumps(params), "progress": json.dumps(progress),
               "metrics": json.dumps(metrics), "nproc_per_node": params.get("nproc_per_node"),
               "cancel_requested": 0, "created_at": now, "updated_at": now}
        with self.engine.begin() as c:
            c.execute(jobs.insert().values(**row))
        # What was inserted (a re-read could already see a worker's claim).
        return JobRow.from_mapping({**{col.name: None for col in jobs.columns}, **row, "params": params,
                                    "progress": progress, "metrics": metrics, "cancel_requested": False})

    def get(self, job_id: str) -> JobRow | None:
        with self.engine.connect() as c:
            return self._row(c.execute(select(jobs).where(jobs.c.id == job_id)).first())

    def list(self, limit: int = 200) -> list[JobRow]:
        with self.engine.connect() as c:
            rows = c.execute(select(jobs).order_by(jobs.c.created_at.desc()).limit(limit)).all()
        return [self._row(r) for r in rows]  # type: ignore[misc]

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as c:
            rows = c.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status)).all()
        return {s.value: 0 for s in STATUSES} | {status: n for status, n in rows}

    def running(self) -> list[JobRow]:
        with self.engine.connect() as c:
            rows = c.execute(select(jobs).where(jobs.c.status == RUNNING)).all()
        return [self._row(r) for r in rows]  # type: ignore[misc]

    def cancel_requested(self, job_id: str) -> bool:
        with self.engine.connect() as c:
            r = c.execute(select(jobs.c.cancel_requested).where(jobs.c.id == job_id)).first()
        return bool(r and r[0])

    # -- transitions -----------------------------------------------------------------------------
    def claim_next(self, host: str | None = None, owner_pid: int | None = None) -> JobRow | None:
        """Atomically move the oldest queued job to running for the worker (``host``, ``owner_pid``),
        with a fresh lease token (in the returned row's ``lease``); None when nothing is queued."""
        lease = uuid.uuid4().hex
        with self.engine.begin() as c:
            pick = (select(jobs.c.id).where(jobs.c.status == QUEUED).order_by(jobs.c.created_at).limit(1)
                    .with_for_update(skip_locked=True))
            job_id = c.execute(pick).scalar()
            if job_id is None:
                return None
            now = time.time()
            c.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.status == QUEUED).values(
                status=RUNNING, started_at=func.coalesce(jobs.c.started_at, now), updated_at=now,
                heartbeat_at=now, lease=lease, worker_host=host, worker_parent=owner_pid,
                worker_pid=None, worker_start=None))
        return self.get(job_id)

    def _running(self, job_id: str, lease: str | None):
        """The WHERE clause of a write to a running job (by the lease holder, when ``lease`` is given)."""
        cond = [jobs.c.id == job_id, jobs.c.status == RUNNING]
        if lease is not None:
            cond.append(jobs.c.lease == lease)
        return cond

    def set_pid(self, job_id: str, pid: int | None, parent: int | None = None, start: int | None = None) -> None:
        """Record the job's training process: its pid, the pid of the worker process that started it, and
        its start time (clock ticks after boot, /proc/<pid>/stat) so that a reused pid is never taken
        for it."""
        with self.engine.begin() as c:
            c.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.status == RUNNING).values(
                worker_pid=pid, worker_parent=parent, worker_start=start, updated_at=time.time()))

    def update_progress(self, job_id: str, progress: dict[str, Any], metrics: dict[str, Any],
                        lease: str | None = None) -> bool:
        with self.engine.begin() as c:
            r = c.execute(update(jobs).where(*self._running(job_id, lease)).values(
                progress=json.dumps(progress), metrics=json.dumps(metrics), updated_at=time.time()))
        return r.rowcount > 0

    def heartbeat(self, job_id: str, lease: str | None = None) -> bool:
        """Renew the lease; False when the job is no longer running under it (reclaimed, finished)."""
        now = time.time()
        with self.engine.begin() as c:
            r = c.execute(update(jobs).where(*self._running(job_id, lease)).values(heartbeat_at=now))
        return r.rowcount > 0

    def finish(self, job_id: str, status: JobStatus, *, model_id: str | None = None, error: str | None = None,
               note: str | None = None, lease: str | None = None) -> bool:
        status = JobStatus(status)
        assert status in FINISHED
        now = time.time()
        cond = [jobs.c.id == job_id, jobs.c.status.not_in([f.value for f in FINISHED])]
        if lease is not None:
            cond.append(jobs.c.lease == lease)
        with self.engine.begin() as c:
            r = c.execute(update(jobs).where(*cond).values(
                status=status.value, model_id=func.coalesce(model_id, jobs.c.model_id),
                error=func.coalesce(error, jobs.c.error), note=func.coalesce(note, jobs.c.note),
                finished_at=now, updated_at=now, **_WORKER_CLEARED))
        return r.rowcount > 0

    def request_cancel(self, job_id: str) -> JobRow | None:
        """Flag a job for cancellation; a queued job is cancelled at once (in the same transaction, so a
        worker's claim either comes first, and the worker sees the flag, or finds it cancelled)."""
        now = time.time()
        with self.engine.begin() as c:
            c.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.status == QUEUED).values(
                status=CANCELLED, cancel_requested=1, finished_at=now, updated_at=now,
                note="cancelled before it started"))
            c.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.status != CANCELLED).values(
                cancel_requested=1, updated_at=now))
        return self.get(job_id)

    def resume(self, job_id: str) -> JobRow | None:
        """A cancelled job back to the queue, to go on from its last checkpoint (``<data_dir>/jobs/<id>/``:
        the worker's trainer resumes from it); None when the job is not cancelled (or unknown). Atomic: of
        two resumes, one wins."""
        now = time.time()
        with self.engine.begin() as c:
            r = c.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.status == CANCELLED).values(
                status=QUEUED, cancel_requested=0, finished_at=None, error=None, updated_at=now,
                note="resumed: goes on from its last checkpoint", **_WORKER_CLEARED))
        return self.get(job_id) if r.rowcount else None

    def requeue(self, job_id: str, note: str, lease: str | None = None) -> bool:
        """Back to the queue (its checkpoint stays): the job lost its worker, or was handed back."""
        with self.engine.begin() as c:
            r = c.execute(update(jobs).where(*self._running(job_id, lease)).values(
                status=QUEUED, note=note, updated_at=time.time(), **_WORKER_CLEARED))
        return r.rowcount > 0

    def requeue_if_stale(self, job_id: str, cutoff: float, note: str, cancel: bool) -> bool:
        """Settle a running job whose lease ran out (no heartbeat since ``cutoff``): queued again, or
        cancelled when that was asked. Atomic: a heartbeat that lands first keeps the job where it is."""
        stale = func.coalesce(jobs.c.heartbeat_at, jobs.c.updated_at) < cutoff
        now = time.time()
        values: dict[str, Any] = ({"status": CANCELLED, "finished_at": now} if cancel else {"status": QUEUED})
        with self.engine.begin() as c:
            r = c.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.status == RUNNING, stale).values(
                note=note, updated_at=now, **values, **_WORKER_CLEARED))
        return r.rowcount > 0
