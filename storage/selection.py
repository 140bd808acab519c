"""Model selection over a stored solution set: the Pareto front over chosen metrics, a diverse
top-k (greedy max-min prediction disagreement), and the ensemble metrics of a chosen subset."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Solution
from storage.queries import QueryError, has_metric, metric_matrix

Direction = Literal["max", "min"]


@dataclass(frozen=True)
class Objective:
    name: str
    direction: Direction


def parse_objectives(text: str) -> list[Objective]:
    """`test_accuracy:max,sharpness:min` into objectives (direction defaults to max).

    Raises:
        QueryError: an empty list or a direction other than max/min.
    """
    objectives = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, direction = item.partition(":")
        direction = direction.strip() or "max"
        if direction not in ("max", "min"):
            raise QueryError(f"objective {item!r}: the direction must be max or min")
        objectives.append(Objective(name.strip(), direction))
    if not objectives:
        raise QueryError("pareto: give at least one objective, e.g. test_accuracy:max")
    return objectives


def pareto_indices(values: np.ndarray) -> np.ndarray:
    """Rows of `values` (to be maximised, one column per objective) that no other row
    dominates (at least as good everywhere, better somewhere); duplicates are all kept."""
    order = np.lexsort(values.T[::-1] * -1)  # best first on the first objective, then the next
    front: list[int] = []
    for i in order:
        if front:
            others = values[front]
            dominated = (others >= values[i]).all(1) & (others > values[i]).any(1)
            if dominated.any():
                continue
        front.append(i)
    return np.sort(np.array(front, dtype=int))


def pareto_front(
    session: Session, job_id: int, objectives: Sequence[Objective], filter: str | None = None
) -> list[int]:
    """Ids of the solutions (passing `filter`) on the Pareto front of `objectives`."""
    ids, matrix = metric_matrix(session, job_id, [o.name for o in objectives], filter)
    if not ids:
        return []
    signs = np.array([1.0 if o.direction == "max" else -1.0 for o in objectives])
    return [ids[i] for i in pareto_indices(matrix * signs)]


def diverse_top_k(
    session: Session,
    job_id: int,
    k: int,
    filter: str | None = None,
    first_by: str | None = None,
) -> list[int]:
    """`k` solutions passing `filter` chosen greedily to maximise the smallest prediction
    disagreement with those already chosen. The first is the best by `first_by` (default:
    highest `test_accuracy`, else lowest `loss`); ties go to the lower id.

    Raises:
        QueryError: k outside [1, 1000], or the solutions have no stored predictions.
    """
    if not 1 <= k <= 1000:
        raise QueryError(f"k must be in [1, 1000], got {k}")
    first_by = first_by or (
        "-test_accuracy" if has_metric(session, job_id, "test_accuracy") else "loss"
    )
    name = first_by.lstrip("-+")
    ids, matrix = metric_matrix(session, job_id, [name], filter)
    if not ids:
        return []
    score = -matrix[:, 0] if first_by.startswith("-") else matrix[:, 0]
    predictions = stored_predictions(session, ids)
    chosen = [int(np.argmin(score))]
    distance = (predictions != predictions[chosen[0]]).mean(1)
    while len(chosen) < min(k, len(ids)):
        distance[chosen] = -1.0
        best = int(np.argmax(distance))
        chosen.append(best)
        distance = np.minimum(distance, (predictions != predictions[best]).mean(1))
    return [ids[i] for i in chosen]


def stored_predictions(session: Session, ids: Sequence[int]) -> np.ndarray:
    """The predicted classes of each solution (rows) on the evaluation split.

    Raises:
        QueryError: a solution has none (its problem is not a classifier).
    """
    rows = dict(
        session.execute(select(Solution.id, Solution.predictions).where(Solution.id.in_(ids))).all()
    )
    if any(rows[i] is None for i in ids):
        raise QueryError("diverse: these solutions have no stored predictions (not a classifier)")
    return np.stack([np.frombuffer(rows[i], dtype=np.int16) for i in ids])
