"""``n2n worker``: run training jobs from the configured store until stopped.

Same settings as the service (N2N_DATABASE_URL, N2N_DATA_DIR, N2N_DEVICE, N2N_JOB_LEASE_SECONDS, ...).
Start as many as you like, on any host that sees the database and the shared data directory: each
claims one job at a time. SIGTERM (or Ctrl-C): the running job is checkpointed and handed back to the
queue, then the worker exits. A wrong N2N_DATABASE_URL ends it at start with one line; a database lost
later is retried with backoff.

``n2n_core.cli`` reaches this module by name (importlib), as ``n2n serve`` reaches ``app.main:app``:
the framework never imports the service.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from app.core.config import Settings
from app.store import JobStore, StoreConfigError, open_store
from app.jobs.scheduler import Scheduler

log = logging.getLogger("n2n")


def store_error() -> str | None:
    """One line saying why the configured store cannot be opened (no password), or None when it can.
    ``n2n serve`` asks this before starting the server, so a wrong N2N_DATABASE_URL ends it in one line."""
    settings = Settings()
    try:
        open_store(settings.database, settings.data_dir).dispose()
    except StoreConfigError as e:
        return str(e)
    return None


def main(argv: list[str] | None = None) -> int:
    """Run until SIGTERM or SIGINT; 0 on a clean stop, 1 when the store cannot be opened."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s n2n-worker %(levelname)s %(message)s")
    settings = Settings()
    try:
        db = open_store(settings.database, settings.data_dir)
    except StoreConfigError as e:
        print(f"n2n: error: {e}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    scheduler = Scheduler.from_settings(JobStore(db), settings)
    scheduler.start()
    log.info("worker started (data dir %s, database %s)", settings.data_dir,
             "PostgreSQL" if db.is_postgres else "SQLite")
    while not stop.wait(1.0):  # a timed wait: signal handlers run promptly
        pass
    log.info("stopping: handing back the running job")
    scheduler.stop(timeout=settings.shutdown_seconds)
    db.dispose()
    return 0
