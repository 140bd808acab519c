"""Synthetic solution sets, inserted in bulk, and synthetic ride trees: for query tests, the
dashboard's tests and the storage, API and dashboard benchmarks (they ship with storage so that
benchmarks build their data from the package)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import insert

from storage.database import Database
from storage.jobs import create_job, lock_job
from storage.models import Metric, Node, Ride, Solution, metrics_json
from storage.queries import ROOT_FINGERPRINT
from storage.records import lineage

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
SADDLE_EIGENVALUE = -0.24045739  # the digits MLP's zero point: one eigenvalue, eight-fold


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


def synthetic_tree(db: Database, widths: Sequence[int], owner: str | None = None) -> int:
    """A finished job whose tree is full: each point at depth k has `widths[k]` rides to points
    of its own (ridge i // 2, + then -), the start's all with one eigenvalue as at the digits
    MLP's eight-fold saddle; the points at the last depth are minima. Where the deepest rides
    come in pairs, the two rides of each point's last ridge reach one point (the + ride's), as
    both directions of a ridge may. Its id (points and rides only: no solutions)."""
    with db.session() as session:
        spec = {"problem": "synthetic-tree", "max_nodes": 10_000, "max_depth": len(widths)}
        job = create_job(session, spec, owner=owner)
        job.status = "finished"
        session.flush()
        lock_job(session, job.id)
        root = _tree_node(job.id, ROOT_FINGERPRINT, "", 0, len(widths), widths[0] // 2)
        session.add(root)
        session.flush()
        level = [root]
        for depth, width in enumerate(widths, start=1):
            below = []
            for parent in level:
                meet = depth == len(widths) and width % 2 == 0
                for i in range(width):
                    ridge, sign = divmod(i, 2)
                    sign = 1 - 2 * sign
                    value = SADDLE_EIGENVALUE if depth == 1 else -0.05 * (ridge + 1) / depth
                    ride = Ride(
                        job_id=job.id,
                        from_node_id=parent.id,
                        eigen_index=ridge,
                        sign=sign,
                        eigenvalue=value,
                        depth=parent.depth,
                        steps=20,
                        hvps=60,
                        end_reason="curvature-nonnegative",
                        state="done",
                    )
                    if meet and i == width - 1:
                        ride.to_node_id = below[-1].id
                    else:
                        step = f"{ridge}{'+' if sign > 0 else '-'}"
                        node = _tree_node(
                            job.id,
                            lineage(parent.fingerprint, ridge, sign),
                            f"{parent.path}.{step}" if parent.path else step,
                            depth,
                            len(widths),
                            widths[depth] // 2 if depth < len(widths) else 0,
                        )
                        session.add(node)
                        session.flush()
                        below.append(node)
                        ride.to_node_id = node.id
                    session.add(ride)
            level = below
        session.flush()
        return job.id


def _tree_node(
    job_id: int, fingerprint: str, path: str, depth: int, deepest: int, index: int
) -> Node:
    """A stored point of `synthetic_tree`: the start a saddle, then branch points, then minima."""
    kind = "minimum" if depth == deepest else "branch" if depth else "saddle"
    return Node(
        job_id=job_id,
        fingerprint=fingerprint,
        path=path,
        depth=depth,
        kind=kind,
        index=index,
        index_is_exact=True,
        loss=round(2.3 - 0.5 * depth, 6),
        grad_norm=0.0 if kind != "branch" else 1e-3,
        eigenvalues=[],
        theta_sha256=fingerprint,
        work="evaluate" if kind == "minimum" else "expand",
        state="done",
    )
