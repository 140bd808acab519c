"""Hand-offs to MLflow (what was asked over HTTP, its state and where the runs went), and the
database's instance id, which tags what a hand-off logs so that runs from two databases with
the same job ids are not taken for each other.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "handoffs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_handoffs_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handoffs")),
    )
    op.create_index(op.f("ix_handoffs_job_id"), "handoffs", ["job_id"], unique=False)
    secrets = sa.table(
        "service_secrets", sa.column("name", sa.String), sa.column("value", sa.LargeBinary)
    )
    op.bulk_insert(secrets, [{"name": "instance", "value": os.urandom(32)}])


def downgrade() -> None:
    op.execute("DELETE FROM service_secrets WHERE name = 'instance'")
    op.drop_index(op.f("ix_handoffs_job_id"), table_name="handoffs")
    op.drop_table("handoffs")
