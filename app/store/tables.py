"""The shared state's tables (SQLAlchemy Core). The schema itself is made by the Alembic migrations
beside this file; these definitions are what the queries are written against.

JSON documents (job params, progress, metrics, model cards) are stored as text, identically on SQLite
and PostgreSQL; times are Unix seconds (float).
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text

metadata = MetaData()

jobs = Table(
    "jobs", metadata,
    Column("id", Text, primary_key=True),
    Column("status", Text, nullable=False),
    Column("params", Text, nullable=False),
    Column("progress", Text, nullable=False),
    Column("metrics", Text, nullable=False),
    Column("model_id", Text),
    Column("error", Text),
    Column("note", Text),
    Column("worker_pid", Integer),  # the training process (a child of the worker)
    Column("worker_parent", Integer),  # the worker process that claimed the job (`n2n worker` or the API)
    Column("worker_start", Integer),  # the training process's start time (clock ticks after boot)
    Column("worker_host", Text),  # the host of the worker process
    Column("lease", Text),  # a token per claim: only its holder may write the job while it runs
    Column("nproc_per_node", Integer),  # hook for data-parallel jobs: processes per worker (None: 1)
    Column("cancel_requested", Integer, nullable=False, server_default="0"),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("updated_at", Float, nullable=False),
    Column("heartbeat_at", Float),
)

models = Table(
    "models", metadata,
    Column("id", String(64), primary_key=True),
    Column("path", Text, nullable=False),  # the weights, relative to N2N_DATA_DIR (the shared volume)
    Column("card", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("name", String(64)),  # what the user calls it (POST /train's name); also the card's "name"
)

datasets = Table(
    "datasets", metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", Text, nullable=False),
    Column("images", Integer, nullable=False),
    Column("bytes", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
)

settings = Table(  # small shared values by key; 'active_model' holds {"active": id, "setting": N2N_WEIGHTS}
    "settings", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
