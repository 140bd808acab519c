"""The in-process runner works off the database, on both engines: it finds what the in-memory
search finds, marks NaN rides failed and goes on, honours budgets, says why a degenerate start
gives nothing, and refuses a bad start."""

from __future__ import annotations

import itertools
import time

import pytest
import torch
from sqlalchemy import select

from ridgerider.problems.registry import load
from ridgerider.search import SearchSpec, search
from ridgerider.search.frontier import search_frontier
from ridgerider.search.loop import begin, work_on
from ridgerider.search.memory import MemoryTree
from ridgerider.search.steps import DEGENERATE_START
from storage.artifacts import get_tensors
from storage.jobs import create_job, get_job
from storage.models import Job, Node, Ride, Solution
from storage.report import job_document
from tests.known_answers import HIMMELBLAU_MINIMA
from workers.in_process import InProcessPool
from workers.local import run_job
from workers.steps import StartError


def submit(db, **spec) -> int:
    with db.session() as session:
        return create_job(session, SearchSpec(**spec).model_dump()).id


@pytest.mark.parametrize("problem", ["himmelblau", "styblinski-tang:dim=3"])
def test_the_runner_finds_what_the_in_memory_search_finds(db, store, problem):
    job_id = submit(db, problem=problem, max_nodes=100)  # a complete tree
    progress = []
    job = run_job(db, store, job_id, on_progress=progress.append)
    reference = search(load(problem), SearchSpec(problem=problem, max_nodes=100))
    assert job.status == "finished"
    assert job.stats["nodes"] == reference.graph.number_of_nodes()
    assert job.stats["rides"] == reference.graph.number_of_edges()
    assert job.hvps == reference.hvps
    assert progress[-1]["outstanding"] == 0 and len(progress) >= job.stats["rides"]
    with db.session(readonly=True) as session:
        document = job_document(session, store, job_id)
        shas = session.scalars(select(Solution.weights_sha256).where(Solution.job_id == job_id))
        stored = torch.stack([get_tensors(store, sha)["theta"] for sha in shas])
    expected = torch.stack(
        reference.points("minimum") and [p.theta for p in reference.points("minimum")]
    )
    assert len(document["minima"]) == len(expected) == len(stored)
    for point in expected:
        assert (stored - point).norm(dim=1).min() < 1e-6
    if problem == "himmelblau":
        for point in HIMMELBLAU_MINIMA:
            assert (stored - point).norm(dim=1).min() < 1e-4
    assert document["set_metrics"]["solutions"] == len(expected)


def test_the_runner_stores_the_in_memory_tree_of_a_network_above_the_dense_path(db, store):
    """digits-mlp with 4 hidden units (310 parameters: Lanczos, rides tracked, practical
    leaves): one machine and one thread, so the runner's minima are the library's bit for bit."""
    problem, spec = "digits-mlp:hidden=4", {"max_nodes": 6, "max_depth": 3}
    job = run_job(db, store, submit(db, problem=problem, **spec))
    reference = search(load(problem), SearchSpec(problem=problem, **spec))
    assert job.status == "finished" and job.hvps == reference.hvps
    assert job.stats["nodes"] == reference.graph.number_of_nodes()
    assert job.stats["rides"] == reference.graph.number_of_edges()
    with db.session(readonly=True) as session:
        nodes = session.scalars(select(Node).where(Node.job_id == job.id).order_by(Node.id)).all()
        stored = [get_tensors(store, node.theta_sha256)["theta"] for node in nodes]
    expected = [data["point"] for _, data in sorted(reference.graph.nodes(data=True))]
    assert [node.loss for node in nodes] == [point.loss for point in expected]
    assert all(torch.equal(a, b.theta) for a, b in zip(stored, expected, strict=True))


