"""A copy of each solution's metrics as one JSON object, so that a page of solutions is read in
one statement; the tall `metrics` table stays the one that filters and sorts. Existing solutions
are filled in from it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("solutions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("metrics_json", sa.Text(), nullable=False, server_default="{}")
        )
    connection = op.get_bind()
    metrics: dict[int, dict[str, float]] = {}
    rows = connection.execute(sa.text("SELECT solution_id, name, value FROM metrics"))
    for solution_id, name, value in rows:
        metrics.setdefault(solution_id, {})[name] = value
    solutions = sa.table("solutions", sa.column("id"), sa.column("metrics_json"))
    for solution_id, values in metrics.items():
        connection.execute(
            solutions.update()
            .where(solutions.c.id == solution_id)
            .values(metrics_json=json.dumps(values, sort_keys=True))
        )


def downgrade() -> None:
    with op.batch_alter_table("solutions", schema=None) as batch_op:
        batch_op.drop_column("metrics_json")
