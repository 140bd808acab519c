"""The worker pool with real processes: Celery workers on a Redis of their own, PostgreSQL.

The same job on the pool and in-process gives the same DAG; a worker killed in the middle of a
ride, or a broker restarted empty, loses nothing and repeats nothing recorded; a cancel stops
all further work; a NaN ride fails alone.
"""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from sqlalchemy import func, select

from ridgerider.problems.registry import load
from ridgerider.report import run
from ridgerider.search import SearchSpec
from ridgerider.search.fingerprint import extend, from_text, to_text
from storage.artifacts import LocalArtifactStore, get_tensors
from storage.database import Database
from storage.jobs import create_job
from storage.models import JOB_ENDED, Job, Node, Ride, Solution, utcnow
from storage.schema import ensure_schema
from tests.api.test_cli import ridgerider
from tests.workers.pool import SETTINGS, Pool, pool
from workers.local import run_job

COMPLETE: dict[str, int] = {}  # small problems: no node budget, every runner builds the tree


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    with pool(tmp_path_factory.mktemp("pool")) as running:
        yield running


def reference(
    tmp_path, problem: str, budget: dict | None = None
) -> tuple[Database, LocalArtifactStore, int]:
    """The same job (under `budget`, else none) run in-process on SQLite."""
    db = Database(tmp_path / "reference.db")
    ensure_schema(db)
    store = LocalArtifactStore(tmp_path / "reference-artifacts")
    spec = SearchSpec(problem=problem, **(budget or COMPLETE))
    with db.session() as session:
        job_id = create_job(session, spec.model_dump()).id
    run_job(db, store, job_id)
    return db, store, job_id


def dag(db: Database, store: LocalArtifactStore, job_id: int) -> tuple[list, list]:
    """Nodes as (kind, theta) and rides as (from, eigen index, sign, to, state), indices into
    the node list: comparable across databases whatever the ids and the order of work."""
    with db.session(readonly=True) as session:
        nodes = session.scalars(select(Node).where(Node.job_id == job_id).order_by(Node.id)).all()
        rides = session.scalars(select(Ride).where(Ride.job_id == job_id)).all()
    points = [(n.kind, get_tensors(store, n.theta_sha256)["theta"]) for n in nodes]
    index = {n.id: i for i, n in enumerate(nodes)}
    edges = [
        (index[r.from_node_id], r.eigen_index, r.sign, index.get(r.to_node_id), r.state)
        for r in rides
    ]
    return points, edges


def stored(db: Database, job_id: int) -> tuple[list, list]:
    """The job's nodes (path, kind, parameters' sha256) and rides (branch point's path, eigen
    index, sign, reached point's path, state, HVPs), in the order they were recorded."""
    with db.session(readonly=True) as session:
        nodes = session.scalars(select(Node).where(Node.job_id == job_id).order_by(Node.id)).all()
        rides = session.scalars(select(Ride).where(Ride.job_id == job_id).order_by(Ride.id)).all()
    path = {n.id: n.path for n in nodes}
    return (
        [(n.path, n.kind, n.theta_sha256) for n in nodes],
        [
            (path[r.from_node_id], r.eigen_index, r.sign, path.get(r.to_node_id), r.state, r.hvps)
            for r in rides
        ],
    )


def assert_same_dag(left: tuple[list, list], right: tuple[list, list]) -> None:
    (left_points, left_edges), (right_points, right_edges) = left, right
    assert len(left_points) == len(right_points)
    match = {}
    for i, (kind, theta) in enumerate(left_points):
        distances = [(t - theta).norm().item() for _, t in right_points]
        j = min(range(len(distances)), key=distances.__getitem__)
        assert distances[j] < 1e-5 and right_points[j][0] == kind
        match[i] = j
    assert len(set(match.values())) == len(right_points)
    mapped = sorted(
        (match[a], k, s, None if b is None else match[b], state) for a, k, s, b, state in left_edges
    )
    assert mapped == sorted(right_edges, key=lambda e: (e[0], e[1], e[2], e[3] or -1, e[4]))


def wait_for(db: Database, job_id: int, condition, timeout: float = 120) -> Job:
    deadline = time.monotonic() + timeout
    while True:
        with db.session(readonly=True) as session:
            job = session.get(Job, job_id)
            if condition(session, job):
                return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} stuck: {job.status}, {job.outstanding} to go")
        time.sleep(0.02)


