"""The job store, where it has always been imported from; it lives in the shared store (app.store.jobs)."""

from ..store.jobs import FINISHED, STATUSES, JobStore

__all__ = ["FINISHED", "STATUSES", "JobStore"]
