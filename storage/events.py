"""A job's events for a watcher: the points, rides and solutions recorded since the last call,
in the order they were recorded."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from storage.jobs import get_job
from storage.models import UNIT_ACTIVE, Node, Ride, Solution
from storage.progress import counts
from storage.queries import job_rows, part, solution_metrics, stored_node, stored_ride
from storage.report import job_summary

NODE_EVENT_KEYS = ("id", "kind", "index", "loss", "depth", "fingerprint")
RIDE_EVENT_KEYS = ("id", "from", "to", "state", "end_reason", "failure")


def job_events(
    session: Session, job_id: int, seen: dict[str, int]
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    """The job's events (`node`, `ride`, `minimum`, then `progress`) since the ids in `seen`
    (which it advances: a ride still under way, and all after it, wait for a later call), and
    the job's summary."""
    out: list[tuple[str, dict[str, Any]]] = []
    job = get_job(session, job_id)
    nodes = job_rows(session, Node, job_id, seen["node"])
    rides = job_rows(session, Ride, job_id, seen["ride"])
    solutions = job_rows(session, Solution, job_id, seen["minimum"])
    metrics = solution_metrics(session, [s.id for s in solutions])
    progress = counts(session, job_id)
    summary = job_summary(job)
    for node in nodes:
        out.append(("node", part(stored_node(node), NODE_EVENT_KEYS)))
        seen["node"] = node.id
    for ride in rides:  # in id order, up to the first still under way (reported later)
        if ride.state in UNIT_ACTIVE:
            break
        fields = stored_ride(ride) | {"state": ride.state, "failure": ride.failure}
        out.append(("ride", part(fields, RIDE_EVENT_KEYS)))
        seen["ride"] = ride.id
    for s in solutions:
        out.append(("minimum", {"id": s.id, "node_id": s.node_id, "metrics": metrics[s.id]}))
        seen["minimum"] = s.id
    out.append(("progress", progress))
    return out, summary
