"""Synthetic solution sets, inserted in bulk: for query tests and the storage, API and dashboard
benchmarks (they ship with storage so that benchmarks build their data from the package)."""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np
from sqlalchemy import insert

from storage.database import Database
from storage.jobs import create_job, lock_job
from storage.models import Metric, Node, Solution, metrics_json

METRICS = (
    "loss",
    "grad_norm",
    "sharpness",
    "hessian_trace",
    "train_accuracy",
    "test_accuracy",
    "ood_accuracy",
    "test_loss",
    "distance_from_start",
    "index",
    *(f"class_{c}_accuracy" for c in range(10)),
)
EVALUATION_SIZE = 450


def minimum_row(job_id: int, fingerprint: str, depth: int) -> dict[str, Any]:
    """The columns of an evaluated minimum (its theta hash is its fingerprint)."""
    return {
        "job_id": job_id,
        "fingerprint": fingerprint,
        "depth": depth,
        "kind": "minimum",
        "index": 0,
        "index_is_exact": True,
        "loss": 0.0,
        "grad_norm": 0.0,
        "eigenvalues": [],
        "theta_sha256": fingerprint,
        "work": "evaluate",
        "state": "done",
    }


def synthetic_job(db: Database, solutions: int, seed: int = 0) -> tuple[int, dict[int, dict]]:
    """A finished job with `solutions` solutions of 20 random metrics each and random
    predictions (groups of similar models); returns the job id and {solution id: metrics}."""
    rng = np.random.default_rng(seed)
    with db.session() as session:
        job = create_job(session, {"problem": "synthetic"})
        job.status = "finished"
        job_id = job.id
    labels = rng.integers(0, 10, EVALUATION_SIZE)
    prototypes = [
        np.where(rng.random(EVALUATION_SIZE) < 0.1, rng.integers(0, 10), labels) for _ in range(8)
    ]
    by_id: dict[int, dict] = {}
    for start in range(0, solutions, 2000):
        count = min(2000, solutions - start)
        with db.session() as session:
            node_ids = session.scalars(
                insert(Node).returning(Node.id, sort_by_parameter_order=True),
                [
                    minimum_row(job_id, f"{start + i:064x}", int(rng.integers(1, 6)))
                    for i in range(count)
                ],
            ).all()
            rows, values_of = [], []
            for node_id in node_ids:
                prototype = prototypes[int(rng.integers(0, len(prototypes)))]
                flips = rng.random(EVALUATION_SIZE) < rng.uniform(0.0, 0.1)
                predicted = np.where(flips, rng.integers(0, 10, EVALUATION_SIZE), prototype)
                values = {name: float(rng.random()) for name in METRICS}
                values["sharpness"] = float(rng.uniform(1, 100))
                values["index"] = float(rng.integers(0, 3))  # many ties, for sorting
                values_of.append(values)
                rows.append(
                    {
                        "job_id": job_id,
                        "node_id": node_id,
                        "weights_sha256": "0" * 64,
                        "predictions": predicted.astype(np.int16).tobytes(),
                        "metrics_json": metrics_json(values),
                    }
                )
            solution_ids = session.scalars(
                insert(Solution).returning(Solution.id, sort_by_parameter_order=True), rows
            ).all()
            metric_rows = []
            for solution_id, values in zip(solution_ids, values_of, strict=True):
                by_id[solution_id] = values
                metric_rows += [
                    {"solution_id": solution_id, "job_id": job_id, "name": k, "value": v}
                    for k, v in values.items()
                ]
            session.execute(insert(Metric), metric_rows)
    return job_id, by_id


def record_solution(db: Database, job_id: int, metrics: dict[str, float]) -> int:
    """Add one solution (and its minimum) to a job the way a worker's record does, under the
    job's lock; its id."""
    with db.session() as session:
        lock_job(session, job_id)
        node = Node(**minimum_row(job_id, secrets.token_hex(32), depth=1))
        session.add(node)
        session.flush()
        solution = Solution(
            job_id=job_id,
            node_id=node.id,
            weights_sha256="0" * 64,
            metrics_json=metrics_json(metrics),
        )
        session.add(solution)
        session.flush()
        session.add_all(
            Metric(solution_id=solution.id, job_id=job_id, name=k, value=v)
            for k, v in metrics.items()
        )
        session.flush()
        return solution.id