def rides_done(count: int):
    def condition(session, job) -> bool:
        done = session.scalar(
            select(func.count()).where(Ride.job_id == job.id, Ride.state == "done")
        )
        return done >= count or job.status in JOB_ENDED

    return condition


def ended(session, job) -> bool:
    return job.status in JOB_ENDED


def complete_spec(running: Pool) -> str:
    """A spec file whose node budget holds every point of the test problems' trees."""
    path = running.folder / "complete.json"
    path.write_text(json.dumps(COMPLETE))
    return str(path)


def submit(running: Pool, problem: str) -> int:
    result = running.cli("run", "--problem", problem, "--spec", complete_spec(running), "--no-wait")
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip())


def memory_dag(problem: str) -> tuple[list, list]:
    """The DAG of the same search in memory (`report.run`), in `dag`'s shape."""
    graph = run(SearchSpec(problem=problem, **COMPLETE)).result.graph
    points = [(data["point"].kind, data["point"].theta) for _, data in graph.nodes(data=True)]
    edges = [(a, d["eigen_index"], d["sign"], b, "done") for a, b, d in graph.edges(data=True)]
    return points, edges


@pytest.mark.parametrize(
    ("problem", "minima"),
    [
        ("styblinski-tang:dim=3", 8),
        ("himmelblau", 4),
        ("tree-mdp:depth=4,seed=2018", 19),
        ("tests.problems:far_down", 4),  # Himmelblau times 2**-40, in the engine's units
    ],
)
def test_the_pool_the_in_process_runner_and_the_library_find_one_dag(
    shared, tmp_path, problem, minima
):
    """Tree MDP depth 4, seed 2018: some climbs turn off their direction and are retaken with short
    steps once the tree is still (`Tree.waiting_climbs`), on the pool by the finalising task.
    The pool's two workers end units in another order than one runner, and its records wait
    for their turn (`storage.turns`): with one torch thread in every process, the records are
    the in-process ones, in the same order, down to the bytes of every point."""
    running, db = shared
    result = running.cli("run", "--problem", problem, "--spec", complete_spec(running), "--json")
    assert result.returncode == 0, result.stderr + running.logs()
    document = json.loads(result.stdout)
    assert document["job"]["status"] == "finished" and len(document["minima"]) == minima
    local = reference(tmp_path, problem)
    assert stored(db, document["job"]["id"]) == stored(local[0], local[2])
    pooled = dag(db, LocalArtifactStore(running.folder / "artifacts"), document["job"]["id"])
    assert_same_dag(pooled, dag(*local))
    assert_same_dag(memory_dag(problem), dag(*local))
    with local[0].session(readonly=True) as session:
        assert document["job"]["hvps"] == session.get(Job, local[2]).hvps


def test_a_pool_split_into_gpu_and_cpu_queues_records_the_in_process_rows(tmp_path):
    """With RIDGERIDER_GPU_QUEUE, expansions and rides go to one worker (the `gpu` queue) and
    evaluations to another (`ridgerider`): a ride that ends waits for the evaluations before it
    in the frontier, which the other worker records, and the rows are the in-process ones."""
    problem = "styblinski-tang:dim=3"
    (tmp_path / "pool").mkdir()
    with pool(tmp_path / "pool", workers=0, settings={"RIDGERIDER_GPU_QUEUE": "1"}) as (
        running,
        db,
    ):
        running.start_worker("gpu")
        running.start_worker("ridgerider")
        spec = complete_spec(running)
        result = running.cli("run", "--problem", problem, "--spec", spec, "--json")
        assert result.returncode == 0, result.stderr + running.logs()
        document = json.loads(result.stdout)
        assert document["job"]["status"] == "finished" and len(document["minima"]) == 8
        local = reference(tmp_path, problem)
        assert stored(db, document["job"]["id"]) == stored(local[0], local[2])
        evaluated = {running.log(name).count("ridgerider.unit") for name in ("w0", "w1")}
    assert min(evaluated) > 0, "both queues took work"


