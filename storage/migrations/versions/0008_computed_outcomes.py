"""A unit's `outcome`: what its step found, kept until its turn to be recorded.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("nodes", "rides"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("outcome", sa.Text(), nullable=True))


def downgrade() -> None:
    for table in ("nodes", "rides"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("outcome")
