"""Model selection over a stored solution set: the Pareto front over chosen metrics, a diverse
top-k (greedy max-min prediction disagreement), and the ensemble metrics of a chosen subset."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.filters import SOLUTIONS
from storage.models import Solution
from storage.queries import (
    QueryError,
    filtered_solutions,
    has_metric,
    metric_matrix,
    parse_job_filter,
)

Direction = Literal["max", "min"]
METRIC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,99}$")


@dataclass(frozen=True)
class Objective:
    name: str
    direction: Direction


def parse_objectives(text: str) -> list[Objective]:
    """`test_accuracy:max,sharpness:min` into objectives (direction defaults to max), each
    metric once (see `distinct_objectives`).

    Raises:
        QueryError: an empty list, a direction other than max/min, or a metric given both ways.
    """
    objectives = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, direction = item.partition(":")
        name, direction = name.strip(), direction.strip() or "max"
        if direction not in ("max", "min"):
            raise QueryError(f"objective {item!r}: the direction must be max or min")
        if not METRIC_NAME.match(name):
            raise QueryError(f"objective {item!r}: {name!r} is not a metric name")
        objectives.append(Objective(name, direction))
    if not objectives:
        raise QueryError("pareto: give at least one objective, e.g. test_accuracy:max")
    return distinct_objectives(objectives)


def distinct_objectives(objectives: Sequence[Objective]) -> list[Objective]:
    """`objectives` with repeats dropped (first order kept): a metric given twice the same way
    counts once, as it changes no front. A metric to be both maximised and minimised is
    refused: every solution would be on that front, which is surely not what was meant.

    Raises:
        QueryError: a metric given with both directions.
    """
    directions: dict[str, Direction] = {}
    for objective in objectives:
        if directions.setdefault(objective.name, objective.direction) != objective.direction:
            raise QueryError(
                f"objective {objective.name!r} is given as both max and min; give it once"
            )
    return [Objective(name, direction) for name, direction in directions.items()]


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
    session: Session, job_id: int, objectives: Sequence[Objective], where: str | None = None
) -> list[int]:
    """Ids of the solutions (passing `where`) on the Pareto front of `objectives` (repeats
    count once).

    Raises:
        QueryError: an unknown metric, or one given with both directions.
    """
    objectives = distinct_objectives(objectives)
    ids, matrix = metric_matrix(session, job_id, [o.name for o in objectives], where)
    if not ids:
        return []
    signs = np.array([1.0 if o.direction == "max" else -1.0 for o in objectives])
    return [ids[i] for i in pareto_indices(matrix * signs)]


def diverse_top_k(
    session: Session,
    job_id: int,
    k: int,
    where: str | None = None,
    first_by: str | None = None,
) -> list[int]:
    """`k` solutions passing `where` chosen greedily to maximise the smallest prediction
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
    ids, matrix = metric_matrix(session, job_id, [name], where)
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


@dataclass(frozen=True)
class Choice:
    """Which solutions: those passing `where`, or among them a Pareto front over `pareto`
    (`name:max,name:min`) or the `diverse` most mutually disagreeing."""

    pareto: str | None = None
    diverse: int | None = None
    where: str | None = None


def choose(session: Session, job_id: int, choice: Choice) -> tuple[list[int], str]:
    """The ids `choice` picks, and how it was made, in words.

    Raises:
        QueryError, FilterError: a bad selection or filter.
    """
    pareto, diverse, where = choice.pareto, choice.diverse, choice.where
    if pareto and diverse:
        raise QueryError("give pareto or diverse, not both")
    passing = f" among those with {where}" if where else ""
    if pareto:
        objectives = parse_objectives(pareto)
        names = ", ".join(f"{o.name} ({o.direction})" for o in objectives)
        return pareto_front(session, job_id, objectives, where), (
            f"the Pareto front over {names}{passing}"
        )
    if diverse:
        ids = diverse_top_k(session, job_id, diverse, where)
        return ids, f"{len(ids)} most mutually disagreeing (greedy max-min){passing}"
    parsed = parse_job_filter(session, job_id, where) if where else None
    query, _ = filtered_solutions(job_id, parsed)
    ids = list(session.scalars(query.with_only_columns(SOLUTIONS.c.id).order_by(SOLUTIONS.c.id)))
    return ids, f"every solution{passing}"
