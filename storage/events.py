"""A job's events for a watcher: the points, rides and solutions recorded since the last call,
in the order they were recorded."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.jobs import get_job
from storage.models import UNIT_ACTIVE, Node, Ride, Solution
from storage.progress import counts
from storage.queries import NODE_EVENT_KEYS, solution_metrics, stored_node
from storage.report import job_summary


def job_events(
    session: Session, job_id: int, seen: dict[str, int]
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    """The job's events (`node`, `ride`, `minimum`, then `progress`) since the ids in `seen`
    (which it advances: a ride still under way, and all after it, wait for a later call), and
    the job's summary."""
    out: list[tuple[str, dict[str, Any]]] = []
    job = get_job(session, job_id)
    nodes = session.scalars(
        select(Node).where(Node.job_id == job_id, Node.id > seen["node"]).order_by(Node.id)
    ).all()
    rides = session.scalars(
        select(Ride).where(Ride.job_id == job_id, Ride.id > seen["ride"]).order_by(Ride.id)
    ).all()
    solutions = session.scalars(
        select(Solution)
        .where(Solution.job_id == job_id, Solution.id > seen["minimum"])
        .order_by(Solution.id)
    ).all()
    metrics = solution_metrics(session, [s.id for s in solutions])
    progress = counts(session, job_id)
    summary = job_summary(job)
    for node in nodes:
        fields = stored_node(node)
        out.append(("node", {key: fields[key] for key in NODE_EVENT_KEYS}))
        seen["node"] = node.id
    for ride in rides:  # in id order, up to the first still under way (reported later)
        if ride.state in UNIT_ACTIVE:
            break
        out.append(
            (
                "ride",
                {
                    "id": ride.id,
                    "from": ride.from_node_id,
                    "to": ride.to_node_id,
                    "state": ride.state,
                    "end_reason": ride.end_reason,
                    "failure": ride.failure,
                },
            )
        )
        seen["ride"] = ride.id
    for solution in solutions:
        out.append(
            (
                "minimum",
                {"id": solution.id, "node_id": solution.node_id, "metrics": metrics[solution.id]},
            )
        )
        seen["minimum"] = solution.id
    out.append(("progress", progress))
    return out, summary
