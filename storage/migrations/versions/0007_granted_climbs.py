"""A ride's `quota`: the node budget's points granted to a climb that waited for them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rides") as batch:
        batch.add_column(sa.Column("quota", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rides") as batch:
        batch.drop_column("quota")