def test_climbs_a_node_budget_left_waiting_are_granted_on_the_pool_as_in_memory(shared, tmp_path):
    """Styblinski-Tang dim 3 under max_nodes = 200: its minima's shares hold a few of their 48
    climbs (how many depends on the path that reached each minimum first, and so on the order
    of the work), the rest wait until the tree is still; the finalising task then grants them
    the points left, the job runs again, and ends with the tree of the in-memory search, its
    frontier exhausted, every climb taken."""
    running, db = shared
    budget = {"max_nodes": 200, "max_depth": 20}
    spec = tmp_path / "budget.json"
    spec.write_text(json.dumps(budget))
    problem = "styblinski-tang:dim=3"
    result = running.cli("run", "--problem", problem, "--spec", str(spec), "--json")
    assert result.returncode == 0, result.stderr + running.logs()
    document = json.loads(result.stdout)
    assert document["job"]["status"] == "finished" and len(document["minima"]) == 8
    assert document["stats"]["stopped"] == "frontier exhausted"
    graph = run(SearchSpec(problem=problem, **budget)).result.graph
    points = [(data["point"].kind, data["point"].theta) for _, data in graph.nodes(data=True)]
    edges = [(a, d["eigen_index"], d["sign"], b, "done") for a, b, d in graph.edges(data=True)]
    pooled = dag(db, LocalArtifactStore(running.folder / "artifacts"), document["job"]["id"])
    assert_same_dag(pooled, (points, edges))
    with db.session(readonly=True) as session:
        climbs = (
            select(func.count(), func.count(Ride.quota))
            .join(Node, Node.id == Ride.from_node_id)
            .where(Ride.job_id == document["job"]["id"], Node.kind == "minimum")
        )
        taken, granted = session.execute(climbs).one()
    assert taken == 8 * 6 and 0 < granted < taken


def claim_order(db: Database, job_id: int) -> list[tuple[str, str]]:
    """The job's units in the order they were claimed: ("node", its fingerprint) or ("ride",
    the fingerprint of the point it rides to)."""
    with db.session(readonly=True) as session:
        nodes = session.execute(
            select(Node.claimed_at, Node.path).where(
                Node.job_id == job_id, Node.claimed_at.is_not(None)
            )
        ).all()
        rides = session.execute(
            select(Ride.claimed_at, Node.path, Ride.eigen_index, Ride.sign)
            .join(Node, Node.id == Ride.from_node_id)
            .where(Ride.job_id == job_id)
        ).all()
    units = [(at, ("node", path)) for at, path in nodes]
    units += [
        (at, ("ride", to_text(extend(from_text(path), index, sign))))
        for at, path, index, sign in rides
    ]
    return [unit for _, unit in sorted(units)]


def test_one_worker_takes_the_units_in_the_in_process_runner_s_order(tmp_path):
    """A ticket claims the job's best pending unit by the frontier, not the unit it was sent
    for: done one at a time, the pool expands the tree in the in-process order."""
    problem = "styblinski-tang:dim=3"
    local = reference(tmp_path, problem)
    (tmp_path / "one").mkdir()
    with pool(tmp_path / "one", workers=1) as (running, db):
        job_id = submit(running, problem)
        assert wait_for(db, job_id, ended).status == "finished", running.logs()
        order = claim_order(db, job_id)
    assert order == claim_order(local[0], local[2])
    # a dive, each node waiting for the ride along its ridge in the other direction
    assert order[:4] == [("node", ""), ("ride", "0+"), ("ride", "0-"), ("node", "0+")]


def test_a_nan_ride_fails_alone_on_the_pool(shared):
    running, db = shared
    job_id = submit(running, "tests.problems:western_nan")
    job = wait_for(db, job_id, ended)
    assert job.status == "finished", running.logs()
    with db.session(readonly=True) as session:
        failures = session.scalars(
            select(Ride.failure).where(Ride.job_id == job_id, Ride.state == "failed")
        ).all()
        solutions = session.scalar(select(func.count()).where(Solution.job_id == job_id))
    assert failures and all("NaN" in f or "settling failed" in f for f in failures)
    assert solutions == 2


def test_a_running_budget_ends_the_open_units_at_once_on_the_pool(shared):
    """The worker whose unit finds the HVP budget spent skips every open expansion and ride at
    once; the minima found are still evaluated, and the job ends."""
    running, db = shared
    spec = running.folder / "hvps.json"
    spec.write_text(json.dumps({"max_hvps": 3_000}))
    result = running.cli(
        "run", "--problem", "styblinski-tang:dim=40", "--spec", str(spec), "--no-wait"
    )
    assert result.returncode == 0, result.stderr
    job = wait_for(db, int(result.stdout.strip()), ended)
    assert job.status == "finished" and job.stopped == "HVP budget", running.logs()
    with db.session(readonly=True) as session:
        states = dict(
            session.execute(
                select(Ride.state, func.count()).where(Ride.job_id == job.id).group_by(Ride.state)
            ).all()
        )
        minima = session.scalar(
            select(func.count()).where(Node.job_id == job.id, Node.kind == "minimum")
        )
        solutions = session.scalar(select(func.count()).where(Solution.job_id == job.id))
    assert states["skipped"] > 200 and "pending" not in states and "claimed" not in states
    assert solutions == minima > 0 and job.outstanding == 0


