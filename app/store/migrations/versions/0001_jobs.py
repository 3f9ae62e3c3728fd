"""Jobs: create the table, or adopt the one an older n2n made in jobs.sqlite3 (with the columns that
were added to it ad hoc: heartbeat_at, worker_parent, worker_start) and add the new ones.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

NEW_COLUMNS = [  # every column that an older jobs table may lack, in the order they came
    ("heartbeat_at", sa.Float),
    ("worker_parent", sa.Integer),
    ("worker_start", sa.Integer),
    ("worker_host", sa.Text),
    ("lease", sa.Text),
    ("nproc_per_node", sa.Integer),
]


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("jobs"):
        op.create_table(
            "jobs",
            sa.Column("id", sa.Text, primary_key=True),
            sa.Column("status", sa.Text, nullable=False),
            sa.Column("params", sa.Text, nullable=False),
            sa.Column("progress", sa.Text, nullable=False),
            sa.Column("metrics", sa.Text, nullable=False),
            sa.Column("model_id", sa.Text),
            sa.Column("error", sa.Text),
            sa.Column("note", sa.Text),
            sa.Column("worker_pid", sa.Integer),
            sa.Column("cancel_requested", sa.Integer, nullable=False, server_default="0"),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("started_at", sa.Float),
            sa.Column("finished_at", sa.Float),
            sa.Column("updated_at", sa.Float, nullable=False),
        )
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("jobs")}
    for name, type_ in NEW_COLUMNS:
        if name not in have:
            op.add_column("jobs", sa.Column(name, type_))
    indexes = {i["name"] for i in sa.inspect(op.get_bind()).get_indexes("jobs")}
    if "jobs_status" not in indexes:
        op.create_index("jobs_status", "jobs", ["status", "created_at"])


def downgrade() -> None:
    op.drop_table("jobs")
