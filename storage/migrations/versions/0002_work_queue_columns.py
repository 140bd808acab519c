"""Work-queue columns: when a unit was claimed and enqueued, its task id; when a job was
cancelled or enqueued.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("task_id", sa.String(length=155), nullable=True))

    with op.batch_alter_table("rides", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("task_id", sa.String(length=155), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rides", schema=None) as batch_op:
        batch_op.drop_column("task_id")
        batch_op.drop_column("enqueued_at")
        batch_op.drop_column("claimed_at")

    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_column("task_id")
        batch_op.drop_column("enqueued_at")
        batch_op.drop_column("claimed_at")

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("enqueued_at")
        batch_op.drop_column("cancelled_at")