@pytest.mark.parametrize(
    ("problem", "budget"),
    [
        ("tree-mdp:depth=4,seed=2018", {"max_hvps": 20_000}),
        ("styblinski-tang:dim=3", {"max_solutions": 5}),
    ],
)
def test_an_hvp_or_solution_budget_leaves_the_in_process_rows_on_the_pool(
    shared, tmp_path, problem, budget
):
    """HVP and solution budgets count what the records hold, and records are made in the
    frontier's order: a unit whose turn comes after the budget ran out is skipped, whatever its
    step found, as the in-process runner skips it when it claims it. Two workers run steps
    ahead of the records, and the pool stops where one runner does, down to the bytes."""
    running, db = shared
    spec = tmp_path / "budget.json"
    spec.write_text(json.dumps(budget))
    result = running.cli("run", "--problem", problem, "--spec", str(spec), "--json")
    assert result.returncode == 0, result.stderr + running.logs()
    document = json.loads(result.stdout)
    local = reference(tmp_path, problem, budget)
    with local[0].session(readonly=True) as session:
        expected = session.get(Job, local[2])
        assert expected.stopped in ("HVP budget", "solution budget")
        assert document["stats"]["stopped"] == expected.stopped
        assert document["stats"]["skipped_rides"] == expected.stats["skipped_rides"] > 0
    assert stored(db, document["job"]["id"]) == stored(local[0], local[2])


def lost_job(db: Database, problem: str, *, allow_import: bool) -> int:
    """A job stored as sent to the pool long ago, its message lost: the sweep sends its start.
    (Its problem is stored as is: submission checks are bypassed, as an old row or a bug
    would.)"""
    with db.session() as session:
        job = create_job(session, {"problem": problem, **COMPLETE}, allow_import=allow_import)
        job.enqueued_at = utcnow() - timedelta(minutes=5)
        return job.id


@pytest.mark.parametrize(
    ("problem", "allow_import", "error"),
    [
        ("styblinski-tang:dim=0", True, "dim must be an integer in [1, 1024], got 0"),
        ("digits-mlp:activation=zzz", True, "activation must be one of"),
        ("tests.problems:tiny_net", False, "names a module to import"),
    ],
)
def test_a_job_that_cannot_start_fails_with_its_error_and_is_not_sent_again(
    shared, problem, allow_import, error
):
    running, db = shared
    job_id = lost_job(db, problem, allow_import=allow_import)
    job = wait_for(db, job_id, ended, timeout=60)
    assert job.status == "failed" and error in job.error, running.logs()
    status = running.cli("status", str(job_id))
    assert error in " ".join(status.stdout.split()), status.stdout
    # Each worker's sweep may have sent the start once (two workers); after the failure, none.
    with db.session(readonly=True) as session:
        sent = session.get(Job, job_id).sends
    assert 1 <= sent <= 2
    time.sleep(2 * float(SETTINGS["RIDGERIDER_REQUEUE_AFTER"]))
    with db.session(readonly=True) as session:
        assert session.get(Job, job_id).sends == sent


def test_a_problem_over_the_pool_s_parameter_limit_fails_at_its_start(tmp_path):
    with pool(tmp_path, workers=1, settings={"RIDGERIDER_MAX_PARAMETERS": "10"}) as (running, db):
        small = submit(running, "himmelblau")
        large = submit(running, "digits-mlp:hidden=3")
        assert wait_for(db, small, ended).status == "finished", running.logs()
        job = wait_for(db, large, ended)
    assert job.status == "failed", running.logs()
    assert "parameters, over this pool's limit (RIDGERIDER_MAX_PARAMETERS = 10)" in job.error


