"""Hardening: how many messages were sent for each job and unit (the sweep gives up after a
bound), whether a job may import its problem from a module (CLI jobs only), and the service's
secrets (the key that signs page cursors).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sends", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("allow_import", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    for table in ("nodes", "rides"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("sends", sa.Integer(), nullable=False, server_default="0")
            )
    secrets = op.create_table(
        "service_secrets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_service_secrets")),
    )
    op.bulk_insert(secrets, [{"name": "cursor", "value": os.urandom(32)}])


def downgrade() -> None:
    op.drop_table("service_secrets")
    for table in ("rides", "nodes"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("sends")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("allow_import")
        batch_op.drop_column("sends")
