"""A stored job as one JSON document: the job, its minima with metrics, the DAG, the pairs and
the statistics (what `ridgerider run --json` prints)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ridgerider.json_shapes import solution_json
from storage.artifacts import ArtifactStore, get_tensors
from storage.jobs import get_job
from storage.models import Job, Node, PairMetric, Ride, Solution
from storage.queries import job_rows, solution_metrics, stored_node, stored_ride


def job_summary(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "problem": job.problem,
        "status": job.status,
        "owner": job.owner,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "error": job.error,
        "hvps": job.hvps,
        "seconds": job.run_seconds,
    }


def job_document(session: Session, store: ArtifactStore, job_id: int) -> dict[str, Any]:
    """`job`, `spec`, `minima` (id, node, loss, grad_norm, index, fingerprint, metrics, sha256
    and, for small problems, `theta`), `graph` (nodes, edges), `failures`, `pairs`,
    `failed_points` (`node`, `error`: points whose evaluation or expansion raised), `set_metrics`,
    `stats`."""
    job = get_job(session, job_id)
    node_rows = job_rows(session, Node, job_id)
    nodes = {node.id: stored_node(node) for node in node_rows}
    solutions = job_rows(session, Solution, job_id)
    metrics = solution_metrics(session, [solution.id for solution in solutions])
    minima = [
        {"id": solution.id}
        | solution_json(
            nodes[solution.node_id],
            metrics[solution.id],
            get_tensors(store, solution.weights_sha256)["theta"],
            weights_sha256=solution.weights_sha256,
        )
        for solution in solutions
    ]
    rides = job_rows(session, Ride, job_id)
    edges = [stored_ride(ride) for ride in rides if ride.state == "done"]
    failures = [
        stored_ride(ride) | {"failure": ride.failure} for ride in rides if ride.state == "failed"
    ]
    failed_points = [
        {"node": node.id, "error": node.error} for node in node_rows if node.state == "failed"
    ]
    pairs: dict[tuple[int, int], dict[str, float]] = {}
    for pair in session.scalars(select(PairMetric).where(PairMetric.job_id == job_id)):
        pairs.setdefault((pair.a_id, pair.b_id), {})[pair.name] = pair.value
    stats = dict(job.stats or {})
    set_metrics = stats.pop("set_metrics", {})
    return {
        "job": job_summary(job),
        "problem": job.problem,
        "spec": job.spec,
        "minima": minima,
        "graph": {"nodes": list(nodes.values()), "edges": edges},
        "failures": failures,
        "failed_points": failed_points,
        "pairs": [{"a": a, "b": b, **values} for (a, b), values in sorted(pairs.items())],
        "set_metrics": set_metrics,
        "stats": stats,
    }
