"""Units recorded in their turn: a job whose units end in another order than they are claimed
in (as on a pool) makes exactly the in-process tree, row for row."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from ridgerider.search import SearchSpec
from ridgerider.search.frontier import search_frontier
from ridgerider.search.loop import grant_waiting, work_on
from storage.artifacts import LocalArtifactStore
from storage.database import Database
from storage.jobs import cancel_job, claim_finalisation, create_job, get_job
from storage.models import Job, Node, Ride, utcnow
from storage.schema import ensure_schema
from storage.sweep import lost_work
from workers import steps
from workers.local import run_job


def new_job(db: Database, problem: str) -> int:
    with db.session() as session:
        return create_job(session, SearchSpec(problem=problem).model_dump()).id


def rows(db: Database, job_id: int) -> tuple[list, list, int]:
    """Every node and ride of the job as stored, ids included, and the job's HVPs."""
    with db.session(readonly=True) as session:
        nodes = session.execute(
            select(Node.id, Node.path, Node.kind, Node.theta_sha256, Node.state)
            .where(Node.job_id == job_id)
            .order_by(Node.id)
        ).all()
        rides = session.execute(
            select(Ride.id, Ride.from_node_id, Ride.eigen_index, Ride.sign)
            .add_columns(Ride.to_node_id, Ride.state, Ride.hvps, Ride.outcome)
            .where(Ride.job_id == job_id)
            .order_by(Ride.id)
        ).all()
        return [tuple(n) for n in nodes], [tuple(r) for r in rides], get_job(session, job_id).hvps


def run_last_first(db: Database, store: LocalArtifactStore, job_id: int, batch: int) -> None:
    """Run the job claiming `batch` units at a time and doing each batch last claimed first:
    every unit but the first of a batch ends while units before it are still to be recorded."""
    ctx = steps.JobContext.load(db, store, job_id)
    steps.start(ctx)
    key = search_frontier(ctx.spec, ctx.problem)
    while True:
        claimed = []
        while len(claimed) < batch and (unit := ctx.tree.claim(key)) is not None:
            claimed.append(unit)
        if claimed:
            for unit in reversed(claimed):
                work_on(ctx.tree, ctx.problem, ctx.spec, unit)
        elif not grant_waiting(ctx.tree, ctx.problem, ctx.spec):
            break
    with db.session() as session:
        assert claim_finalisation(session, job_id)
    steps.finalise(ctx)


@pytest.mark.parametrize("problem", ["tree-mdp:depth=4,seed=2018", "styblinski-tang:dim=3"])
def test_units_ending_out_of_order_make_the_in_process_tree(tmp_path, problem):
    """On the tree MDP, rides from different branch points reach mirror-image copies of one
    policy, and the tree depends on which copy is recorded first: units that end last-first
    must leave it unchanged, down to the node ids and the hashes of the stored parameters."""
    trees = []
    for name, batch in (("in-process", None), ("last-first", 3)):
        db = Database(tmp_path / f"{name}.db")
        ensure_schema(db)
        store = LocalArtifactStore(tmp_path / name)
        job_id = new_job(db, problem)
        if batch is None:
            run_job(db, store, job_id)
        else:
            run_last_first(db, store, job_id, batch)
        with db.session(readonly=True) as session:
            assert get_job(session, job_id).status == "finished"
        trees.append(rows(db, job_id))
    (nodes, rides, hvps), (other_nodes, other_rides, other_hvps) = trees
    assert len(nodes) > 20 and nodes == other_nodes
    assert rides == other_rides and hvps == other_hvps
    assert all(ride[-1] is None for ride in rides)  # no outcome is left behind


def second_ends_first(db: Database, store: LocalArtifactStore) -> tuple:
    """A Himmelblau job whose root is expanded into its 4 rides, the first two claimed and the
    second done: (context, job id, first, second, the units the second's record released)."""
    job_id = new_job(db, "himmelblau")
    ctx = steps.JobContext.load(db, store, job_id)
    steps.start(ctx)
    key = search_frontier(ctx.spec, ctx.problem)
    assert len(work_on(ctx.tree, ctx.problem, ctx.spec, ctx.tree.claim(key))) == 4
    first, second = ctx.tree.claim(key), ctx.tree.claim(key)
    released = work_on(ctx.tree, ctx.problem, ctx.spec, second)
    return ctx, job_id, first, second, released


def test_an_outcome_waits_for_the_units_before_it(db, store):
    """The second unit by the frontier ends first: it is kept (`computed`), released nothing,
    and is recorded, with what it releases, once the first one is."""
    ctx, job_id, first, second, released = second_ends_first(db, store)
    assert released == []
    with db.session(readonly=True) as session:
        assert session.get(Ride, second.id).state == "computed"
        assert session.get(Ride, first.id).state == "claimed"
        assert session.scalar(select(Node.id).where(Node.job_id == job_id, Node.depth == 1)) is None
    released = work_on(ctx.tree, ctx.problem, ctx.spec, first)
    with db.session(readonly=True) as session:
        assert [session.get(Ride, r.id).state for r in (first, second)] == ["done", "done"]
        created = session.scalars(
            select(Node.id).where(Node.job_id == job_id, Node.depth == 1)
        ).all()
    assert created and {unit.id for unit in released} <= set(created)


def test_outcomes_whose_recorder_died_are_recorded_by_the_next_runner(tmp_path):
    """A unit ends while the one before it is claimed by a runner that then dies: the sweep
    sends a message for the kept outcome only once nothing is claimed, and resuming the job
    records both in order, ending with the uninterrupted run's tree."""
    reference = Database(tmp_path / "reference.db")
    ensure_schema(reference)
    reference_id = new_job(reference, "himmelblau")
    run_job(reference, LocalArtifactStore(tmp_path / "reference"), reference_id)

    db = Database(tmp_path / "killed.db")
    ensure_schema(db)
    store = LocalArtifactStore(tmp_path / "killed")
    _, job_id, abandoned, ended, _ = second_ends_first(db, store)
    long_ago = utcnow() - timedelta(minutes=5)
    with db.session() as session:
        session.get(Job, job_id).enqueued_at = utcnow()  # a pool's job, for the sweep
        session.get(Ride, ended.id).heartbeat_at = long_ago
    with db.session() as session:
        found = lost_work(session, timedelta(seconds=60), timedelta(hours=1))
    assert ("ride", ended.id) not in {(m.kind, m.unit_id) for m in found.units}  # one is claimed
    with db.session() as session:
        session.get(Ride, abandoned.id).heartbeat_at = long_ago  # its worker died
    with db.session() as session:
        found = lost_work(session, timedelta(seconds=60), timedelta(hours=1))
        assert session.get(Ride, abandoned.id).state == "pending"
    assert ("ride", ended.id) in {(m.kind, m.unit_id) for m in found.units}
    with db.session() as session:
        session.get(Job, job_id).enqueued_at = None  # resumed in process
    run_job(db, store, job_id)
    assert rows(db, job_id) == rows(reference, reference_id)


def test_a_cancelled_job_records_what_its_steps_found_without_waiting(db, store):
    ctx, job_id, first, second, _ = second_ends_first(db, store)
    with db.session() as session:
        cancel_job(session, job_id)
    ctx.tree.record_computed()
    with db.session(readonly=True) as session:
        assert session.get(Ride, second.id).state == "done"
        assert session.get(Ride, second.id).to_node_id is not None
        assert session.get(Ride, first.id).state == "claimed"  # in flight: it finishes
