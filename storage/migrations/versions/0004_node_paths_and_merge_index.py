"""Each node's fingerprint as readable text (`path`: the rides from the start, `0+.8-`), the
function key that merging by function looks up, and indexes that find a new point's possible
copies by a range of loss (or function key) instead of comparing it with every node. Existing
nodes get their path from the rides that first reached them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("path", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("function_key", sa.Float(), nullable=True))
        batch_op.create_index("ix_nodes_job_id_loss", ["job_id", "loss"], unique=False)
        batch_op.create_index(
            "ix_nodes_job_id_function_key", ["job_id", "function_key"], unique=False
        )
    _fill_paths(op.get_bind())


def _fill_paths(connection: sa.Connection) -> None:
    """A node's path is its parent's and the label of the ride that first reached it: the one
    whose lineage hash (sha256 of the parent's fingerprint, "/", index, sign) is the node's."""
    nodes = {
        node_id: (job_id, fingerprint, depth)
        for node_id, job_id, fingerprint, depth in connection.execute(
            sa.text("SELECT id, job_id, fingerprint, depth FROM nodes")
        )
    }
    arrivals: dict[int, list[tuple[int, int, int]]] = {}
    rides = sa.text("SELECT from_node_id, to_node_id, eigen_index, sign FROM rides")
    for from_id, to_id, eigen_index, sign in connection.execute(rides):
        if to_id is not None:
            arrivals.setdefault(to_id, []).append((from_id, eigen_index, sign))
    paths: dict[int, str] = {}

    def path_of(node_id: int) -> str:
        if node_id not in paths:
            paths[node_id] = ""
            for from_id, eigen_index, sign in arrivals.get(node_id, []):
                parent = nodes[from_id][1]
                lineage = hashlib.sha256(f"{parent}/{eigen_index}{sign:+d}".encode()).hexdigest()
                if lineage == nodes[node_id][1]:
                    label = f"{eigen_index}{'+' if sign > 0 else '-'}"
                    above = path_of(from_id)
                    paths[node_id] = f"{above}.{label}" if above else label
                    break
        return paths[node_id]

    table = sa.table("nodes", sa.column("id"), sa.column("path"))
    for node_id in sorted(nodes, key=lambda n: nodes[n][2]):
        connection.execute(
            table.update().where(table.c.id == node_id).values(path=path_of(node_id))
        )


def downgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_index("ix_nodes_job_id_function_key")
        batch_op.drop_index("ix_nodes_job_id_loss")
        batch_op.drop_column("function_key")
        batch_op.drop_column("path")
