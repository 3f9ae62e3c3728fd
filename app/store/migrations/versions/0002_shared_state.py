"""Models, datasets and the active model in the database; import what an older n2n kept in files
under the data directory (models/<id>.json + .safetensors, datasets/<id>/dataset.json, active.json).

The files stay where they are (weights and datasets live on the shared volume); only their metadata
moves into the database. active.json is left in place but no longer read.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    models = op.create_table(
        "models",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("card", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    datasets = op.create_table(
        "datasets",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("images", sa.Integer, nullable=False),
        sa.Column("bytes", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    settings = op.create_table(
        "settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    data_dir = op.get_context().config.attributes.get("data_dir")
    if data_dir is not None:
        _import_files(Path(data_dir), models, datasets, settings)


def _import_files(data_dir: Path, models: sa.Table, datasets: sa.Table, settings: sa.Table) -> None:
    rows = []
    for card in sorted((data_dir / "models").glob("*.json")):
        weights = card.with_suffix(".safetensors")
        if weights.exists():
            try:
                text = json.dumps(json.loads(card.read_text()))
            except (OSError, ValueError):
                text = "{}"
            rows.append({"id": card.stem, "path": f"models/{weights.name}", "card": text,
                         "created_at": weights.stat().st_mtime})
    if rows:
        op.bulk_insert(models, rows)
    rows = []
    for meta in sorted((data_dir / "datasets").glob("*/dataset.json")):
        try:
            info = json.loads(meta.read_text())
            rows.append({"id": info["id"], "kind": info["kind"], "images": int(info["images"]),
                         "bytes": int(info["bytes"]), "created_at": meta.stat().st_mtime})
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if rows:
        op.bulk_insert(datasets, rows)
    active = data_dir / "active.json"
    if active.exists():
        try:
            saved = json.loads(active.read_text())
            value = json.dumps({"active": saved.get("active"), "setting": saved.get("setting"), "at": time.time()})
            op.bulk_insert(settings, [{"key": "active_model", "value": value}])
        except (OSError, ValueError, AttributeError):
            pass


def downgrade() -> None:
    for name in ("settings", "datasets", "models"):
        op.drop_table(name)
