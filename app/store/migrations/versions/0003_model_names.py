"""Models get a name (``POST /train``'s ``name``) in a column of their own. Existing rows are named from
their card: its name, unless that is the placeholder 'model' every trained model used to get, else
'<architecture> <data> <date>'; the card's name is set to the same.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import json
import re
import time
from pathlib import PurePath

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

NAME_MAX = 64
_BAD = re.compile(r"[^\w\-.,:()+#]+")  # frozen here: a migration must not change when app code does


def upgrade() -> None:
    op.add_column("models", sa.Column("name", sa.String(NAME_MAX)))
    models = sa.table("models", sa.column("id", sa.String), sa.column("card", sa.Text),
                      sa.column("created_at", sa.Float), sa.column("name", sa.String))
    bind = op.get_bind()
    for model_id, text, created_at in bind.execute(sa.select(models.c.id, models.c.card, models.c.created_at)).all():
        try:
            card = json.loads(text)
        except ValueError:
            card = {}
        card = card if isinstance(card, dict) else {}
        name = _name(card, created_at)
        bind.execute(sa.update(models).where(models.c.id == model_id).values(
            name=name, card=json.dumps({**card, "name": name})))


def _name(card: dict, created_at: float | None) -> str:
    old = card.get("name")
    if isinstance(old, str) and old.strip() and old.strip() != "model":
        name = re.sub(r"[^\w \-.,:()+#]+", "-", old.strip()).strip(" -")
        return (name if name[:1].isalnum() else f"model {name}")[:NAME_MAX].rstrip()
    training = card.get("training") if isinstance(card.get("training"), dict) else {}
    data = training.get("data") if isinstance(training.get("data"), str) else "data"
    words = [_BAD.sub("-", str(card.get("architecture") or "model")).strip("-") or "model",
             _BAD.sub("-", PurePath(data).name).strip("-") or "data"]
    stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(created_at or 0))
    return " ".join(words)[: NAME_MAX - len(stamp) - 1].rstrip() + " " + stamp


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.drop_column("name")