def test_a_cancel_stops_all_further_work_and_keeps_what_was_found(shared):
    running, db = shared
    # dim 4 and 10 ms a loss: a tree of minimum hops (climbs evaluate the loss once a Hessian)
    # still has work pending seconds after its fourth ride
    job_id = submit(running, "tests.problems:slow:name=styblinski-tang,dim=4,delay=0.01")
    assert wait_for(db, job_id, rides_done(4)).status == "running"
    result = running.cli("cancel", str(job_id))
    returned = utcnow().replace(tzinfo=None)  # the cancel has committed
    assert result.returncode == 0, result.stderr
    job = wait_for(db, job_id, ended, timeout=60)
    assert job.status == "cancelled" and job.stopped == "cancelled"
    with db.session(readonly=True) as session:
        late = [
            *session.scalars(select(Node.claimed_at).where(Node.job_id == job_id)),
            *session.scalars(select(Ride.claimed_at).where(Ride.job_id == job_id)),
        ]
        states = dict(
            session.execute(
                select(Ride.state, func.count()).where(Ride.job_id == job_id).group_by(Ride.state)
            ).all()
        )
        skipped_nodes = session.scalar(
            select(func.count()).where(Node.job_id == job_id, Node.state == "skipped")
        )
    # A claim racing the cancel may commit just before it (after `cancelled_at` was taken, a
    # moment before the commit); none comes after.
    assert all(c is None or c.replace(tzinfo=None) <= returned for c in late)
    assert states.get("skipped", 0) + skipped_nodes > 0 and states.get("done", 0) >= 4
    assert "pending" not in states and "claimed" not in states
    assert job.stats["rides"] == states["done"]


def test_a_worker_killed_in_the_middle_of_a_ride_loses_and_repeats_nothing(tmp_path):
    with pool(tmp_path) as (running, db):
        job_id = submit(running, "tests.problems:slow")

        def a_ride_in_flight(session, job) -> bool:
            return (
                session.scalar(
                    select(Ride.claim_token).where(Ride.job_id == job.id, Ride.state == "claimed")
                )
                is not None
                or job.status in JOB_ENDED
            )

        assert wait_for(db, job_id, a_ride_in_flight).status == "running"
        with db.session(readonly=True) as session:
            ride_id, token = session.execute(
                select(Ride.id, Ride.claim_token).where(
                    Ride.job_id == job_id, Ride.state == "claimed"
                )
            ).first()
        os.kill(int(token.split(":")[0]), signal.SIGKILL)  # the pool process riding it
        job = wait_for(db, job_id, ended)
        assert job.status == "finished", running.logs()
        with db.session(readonly=True) as session:
            killed = session.get(Ride, ride_id)
            node_attempts = session.scalars(
                select(Node.attempts).where(Node.job_id == job_id, Node.work != "none")
            ).all()
            ride_attempts = session.scalars(
                select(Ride.attempts).where(Ride.job_id == job_id, Ride.id != ride_id)
            ).all()
            minima = session.scalar(
                select(func.count()).where(Node.job_id == job_id, Node.kind == "minimum")
            )
            solutions = session.scalar(select(func.count()).where(Solution.job_id == job_id))
        assert killed.state == "done" and killed.attempts == 2  # redone once, by the sweep
        assert set(node_attempts) == {1} and set(ride_attempts) == {1}
        assert minima == solutions == 4
        pooled = dag(db, LocalArtifactStore(running.folder / "artifacts"), job_id)
        assert_same_dag(pooled, dag(*reference(tmp_path, "himmelblau")))


def test_a_broker_restarted_empty_in_the_middle_of_a_job_loses_nothing(tmp_path):
    with pool(tmp_path) as (running, db):
        job_id = submit(running, "tests.problems:slow:name=styblinski-tang,dim=3")
        assert wait_for(db, job_id, rides_done(3)).status == "running"
        running.stop_redis()
        time.sleep(2)
        running.start_redis()
        job = wait_for(db, job_id, ended, timeout=180)
        assert job.status == "finished", running.logs()
        pooled = dag(db, LocalArtifactStore(running.folder / "artifacts"), job_id)
        assert_same_dag(pooled, dag(*reference(tmp_path, "styblinski-tang:dim=3")))
        with db.session(readonly=True) as session:
            assert session.scalar(select(func.count()).where(Solution.job_id == job_id)) == 8


def minima_of(document: dict, store: LocalArtifactStore) -> list[torch.Tensor]:
    return [get_tensors(store, m["weights_sha256"])["theta"] for m in document["minima"]]


def run_in_process(
    folder: Path, problem: str, spec: str, threads: str
) -> tuple[dict, LocalArtifactStore]:
    """`ridgerider run` in a process of its own (no broker: in process), in `folder`."""
    folder.mkdir()
    result = ridgerider(
        "run", "--problem", problem, "--spec", spec, "--threads", threads, "--json", cwd=folder
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), LocalArtifactStore(folder / "ridgerider-artifacts")


