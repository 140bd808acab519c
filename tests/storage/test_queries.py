"""Filters, sorts and keyset pages over stored solutions, on both engines, checked against the
same query done in Python."""

from __future__ import annotations

import base64
import itertools
import json

import pytest
from sqlalchemy import select

from ridgerider.search import SearchSpec
from ridgerider.search.fingerprint import from_text
from storage.filters import MAX_LENGTH, MAX_NESTING, FilterError, check_names, parse_filter
from storage.jobs import create_job
from storage.models import Solution
from storage.queries import (
    QueryError,
    lineage,
    lineage_graph,
    metric_matrix,
    solutions_page,
)
from storage.synthetic import synthetic_job
from workers.local import run_job

FILTERS = {
    "test_accuracy > 0.5 and sharpness < 20": lambda m: (
        m["test_accuracy"] > 0.5 and m["sharpness"] < 20
    ),
    "not (loss >= 0.3) or index == 2": lambda m: not m["loss"] >= 0.3 or m["index"] == 2,
    "(class_3_accuracy<=.25 or class_4_accuracy>0.75) and ood_accuracy != 1e9": lambda m: (
        m["class_3_accuracy"] <= 0.25 or m["class_4_accuracy"] > 0.75
    ),
}


@pytest.fixture
def job(db):
    return synthetic_job(db, 300, seed=1)


def walk(db, job_id, **query) -> list:
    """Every page of a query, in order."""
    items, cursor = [], None
    while True:
        with db.session(readonly=True) as session:
            page = solutions_page(session, job_id, cursor=cursor, **query)
        items += page.items
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


@pytest.mark.parametrize("expression", FILTERS)
def test_filters_select_what_python_selects(db, job, expression):
    job_id, metrics = job
    expected = sorted(i for i, m in metrics.items() if FILTERS[expression](m))
    assert 0 < len(expected) < len(metrics)
    found = walk(db, job_id, where=expression, limit=37)
    assert [row.id for row in found] == expected
    assert all(row.metrics == metrics[row.id] for row in found)


@pytest.mark.parametrize("sort", ["sharpness", "-test_accuracy", "index", "-index", "-id", "depth"])
def test_pages_walk_the_whole_sorted_set_once(db, job, sort):
    job_id, metrics = job
    name, descending = sort.lstrip("-"), sort.startswith("-")
    found = walk(db, job_id, sort=sort, limit=23)
    assert len(found) == len(metrics) and len({row.id for row in found}) == len(metrics)

    def value(row):
        return row.id if name == "id" else row.depth if name == "depth" else metrics[row.id][name]

    keys = [(-value(r) if descending else value(r), r.id) for r in found]
    if name == "id":
        keys = [(-r.id if descending else r.id,) for r in found]
    assert keys == sorted(keys)


def test_a_page_is_stable_when_solutions_are_added_meanwhile(db, job):
    job_id, metrics = job
    with db.session(readonly=True) as session:
        first = solutions_page(session, job_id, sort="sharpness", limit=50)
    synthetic_job(db, 10, seed=2)  # another job's inserts
    with db.session(readonly=True) as session:
        second = solutions_page(
            session, job_id, sort="sharpness", limit=50, cursor=first.next_cursor
        )
    order = sorted(metrics, key=lambda i: (metrics[i]["sharpness"], i))
    assert [r.id for r in first.items + second.items] == order[:100]


def test_bad_filters_point_at_the_token(db, job):
    job_id, _ = job
    names = ["loss", "sharpness"]
    cases = {
        "loss < 0.5 and sharpnes > 3": (15, "unknown metric 'sharpnes'"),
        "loss < 0.5 and (sharpness > 3": (29, "expected ')'"),
        "loss <": (6, "expected a number"),
        "loss < 0.5 sharpness": (11, "expected 'and', 'or' or the end"),
        "loss ~ 3": (5, "unexpected character '~'"),
        "0.5 < loss": (0, "expected a metric name"),
    }
    for expression, (position, message) in cases.items():
        with pytest.raises(FilterError) as raised:
            check_names(expression, parse_filter(expression), names, lambda: names)
        assert raised.value.position == position, expression
        assert message in str(raised.value)
        assert str(raised.value).endswith(" " * (position + 2) + "^")
    with db.session(readonly=True) as session, pytest.raises(FilterError, match="unknown metric"):
        solutions_page(session, job_id, where="accuracy > 0.9")


def test_bad_sorts_limits_and_cursors_name_the_parameter(db, job):
    job_id, _ = job
    with db.session(readonly=True) as session:
        with pytest.raises(QueryError, match="sort: unknown metric 'sharp'"):
            solutions_page(session, job_id, sort="sharp")
        with pytest.raises(QueryError, match=r"limit must be in \[1, 1000\], got 0"):
            solutions_page(session, job_id, limit=0)
        with pytest.raises(QueryError, match="cursor: not a cursor"):
            solutions_page(session, job_id, cursor="not-a-cursor!")
        cursor = solutions_page(session, job_id, sort="loss", limit=5).next_cursor
        with pytest.raises(QueryError, match="another job, sort or filter"):
            solutions_page(session, job_id, sort="-loss", cursor=cursor)


