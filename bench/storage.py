"""Benchmark: model-selection queries over 10,000 stored solutions with 20 metrics each, and
recording a ride into jobs of 50 and 5,000 nodes, on SQLite and on PostgreSQL.

Query rows, each timed `--repeats` times (p50 and p99, milliseconds):
- filter + sort + first page (`solutions_page`, 50 rows, the metrics of each row included);
- the same query 2,500 rows deep: keyset (ours) against LIMIT/OFFSET (the peer);
- the peer that needs no SQL: every metric loaded, filtered and sorted in Python;
- Pareto front over two and three metrics; diverse top-10 (greedy max-min disagreement).

Record rows: a ride's new point recorded into a job's tree (`JobTree.record_ride`, digits-mlp
64-4-10, nodes at random points, the new point recorded as a minimum with a gradient norm of
1e-9): the archive's loss window (ours) against comparing the point with every node after
alignment (the peer, what recording did before the window).

Targets: p99 under 50 ms for a page; a record into 5,000 nodes within 2x one into 50. Run:
`python bench/storage.py` (about 4 minutes; needs PostgreSQL at RIDGERIDER_TEST_POSTGRES or
postgres@127.0.0.1:5432, and creates and drops a database of its own).
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from unittest.mock import patch

import torch
from common import p50_p99, print_table, samples, timed
from sqlalchemy import func, insert, select, update

from ridgerider.critical import classify
from ridgerider.problems.registry import load
from ridgerider.search.frontier import Unit
from ridgerider.search.spec import SearchSpec
from ridgerider.search.steps import Outcome
from storage.artifacts import LocalArtifactStore, put_tensors
from storage.database import Database
from storage.filters import SOLUTIONS
from storage.jobs import create_job
from storage.models import Metric, Node, Ride
from storage.queries import filtered_solutions, parse_job_filter, solutions_page
from storage.records import MergeWindow
from storage.schema import ensure_schema
from storage.selection import Objective, diverse_top_k, pareto_front
from storage.synthetic import minimum_row, synthetic_job
from storage.tree import JobTree
from tests.conftest import postgres_database

EVERYWHERE = MergeWindow((-1e300, 1e300))
FRONTIER = 1_000  # pending rides behind the one recorded, in the last record row
FILTER = "test_accuracy > 0.3 and sharpness < 80"
SORT = "-test_accuracy"
PAGE = 50
DEPTH = 2500  # rows into the filtered, sorted set (at most a quarter of it)


def latency(function: Callable[[], object], repeats: int) -> list[str]:
    """p50 and p99 milliseconds of `function`, after a call that warms the caches and the plan."""
    return p50_p99([1000 * s for s in samples(function, repeats)])


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
    """The query rows, on a job of `solutions` synthetic solutions stored in `db`."""
    ensure_schema(db)
    inserted = timed(synthetic_job, db, solutions)
    job_id, _ = inserted.value
    print(f"{label}: inserted {solutions:,} solutions in {inserted.seconds:.1f} s", file=sys.stderr)
    with db.engine.begin() as connection:  # fresh statistics, as autovacuum would gather
        connection.exec_driver_sql("ANALYZE")

    def page(cursor: str | None = None) -> tuple[list[int], str | None]:
        with db.session(readonly=True) as session:
            result = solutions_page(
                session, job_id, where=FILTER, sort=SORT, limit=PAGE, cursor=cursor
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

    few = max(5, repeats // 10)  # for the slow ones
    two = [("test_accuracy", "max"), ("sharpness", "min")]
    queries = [
        ("filter + sort, first page (ours)", page, repeats),
        (f"same, {DEPTH:,} rows deep: keyset (ours)", lambda: page(cursor), repeats),
        (
            f"same, {DEPTH:,} rows deep: OFFSET (peer)",
            lambda: offset_page(db, job_id, DEPTH),
            repeats,
        ),
        ("first page, filtered in Python (peer)", lambda: python_page(db, job_id), few),
        ("Pareto front, 2 metrics", pareto(two), few),
        ("Pareto front, 3 metrics", pareto([*two, ("ood_accuracy", "max")]), few),
        ("diverse top-10 (filtered)", diverse, few),
    ]
    return [(label, query, *latency(function, n)) for query, function, n in queries]


def record_rows(db: Database, label: str, folder: Path, repeats: int) -> list[tuple]:
    """Milliseconds to record a ride into jobs of 50 and 5,000 nodes, windowed and scanned;
    and into 5,000 nodes with FRONTIER rides pending behind it, which a record orders by the
    frontier to find its turn (`storage.turns`)."""
    ensure_schema(db)
    problem = load("digits-mlp:hidden=4")
    spec = SearchSpec(problem="digits-mlp:hidden=4").resolved(problem)
    store = LocalArtifactStore(folder / f"artifacts-{label}")
    generator = torch.Generator().manual_seed(0)
    rows = []
    for nodes, behind in ((50, 0), (5_000, 0), (5_000, FRONTIER)):
        job_id, root = _job_of_nodes(db, store, problem, nodes, generator)
        _queue_behind(db, job_id, root, behind)
        tree = JobTree(db, store, job_id, problem, spec)
        methods = [("loss window (ours)", False), ("every node (peer)", True)]
        for method, scan in methods[:1] if behind else methods:
            milliseconds = []
            for _ in range(repeats):
                theta = 0.3 * torch.randn(problem.dim, generator=generator, dtype=torch.float64)
                point = classify(problem.loss, theta, probe=1, zero_modes=1)
                point = replace(point, grad_norm=1e-9)  # as a minimum's: its window as narrow
                unit = _pending_ride(db, tree, job_id, root)
                outcome = Outcome(1, 1, "loss-rose", point=point)
                started = time.perf_counter()
                if scan:  # the window made to hold every node: a comparison with each
                    with patch("storage.tree.window_of", lambda *_: EVERYWHERE):
                        tree.record_ride(unit, outcome)
                else:
                    tree.record_ride(unit, outcome)
                milliseconds.append((time.perf_counter() - started) * 1000)
                with db.session(readonly=True) as session:
                    assert session.get(Ride, unit.id).state == "done", "not recorded"
            where = f"{nodes:,} nodes" + (f", {behind:,} rides pending behind it" if behind else "")
            rows.append((label, f"record a ride, {where}: {method}", *p50_p99(milliseconds)))
    return rows


def _job_of_nodes(
    db: Database, store: LocalArtifactStore, problem, count: int, generator: torch.Generator
) -> tuple[int, int]:
    """A running job whose tree holds `count` nodes at random points (losses spread as a
    search's are), the root expanded; the job and root ids."""
    with db.session() as session:
        job = create_job(session, {"problem": "digits-mlp:hidden=4"})
        job.status = "running"
        job_id = job.id
    nodes = []
    for i in range(count):
        theta = 0.3 * torch.randn(problem.dim, generator=generator, dtype=torch.float64)
        row = minimum_row(job_id, secrets.token_hex(32), depth=min(i, 1))
        row.update(
            loss=problem.loss(theta).item(), theta_sha256=put_tensors(store, {"theta": theta})
        )
        nodes.append(row)
    with db.session() as session:
        session.execute(insert(Node), nodes)
        root = session.scalar(select(func.min(Node.id)).where(Node.job_id == job_id))
        session.get(Node, root).path = ""
    return job_id, root


def _queue_behind(db: Database, job_id: int, root: int, count: int) -> None:
    """`count` pending rides from the root, each after any the benchmark records by the
    frontier (eigen indices from 100,000 up)."""
    rides = [
        {
            "job_id": job_id,
            "from_node_id": root,
            "eigen_index": 100_000 + i,
            "sign": 1,
            "eigenvalue": -1.0,
            "depth": 0,
            "state": "pending",
        }
        for i in range(count)
    ]
    if rides:
        with db.session() as session:
            session.execute(insert(Ride), rides)


def _pending_ride(db: Database, tree: JobTree, job_id: int, root: int) -> Unit:
    """A new ride from the root (along the next eigen index), claimed by `tree`: the job's only
    unit, so that it is recorded in its turn (`storage.turns`; the nodes the last ones created
    are marked done, as if evaluated)."""
    with db.session() as session:
        session.execute(
            update(Node).where(Node.job_id == job_id, Node.state == "pending").values(state="done")
        )
        index = session.scalar(
            select(func.count()).where(Ride.from_node_id == root, Ride.eigen_index < 100_000)
        )
        ride = Ride(
            job_id=job_id, from_node_id=root, eigen_index=index, sign=1, eigenvalue=-1.0, depth=0
        )
        session.add(ride)
        session.flush()
        ride_id = ride.id
    unit = tree.claim(lambda unit: (unit.kind != "ride", -unit.id), ("ride",))
    assert unit is not None and unit.id == ride_id
    return unit


@contextmanager
def fresh_database(engine: str, file: Path) -> Iterator[Database]:
    """A new, empty database: an SQLite `file`, or a PostgreSQL database dropped after."""
    with nullcontext(file) if engine == "SQLite" else postgres_database() as url:
        db = Database(url)
        yield db
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--solutions", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--record-repeats", type=int, default=30)
    args = parser.parse_args()
    results, records = [], []
    with tempfile.TemporaryDirectory() as folder:
        for engine in ("SQLite", "PostgreSQL"):
            with fresh_database(engine, Path(folder) / "bench.db") as db:
                results += measure(db, engine, args.solutions, args.repeats)
            with fresh_database(engine, Path(folder) / "records.db") as db:
                records += record_rows(db, engine, Path(folder), args.record_repeats)
    print(
        f"\n{args.solutions:,} solutions x 20 metrics; filter `{FILTER}`, sort `{SORT}`, "
        f"{PAGE} rows a page\n"
    )
    print_table(["engine", "query", "p50 ms", "p99 ms"], "llrr", results)
    print("\nRecording a ride's new point into a job's tree (digits-mlp 64-4-10), milliseconds\n")
    print_table(["engine", "record", "p50 ms", "p99 ms"], "llrr", records)


if __name__ == "__main__":
    main()
