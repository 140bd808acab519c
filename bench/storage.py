"""Benchmark: model-selection queries over 10,000 stored solutions with 20 metrics each, on
SQLite and on PostgreSQL.

Rows, each timed `--repeats` times (p50 and p99, milliseconds):
- filter + sort + first page (`solutions_page`, 50 rows, the metrics of each row included);
- the same query 2,500 rows deep: keyset (ours) against LIMIT/OFFSET (the peer);
- the peer that needs no SQL: every metric loaded, filtered and sorted in Python;
- Pareto front over two and three metrics; diverse top-10 (greedy max-min disagreement).

Target: p99 under 50 ms for a page. Run: `python bench/storage.py` (about 3 minutes; needs
PostgreSQL at RIDGERIDER_TEST_POSTGRES or postgres@127.0.0.1:5432, and creates and drops a
database of its own).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage.database import Database
from storage.filters import SOLUTIONS
from storage.models import Metric
from storage.queries import filtered_solutions, parse_job_filter, solutions_page
from storage.schema import ensure_schema
from storage.selection import Objective, diverse_top_k, pareto_front
from tests.conftest import postgres_database
from tests.storage.synthetic import synthetic_job

FILTER = "test_accuracy > 0.3 and sharpness < 80"
SORT = "-test_accuracy"
PAGE = 50
DEPTH = 2500  # rows into the filtered, sorted set (at most a quarter of it)


def timed(function: Callable[[], object], repeats: int) -> tuple[float, float]:
    function()  # warm the caches and the plan
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(samples, 50)), float(np.percentile(samples, 99))


def offset_page(db: Database, job_id: int, offset: int) -> list[int]:
    """The peer: the same filtered, sorted page by LIMIT/OFFSET."""
    with db.session(readonly=True) as session:
        parsed = parse_job_filter(session, job_id, FILTER)
        query, key = filtered_solutions(job_id, parsed, sort_metric=SORT.lstrip("-"))
        query = query.order_by(key.desc(), SOLUTIONS.c.id).offset(offset).limit(PAGE)
        return [row.id for row in session.execute(query)]


def python_page(db: Database, job_id: int) -> list[int]:
    """The peer without SQL filters: every metric of the job loaded, then filtered in Python."""
    with db.session(readonly=True) as session:
        rows = session.execute(
            select(Metric.solution_id, Metric.name, Metric.value).where(Metric.job_id == job_id)
        )
        metrics: dict[int, dict[str, float]] = {}
        for solution_id, name, value in rows:
            metrics.setdefault(solution_id, {})[name] = value
    passing = [i for i, m in metrics.items() if m["test_accuracy"] > 0.3 and m["sharpness"] < 80]
    passing.sort(key=lambda i: (-metrics[i]["test_accuracy"], i))
    return passing[:PAGE]


def measure(db: Database, label: str, solutions: int, repeats: int) -> list[tuple]:
    ensure_schema(db)
    started = time.perf_counter()
    job_id, _ = synthetic_job(db, solutions)
    print(
        f"{label}: inserted {solutions:,} solutions in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    with db.engine.begin() as connection:  # fresh statistics, as autovacuum would gather
        connection.exec_driver_sql("ANALYZE")

    def page(cursor: str | None = None) -> list[int]:
        with db.session(readonly=True) as session:
            result = solutions_page(
                session, job_id, filter=FILTER, sort=SORT, limit=PAGE, cursor=cursor
            )
        return [row.id for row in result.items], result.next_cursor

    depth = min(DEPTH, solutions // 4 // PAGE * PAGE)
    cursor = None
    walked = 0
    while walked < depth:
        _, cursor = page(cursor)
        walked += PAGE
    deep_ids, _ = page(cursor)
    assert deep_ids == offset_page(db, job_id, depth), "keyset and offset disagree"
    assert page()[0] == python_page(db, job_id), "SQL and Python disagree"

    def pareto(names: list[tuple[str, str]]) -> Callable[[], object]:
        def run() -> object:
            with db.session(readonly=True) as session:
                return pareto_front(session, job_id, [Objective(*n) for n in names])

        return run

    def diverse() -> object:
        with db.session(readonly=True) as session:
            return diverse_top_k(session, job_id, 10, FILTER)

    rows = [
        ("filter + sort, first page (ours)", *timed(page, repeats)),
        (f"same, {DEPTH:,} rows deep: keyset (ours)", *timed(lambda: page(cursor), repeats)),
        (
            f"same, {DEPTH:,} rows deep: OFFSET (peer)",
            *timed(lambda: offset_page(db, job_id, DEPTH), repeats),
        ),
        (
            "first page, filtered in Python (peer)",
            *timed(lambda: python_page(db, job_id), max(5, repeats // 10)),
        ),
        (
            "Pareto front, 2 metrics",
            *timed(pareto([("test_accuracy", "max"), ("sharpness", "min")]), max(5, repeats // 10)),
        ),
        (
            "Pareto front, 3 metrics",
            *timed(
                pareto([("test_accuracy", "max"), ("sharpness", "min"), ("ood_accuracy", "max")]),
                max(5, repeats // 10),
            ),
        ),
        ("diverse top-10 (filtered)", *timed(diverse, max(5, repeats // 10))),
    ]
    return [(label, *row) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solutions", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        sqlite = Database(Path(folder) / "bench.db")
        results += measure(sqlite, "SQLite", args.solutions, args.repeats)
        sqlite.dispose()
    with postgres_database() as url:
        postgres = Database(url)
        results += measure(postgres, "PostgreSQL", args.solutions, args.repeats)
        postgres.dispose()
    print(
        f"\n{args.solutions:,} solutions x 20 metrics; filter `{FILTER}`, sort `{SORT}`, "
        f"{PAGE} rows a page\n"
    )
    print("| engine | query | p50 ms | p99 ms |")
    print("|---|---|---:|---:|")
    for engine, query, p50, p99 in results:
        print(f"| {engine} | {query} | {p50:.1f} | {p99:.1f} |")


if __name__ == "__main__":
    main()
