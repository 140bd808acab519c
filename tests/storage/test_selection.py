"""Pareto fronts and diverse top-k over stored solutions, against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from storage.jobs import create_job
from storage.queries import QueryError
from storage.selection import (
    Choice,
    Objective,
    choose,
    diverse_top_k,
    pareto_front,
    pareto_indices,
    parse_objectives,
    stored_predictions,
)
from storage.synthetic import record_solution, synthetic_job


def brute_force_front(values: np.ndarray) -> list[int]:
    return [
        i
        for i in range(len(values))
        if not any(
            (values[j] >= values[i]).all() and (values[j] > values[i]).any()
            for j in range(len(values))
        )
    ]


@pytest.mark.parametrize("objectives", [1, 2, 3])
def test_pareto_indices_match_brute_force(objectives):
    rng = np.random.default_rng(objectives)
    values = rng.integers(0, 8, (200, objectives)).astype(float)  # many ties and duplicates
    assert pareto_indices(values).tolist() == brute_force_front(values)


def test_a_known_front():
    values = np.array([[1.0, 5.0], [2.0, 4.0], [2.0, 2.0], [3.0, 1.0], [0.5, 0.5], [3.0, 1.0]])
    assert pareto_indices(values).tolist() == [0, 1, 3, 5]


def test_pareto_front_of_a_stored_set_honours_directions_and_filters(db):
    job_id, metrics = synthetic_job(db, 400, seed=3)
    with db.session(readonly=True) as session:
        front = pareto_front(
            session,
            job_id,
            [Objective("test_accuracy", "max"), Objective("sharpness", "min")],
            "loss < 0.8",
        )
    ids = sorted(i for i, m in metrics.items() if m["loss"] < 0.8)
    values = np.array([[metrics[i]["test_accuracy"], -metrics[i]["sharpness"]] for i in ids])
    assert front == [ids[i] for i in brute_force_front(values)]
    assert 1 < len(front) < 30


def test_diverse_top_k_is_the_greedy_max_min_disagreement(db):
    job_id, metrics = synthetic_job(db, 300, seed=4)
    with db.session(readonly=True) as session:
        chosen = diverse_top_k(session, job_id, 6, "test_accuracy > 0.2")
        ids = sorted(i for i, m in metrics.items() if m["test_accuracy"] > 0.2)
        predictions = stored_predictions(session, ids)
    first = max(ids, key=lambda i: (metrics[i]["test_accuracy"], -i))
    assert chosen[0] == first
    index = {i: n for n, i in enumerate(ids)}

    def disagreement(a: int, b: int) -> float:
        return float((predictions[index[a]] != predictions[index[b]]).mean())

    for step in range(1, 6):
        best = max(
            min(disagreement(c, s) for s in chosen[:step]) for c in ids if c not in chosen[:step]
        )
        assert min(disagreement(chosen[step], s) for s in chosen[:step]) == pytest.approx(best)
    assert len(set(chosen)) == 6


def test_selection_errors_name_what_is_wrong(db):
    assert parse_objectives("test_accuracy, sharpness:min") == [
        Objective("test_accuracy", "max"),
        Objective("sharpness", "min"),
    ]
    with pytest.raises(QueryError, match="direction must be max or min"):
        parse_objectives("loss:down")
    with pytest.raises(QueryError, match="at least one objective"):
        parse_objectives(" , ")
    job_id, _ = synthetic_job(db, 5)
    with db.session(readonly=True) as session:
        with pytest.raises(QueryError, match=r"k must be in \[1, 1000\], got 0"):
            diverse_top_k(session, job_id, 0)
        with pytest.raises(QueryError, match="unknown metric 'accuracy'"):
            pareto_front(session, job_id, [Objective("accuracy", "max")])
    with db.session() as session:
        empty = create_job(session, {"problem": "synthetic"}).id
    message = f"job {empty} has no solutions to choose from"
    with db.session(readonly=True) as session, pytest.raises(QueryError, match=message):
        pareto_front(session, empty, [Objective("loss", "min")])


def test_a_repeated_objective_counts_once_and_opposite_directions_are_refused(db):
    with db.session() as session:
        job_id = create_job(session, {"problem": "synthetic"}).id
    points = [(0.3, 0.9), (0.1, 0.5), (0.2, 0.95), (0.1, 0.4)]
    ids = [record_solution(db, job_id, {"loss": x, "test_accuracy": y}) for x, y in points]
    with db.session(readonly=True) as session:
        lowest, how = choose(session, job_id, Choice("loss:min,loss:min"))
        front, _ = choose(session, job_id, Choice("loss:min, test_accuracy:max, loss:min"))
        repeated = pareto_front(session, job_id, [Objective("loss", "min")] * 2)
        with pytest.raises(QueryError, match="'loss' is given as both max and min"):
            choose(session, job_id, Choice("loss:min,loss:max"))
        with pytest.raises(QueryError, match="'loss' is given as both max and min"):
            pareto_front(session, job_id, [Objective("loss", "min"), Objective("loss", "max")])
    assert lowest == repeated == [ids[1], ids[3]]
    assert how == "the Pareto front over loss (min)"
    assert front == [ids[1], ids[2]]