def forged(data: object) -> str:
    """A cursor made by hand: base64url of JSON, unsigned or with a made-up tag."""
    text = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{text}.{'0' * 64}"


@pytest.mark.parametrize(
    "cursor",
    [
        forged({"j": 1, "v": 1, "id": 10**30, "s": "id", "f": ""}),
        forged({"v": 1, "id": 10**30, "s": "id", "f": ""}).partition(".")[0],
        base64.urlsafe_b64encode(b"[" * 1400).decode(),
        "a" * 10_000,
    ],
    ids=["huge-id", "unsigned", "deep-json", "long"],
)
def test_forged_cursors_are_refused(db, job, cursor):
    job_id, _ = job
    with db.session(readonly=True) as session, pytest.raises(QueryError, match="not a cursor"):
        solutions_page(session, job_id, cursor=cursor)


def test_an_altered_cursor_is_refused_and_the_real_one_still_works(db, job):
    job_id, metrics = job
    with db.session(readonly=True) as session:
        cursor = solutions_page(session, job_id, limit=5).next_cursor
        payload, _, tag = cursor.partition(".")
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        altered = forged({**data, "id": 0}).partition(".")[0] + "." + tag
        with pytest.raises(QueryError, match="not a cursor"):
            solutions_page(session, job_id, cursor=altered)
        page = solutions_page(session, job_id, limit=5, cursor=cursor)
    assert [row.id for row in page.items] == sorted(metrics)[5:10]


def test_a_cursor_of_another_job_is_refused(db, job):
    job_id, _ = job
    other, _ = synthetic_job(db, 20, seed=2)
    with db.session(readonly=True) as session:
        cursor = solutions_page(session, other, limit=5).next_cursor
        with pytest.raises(QueryError, match="another job"):
            solutions_page(session, job_id, limit=5, cursor=cursor)


def test_filters_nest_at_most_max_nesting_deep_and_that_deep_runs(db, job):
    job_id, metrics = job
    deepest = "not " * MAX_NESTING + "sharpness > 1"
    expected = sorted(
        i for i, m in metrics.items() if (m["sharpness"] > 1) == (MAX_NESTING % 2 == 0)
    )
    assert [row.id for row in walk(db, job_id, where=deepest, limit=500)] == expected
    bracketed = "(" * MAX_NESTING + "sharpness > 1" + ")" * MAX_NESTING
    assert len(walk(db, job_id, where=bracketed, limit=500)) == sum(
        m["sharpness"] > 1 for m in metrics.values()
    )
    for too_deep in ("not " * 50 + "sharpness > 1", "(" * 990 + "sharpness > 1" + ")" * 990):
        with (
            db.session(readonly=True) as session,
            pytest.raises(FilterError, match=f"at most {MAX_NESTING} deep"),
        ):
            solutions_page(session, job_id, where=too_deep)


def test_the_longest_flat_filter_runs(db, job):
    job_id, metrics = job
    clause = "sharpness > 1 or "
    longest = clause * ((MAX_LENGTH - 20) // len(clause)) + "sharpness > 1"
    assert len(longest) <= MAX_LENGTH
    assert len(walk(db, job_id, where=longest, limit=500)) == sum(
        m["sharpness"] > 1 for m in metrics.values()
    )


def test_the_metric_matrix_holds_the_filtered_solutions(db, job):
    job_id, metrics = job
    with db.session(readonly=True) as session:
        ids, matrix = metric_matrix(session, job_id, ["loss", "sharpness"], "sharpness < 50")
        with pytest.raises(QueryError, match="unknown metric 'acc'"):
            metric_matrix(session, job_id, ["acc"])
    assert ids == sorted(i for i, m in metrics.items() if m["sharpness"] < 50)
    assert matrix.shape == (len(ids), 2)
    assert matrix[0].tolist() == [metrics[ids[0]]["loss"], metrics[ids[0]]["sharpness"]]


def test_a_solution_s_lineage_follows_its_fingerprint_from_the_start(db, store):
    with db.session() as session:
        spec = SearchSpec(problem="styblinski-tang:dim=2")
        job_id = create_job(session, spec.model_dump()).id
    run_job(db, store, job_id)
    with db.session(readonly=True) as session:
        graph = lineage_graph(session, job_id)
        minima = session.scalars(select(Solution.node_id).where(Solution.job_id == job_id)).all()
        root = next(n for n, d in graph.nodes(data=True) if d["fingerprint"] == "")
        assert len(minima) == 4
        for node_id in minima:
            rides = lineage(session, node_id)
            labels = tuple((r["eigen_index"], r["sign"]) for r in rides)
            assert labels == from_text(graph.nodes[node_id]["fingerprint"]) and labels
            assert rides[0]["from"] == root and rides[-1]["to"] == node_id
            for ride, after in itertools.pairwise(rides):
                assert ride["to"] == after["from"]
            for ride in rides:
                edges = graph.get_edge_data(ride["from"], ride["to"]).values()
                assert any(e["eigenvalue"] == ride["eigenvalue"] for e in edges)
