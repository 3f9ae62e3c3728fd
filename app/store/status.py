"""A training job's status, and its row as the store reads it.

``JobStatus`` is a ``str`` enum: the database and the HTTP JSON see the same strings as always
(``"queued"``, ``"running"``, ...). ``JobRow`` is a row of the ``jobs`` table, with its JSON documents
(params, progress, metrics) decoded and ``cancel_requested`` as a bool.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    QUEUED = "queued"  # waiting for a worker
    RUNNING = "running"  # claimed by a worker, its training process runs
    SUCCEEDED = "succeeded"  # trained and registered
    FAILED = "failed"
    CANCELLED = "cancelled"  # cancelled (a cancelled job can be resumed: queued again)

    @property
    def final(self) -> bool:
        """Whether the job has ended (a cancelled one may still be resumed by hand)."""
        return self in FINISHED


STATUSES: tuple[JobStatus, ...] = tuple(JobStatus)
FINISHED: tuple[JobStatus, ...] = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
UNFINISHED: tuple[JobStatus, ...] = (JobStatus.QUEUED, JobStatus.RUNNING)


def statuses_document() -> dict[str, list[str]]:
    """Every status and the final ones, as ``GET /train/statuses`` answers them."""
    return {"statuses": [s.value for s in STATUSES], "final": [s.value for s in FINISHED]}


@dataclass
class JobRow:
    """A training job as stored (the ``jobs`` table; times are Unix seconds)."""

    id: str
    status: JobStatus
    params: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    model_id: str | None = None
    error: str | None = None
    note: str | None = None
    worker_pid: int | None = None  # the training process (a child of the worker)
    worker_parent: int | None = None  # the worker process that claimed the job
    worker_start: int | None = None  # the training process's start time (clock ticks after boot)
    worker_host: str | None = None
    lease: str | None = None
    nproc_per_node: int | None = None
    cancel_requested: bool = False
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float = 0.0
    heartbeat_at: float | None = None

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> JobRow:
        """The row from a column -> value mapping (JSON documents already decoded)."""
        known = {f.name for f in fields(cls)}
        row = cls(**{k: v for k, v in values.items() if k in known})
        row.status = JobStatus(row.status)
        row.cancel_requested = bool(row.cancel_requested)
        return row

    @property
    def finished(self) -> bool:
        return self.status.final