def assert_same_minima(problem: str, reference: list, other: list, rtol: float) -> None:
    """The same minima, matched after aligning symmetric copies, to `rtol` of their norm."""
    align = load(problem).align or (lambda reference, theta: theta)
    assert reference and len(other) == len(reference)
    for theta in reference:
        distances = [(align(theta, t) - theta).norm().item() for t in other]
        assert min(distances) <= rtol * (1 + theta.norm().item())


@pytest.mark.parametrize("problem", ["styblinski-tang:dim=3", "himmelblau"])
def test_the_same_minima_with_one_and_two_threads_and_on_the_pool(shared, tmp_path, problem):
    """A problem with a known answer gives the same minima in process with 1 and 2 torch
    threads and on the pool (1 thread a process, units interleaved by two workers): its
    eigenpairs and rides are exact and its minima polished to the gradient tolerance, so
    rounding decides nothing."""
    running, _ = shared
    spec = tmp_path / "spec.toml"
    spec.write_text("")  # the defaults: a small problem's tree is searched to its end
    runs = [run_in_process(tmp_path / f"threads-{t}", problem, str(spec), t) for t in "12"]
    result = running.cli("run", "--problem", problem, "--spec", str(spec), "--json")
    assert result.returncode == 0, result.stderr + running.logs()
    runs.append((json.loads(result.stdout), LocalArtifactStore(running.folder / "artifacts")))
    minima = [minima_of(document, store) for document, store in runs]
    for other in minima[1:]:
        assert_same_minima(problem, minima[0], other, 1e-6)


def test_a_network_s_node_budget_leaves_the_same_minima_on_a_pool_with_a_worker_killed(tmp_path):
    """A small network whose node budget ends the search, on two workers, one killed while it
    rides (its ride redone by the other): the same tree as in process with the same thread
    count (1), whatever order the units ran in, so the same minima, to the bytes of their
    weights (records wait for their turn, `storage.turns`)."""
    problem = "digits-mlp:hidden=3"
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"max_nodes": 16}))
    document, _ = run_in_process(tmp_path / "in-process", problem, str(spec), "1")
    assert document["stats"]["stopped"] == "node budget"
    assert document["stats"]["skipped_rides"] > 0
    (tmp_path / "pool").mkdir()
    with pool(tmp_path / "pool") as (running, db):
        result = running.cli("run", "--problem", problem, "--spec", str(spec), "--no-wait")
        assert result.returncode == 0, result.stderr
        job_id = int(result.stdout.strip())

        def a_ride_in_flight(session, job) -> bool:
            claimed = select(Ride.id).where(Ride.job_id == job.id, Ride.state == "claimed")
            return session.scalar(claimed) is not None or job.status in JOB_ENDED

        assert wait_for(db, job_id, a_ride_in_flight, timeout=300).status == "running"
        with db.session(readonly=True) as session:
            token = session.scalar(
                select(Ride.claim_token).where(Ride.job_id == job_id, Ride.state == "claimed")
            )
        os.kill(int(token.split(":")[0]), signal.SIGKILL)
        job = wait_for(db, job_id, ended, timeout=600)
        assert job.status == "finished", running.logs()
        assert job.stopped == "node budget"
        assert job.stats["nodes"] == document["stats"]["nodes"]
        with db.session(readonly=True) as session:
            redone = session.scalar(select(func.max(Ride.attempts)).where(Ride.job_id == job_id))
            weights = session.scalars(
                select(Solution.weights_sha256).where(Solution.job_id == job_id)
            ).all()
    assert redone == 2
    assert sorted(weights) == sorted(m["weights_sha256"] for m in document["minima"])


def test_a_reproducible_network_search_gives_the_same_minima_with_one_and_two_threads(tmp_path):
    """`reproducible = true`: tracking to 1e-10 of ||H|| and exact minima take rounding out of
    a network's search, so the thread count does not change the set."""
    problem = "digits-mlp:hidden=3"
    spec = tmp_path / "spec.toml"
    spec.write_text("reproducible = true\nmax_depth = 2\nridges_per_node = 1\n")
    runs = [run_in_process(tmp_path / f"threads-{t}", problem, str(spec), t) for t in "12"]
    one, two = (minima_of(document, store) for document, store in runs)
    assert_same_minima(problem, one, two, 1e-6)
