"""The database behind the shared state: SQLite under N2N_DATA_DIR (default) or PostgreSQL.

One SQLAlchemy Core engine serves both. On SQLite every transaction starts with ``BEGIN IMMEDIATE``
(the write lock is taken first, so a read-then-write such as claiming a job never deadlocks) and the
database runs in WAL mode, so readers go on while a worker writes progress; a connection waits up to
BUSY_TIMEOUT_SECONDS for another one's lock, turning a new file to WAL mode included (``_wal_mode``). On PostgreSQL the
connections are pooled and checked before use, so a server restart costs one retry, not a crash.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

SETTING = "N2N_DATABASE_URL"
SQLITE_FILE = "jobs.sqlite3"  # the name the job store had before the shared store: kept, so upgrades find it
BUSY_TIMEOUT_SECONDS = 30.0  # an SQLite connection waits this long for another one's write lock


class StoreConfigError(RuntimeError):
    """N2N_DATABASE_URL is malformed, names an unsupported engine, or no server answers it.
    Its message is one line that names the setting and never the password."""


@dataclass(frozen=True)
class Database:
    """An engine and what the rest of the store needs to know about it."""

    engine: Engine
    url: URL

    @property
    def is_postgres(self) -> bool:
        return self.url.get_backend_name() == "postgresql"

    @property
    def shown_url(self) -> str:
        """The URL for messages and logs as the user wrote it (no driver name), password hidden."""
        return self.url.set(drivername=self.url.get_backend_name()).render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()


def database_url(url: str | None, data_dir: Path) -> URL:
    """The SQLAlchemy URL for N2N_DATABASE_URL (None or empty: SQLite in ``data_dir``)."""
    if not url:
        return URL.create("sqlite+pysqlite", database=str(Path(data_dir) / SQLITE_FILE))
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise StoreConfigError(f"{SETTING} is not a database URL; expected postgresql://USER@HOST:PORT/DB") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return parsed
    shown = parsed.render_as_string(hide_password=True)
    raise StoreConfigError(f"{SETTING}={shown}: unsupported database {backend!r}; use postgresql://USER@HOST:PORT/DB "
                           "or leave it unset for SQLite in N2N_DATA_DIR")


def open_database(url: str | None, data_dir: Path, *, check: bool = True) -> Database:
    """An engine for N2N_DATABASE_URL; with ``check``, one connection is made first, so a wrong URL fails
    here with a StoreConfigError instead of on the first request."""
    sa_url = database_url(url, data_dir)
    if sa_url.get_backend_name() == "sqlite":
        if sa_url.database:
            Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(sa_url, connect_args={"timeout": BUSY_TIMEOUT_SECONDS, "check_same_thread": False})
        _sqlite_pragmas(engine)
    else:
        engine = create_engine(sa_url, pool_pre_ping=True, pool_size=4, max_overflow=8,
                               connect_args={"connect_timeout": 10})
    db = Database(engine, sa_url)
    if check:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except DBAPIError as e:
            engine.dispose()
            reason = str(e.orig).strip().splitlines()[0] if e.orig is not None else type(e).__name__
            if sa_url.password:
                reason = reason.replace(str(sa_url.password), "***")
            raise StoreConfigError(f"{SETTING}={db.shown_url}: cannot connect: {reason}") from None
        except NoSuchModuleError:
            raise StoreConfigError(f"{SETTING}={db.shown_url}: no driver for this database") from None
    return db


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # transactions are begun below, not by the driver
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
        _wal_mode(cur)
        cur.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _wal_mode(cur: sqlite3.Cursor) -> None:
    """``PRAGMA journal_mode=WAL``, retried while the database is locked. Turning a fresh file to WAL takes
    an exclusive lock for which SQLite does not wait (no busy handler): two processes that open a new
    store at once would otherwise fail with "database is locked" at once (issue 22)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    pause = 0.005
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if ("locked" not in str(e) and "busy" not in str(e)) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)