def test_a_loss_scaled_far_down_is_searched_in_the_engines_units_and_stored_in_its_own(db, store):
    problem = "tests.problems:far_down"  # Himmelblau times 2**-40
    job = run_job(db, store, submit(db, problem=problem))
    reference = search(load(problem), SearchSpec(problem=problem))
    loss = load(problem).loss
    with db.session(readonly=True) as session:
        document = job_document(session, store, job.id)
        nodes = session.scalars(select(Node).where(Node.job_id == job.id)).all()
        thetas = {node.id: get_tensors(store, node.theta_sha256)["theta"] for node in nodes}
    assert job.status == "finished" and job.stats["nodes"] == reference.graph.number_of_nodes()
    assert sorted(m["loss"] for m in document["minima"]) == sorted(
        p.loss for p in reference.points("minimum")
    )
    assert len(document["minima"]) == 4
    for node in nodes:
        assert node.loss == loss(thetas[node.id]).item()


def test_a_nan_ride_is_marked_failed_and_the_job_finishes_with_the_rest(db, store):
    job_id = submit(db, problem="tests.problems:western_nan")
    job = run_job(db, store, job_id)
    assert job.status == "finished"
    with db.session(readonly=True) as session:
        failed = session.scalars(
            select(Ride).where(Ride.job_id == job_id, Ride.state == "failed")
        ).all()
        document = job_document(session, store, job_id)
    assert failed and all("NaN" in r.failure or "settling failed" in r.failure for r in failed)
    assert job.stats["failed_rides"] == len(failed)
    minima = torch.tensor([m["theta"] for m in document["minima"]])
    assert len(minima) == 2 and (minima[:, 0] > -1.5).all()


def test_budgets_skip_the_rest_and_say_why(db, store):
    job_id = submit(db, problem="styblinski-tang:dim=3", max_nodes=5)
    job = run_job(db, store, job_id)
    assert job.status == "finished" and job.stopped == "node budget"
    assert 1 < job.stats["nodes"] <= 5  # a quota a ride left unused (a copy) is not passed on
    assert job.stats["skipped_rides"] + job.stats["skipped_expansions"] > 0
    assert job.stats["solutions"] == job.stats["minima"]  # every minimum found is evaluated


def test_a_search_cut_short_by_max_depth_or_the_ridge_cap_says_so(db, store):
    """Nothing skipped, and yet incomplete: saddles left unexpanded at max_depth; a ridge left
    unridden by `ridges_per_node`. The job says which, as the in-memory search does."""
    for spec, reason in (({"max_depth": 1}, "depth limit"), ({"ridges_per_node": 2}, "ridge cap")):
        job = run_job(db, store, submit(db, problem="styblinski-tang:dim=3", **spec))
        reference = search(load("styblinski-tang:dim=3"), SearchSpec(**spec))
        assert job.status == "finished" and job.stopped == reference.stopped == reason
        assert job.stats["skipped_rides"] == job.stats["skipped_expansions"] == 0


@pytest.mark.parametrize(
    ("max_nodes", "stopped", "skipped"), [(200, "frontier exhausted", 0), (100, "node budget", 48)]
)
def test_climbs_left_waiting_are_granted_the_points_left_or_skipped(
    db, store, max_nodes, stopped, skipped
):
    """Styblinski-Tang dim 3: climbs its minima's shares cannot hold wait for the points the
    still tree left unused: the 173 of 200 give each of 43 its 3; the 73 of 100 cannot give
    each of 48 its 3, and they are skipped. The job ends as the in-memory search does."""
    spec = {"max_nodes": max_nodes, "max_depth": 20}
    job = run_job(db, store, submit(db, problem="styblinski-tang:dim=3", **spec))
    reference = search(load("styblinski-tang:dim=3"), SearchSpec(**spec))
    assert job.status == "finished" and job.stats["stopped"] == reference.stopped == stopped
    assert job.stats["skipped_rides"] == reference.open["rides"] == skipped
    assert job.stats["nodes"] == reference.graph.number_of_nodes()
    assert job.stats["minima"] == 8


def test_a_running_budget_that_runs_out_ends_the_open_units_at_once(db, store):
    """Past an HVP budget only evaluations are claimed (each other unit skipped one by one was a
    transaction and a pass over the frontier: a minute for a 5-s budget), and the tree is the
    in-memory search's."""
    problem, budget = "styblinski-tang:dim=40", 3_000
    progress = []
    job_id = submit(db, problem=problem, max_hvps=budget)
    job = run_job(db, store, job_id, on_progress=progress.append)
    reference = search(load(problem), SearchSpec(problem=problem, max_hvps=budget))
    assert job.status == "finished" and job.stopped == "HVP budget"
    assert job.stats["nodes"] == reference.graph.number_of_nodes()
    assert job.stats["skipped_rides"] == reference.open["rides"] > 200
    after = [now for before, now in itertools.pairwise(progress) if before["hvps"] >= budget]
    assert 1 <= len(after) <= 1 + job.stats["minima"]
    assert progress[-1]["outstanding"] == 0


def test_a_degenerate_start_finishes_the_job_saying_why_it_found_nothing(db, store):
    job = run_job(db, store, submit(db, problem="monkey-saddle"))
    assert job.status == "finished" and job.stopped == DEGENERATE_START
    assert (job.stats["nodes"], job.stats["degenerate"], job.stats["rides"]) == (1, 1, 0)
    assert job.stats["stopped"] == DEGENERATE_START


def test_a_start_that_is_no_critical_point_fails_the_job(db, store):
    job_id = submit(db, problem="himmelblau")
    with db.session() as session:  # a spec whose problem starts off any critical point
        session.get(Job, job_id).spec = {
            **session.get(Job, job_id).spec,
            "problem": "tests.problems:off_critical",
        }
    with pytest.raises(StartError, match="not a critical point"):
        run_job(db, store, job_id)
    with db.session(readonly=True) as session:
        job = session.get(Job, job_id)
        assert job.status == "failed" and "not a critical point" in job.error


def test_the_in_process_pool_runs_a_submitted_job_and_cancels_another(db, store):
    pool = InProcessPool(store)
    finished, cancelled = submit(db, problem="himmelblau"), submit(db, problem="styblinski-tang")
    pool.submit(db, finished)
    pool.cancel(db, cancelled)
    pool.submit(db, cancelled)
    deadline = time.monotonic() + 120
    while True:
        with db.session(readonly=True) as session:
            statuses = {get_job(session, i).status for i in (finished, cancelled)}
        if statuses <= {"finished", "failed", "cancelled"} or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    with db.session(readonly=True) as session:
        assert session.get(Job, finished).status == "finished"
        assert session.get(Job, cancelled).status == "cancelled"
    assert pool.status() == "ok"


def test_retakes_a_running_budget_leaves_no_room_for_are_skipped_and_counted(db, store):
    """Tree MDP depth 4, seed 2018: an HVP budget that runs out exactly when the tree is first
    still (every unit but the retakes done) skips the retakes of the climbs that turned off
    their direction; the job and the in-memory search stop for it with the same tree, every
    retake counted open, none ridden."""
    problem = load("tree-mdp:depth=4,seed=2018")
    still = MemoryTree(problem, SearchSpec())
    begin(still, problem, still.spec)
    key = search_frontier(still.spec, problem)
    while (unit := still.claim(key)) is not None:
        work_on(still, problem, still.spec, unit)
    turned = still.waiting_climbs()
    assert turned > 0
    spec = {"max_hvps": still.hvps}
    reference = search(problem, SearchSpec(**spec))
    job = run_job(db, store, submit(db, problem="tree-mdp:depth=4,seed=2018", **spec))
    assert job.status == "finished" and job.stopped == reference.stopped == "HVP budget"
    assert job.stats["nodes"] == reference.graph.number_of_nodes() == still.graph.number_of_nodes()
    assert job.stats["skipped_rides"] == reference.open["rides"] == turned
    with db.session(readonly=True) as session:
        signs = session.scalars(
            select(Ride.sign).where(Ride.job_id == job.id, Ride.state == "done")
        )
        assert all(abs(sign) == 1 for sign in signs)
