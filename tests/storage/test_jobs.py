"""Work units in the database on both engines: compare-and-set claims, lost claims, counters
that finish a job exactly once, and merges that race from real threads."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy import func, select, text

import storage.units
from ridgerider.critical import kinds_alike
from storage.database import Database
from storage.jobs import adopt_unowned, cancel_job, claim_finalisation, create_job, get_job
from storage.models import Job, Node, Ride, utcnow
from storage.records import (
    MergeWindow,
    PointRecord,
    RideResult,
    record_evaluation,
    record_expansion,
    record_ride,
    start_job,
)
from storage.sweep import MAX_ATTEMPTS, MAX_SENDS, lost_work, reclaim
from storage.units import claim, end_unit, heartbeat, mark_enqueued, new_token, pending_units

SADDLE = PointRecord("saddle", 1, True, 1.0, 0.0, [-1.0, 2.0], "a" * 64)
EVERYWHERE = MergeWindow((-1e300, 1e300))  # every node is a candidate


def minimum(sha: str) -> PointRecord:
    return PointRecord("minimum", 0, True, 0.5, 0.0, [1.0, 2.0], sha)


def job_with_rides(db, count: int, rides: list | None = None) -> tuple[int, list[int]]:
    """A running job whose root saddle was expanded into `count` pending rides (eigen index i,
    + sign), or into `rides` (eigen index, sign, eigenvalue) where given."""
    with db.session() as session:
        job_id = create_job(session, {"problem": "test"}).id
        root = start_job(session, job_id, SADDLE, "expand", 10).id
    token = new_token()
    with db.session() as session:
        assert claim(session, "node", root, token)
    rides = rides or [(i, 1, -1.0) for i in range(count)]
    with db.session() as session:
        ride_ids = record_expansion(session, root, token, "b" * 64, rides, 100)
    return job_id, ride_ids


def same_sha(sha: str, delay: float = 0.0):
    """A find_copy that matches by artifact hash, taking `delay` seconds as alignment would."""

    def find(known: list[tuple[int, str]]) -> int | None:
        time.sleep(delay)
        return next((node_id for node_id, other in known if other == sha), None)

    return find


def evaluate_minima(point: PointRecord, depth: int) -> str:
    return "evaluate" if point.kind == "minimum" else "none"


def test_a_claim_is_won_once_and_a_lost_claim_records_nothing(db):
    job_id, (ride_id,) = job_with_rides(db, 1)
    first, second = new_token(), new_token()
    with db.session() as session:
        assert claim(session, "ride", ride_id, first)
    with db.session() as session:
        assert not claim(session, "ride", ride_id, second)
    result = RideResult(5, 20, "curvature-nonnegative", point=minimum("c" * 64))
    with db.session() as session:
        assert (
            record_ride(
                session, ride_id, second, result, EVERYWHERE, same_sha("c" * 64), evaluate_minima
            )
            is None
        )
    with db.session() as session:
        record = record_ride(
            session, ride_id, first, result, EVERYWHERE, same_sha("c" * 64), evaluate_minima
        )
    assert record.new and record.work == "evaluate"
    with db.session() as session:  # a redelivered message finds the ride done
        assert not claim(session, "ride", ride_id, second)
        assert (
            record_ride(
                session, ride_id, first, result, EVERYWHERE, same_sha("c" * 64), evaluate_minima
            )
            is None
        )
        job = session.get(Job, job_id)
        assert job.outstanding == 1  # the minimum's evaluation
        assert job.hvps == 10 + 100 + 20


def test_a_node_is_held_until_both_rides_of_its_ridge_end_and_keeps_the_plus_rides_point(db):
    """The - ride along a ridge finishes first and creates the node; the + ride reaches a copy of
    it: the node takes the + ride's point and path, and only then becomes claimable (whichever
    of the two finished first, the tree is the same)."""
    ridge_and_another = [(0, 1, -1.0), (0, -1, -1.0), (1, 1, -0.5)]
    job_id, (plus, minus, other) = job_with_rides(db, 3, ridge_and_another)
    tokens = {ride_id: new_token() for ride_id in (plus, minus)}
    with db.session() as session:
        for ride_id, token in tokens.items():
            assert claim(session, "ride", ride_id, token)
    late = RideResult(4, 8, "curvature-nonnegative", point=minimum("e" * 64))
    with db.session() as session:
        record = record_ride(
            session, minus, tokens[minus], late, EVERYWHERE, same_sha("-"), evaluate_minima
        )
        assert record.new and record.released == []
        pending = [(u.kind, u.id) for u in pending_units(session, job_id)]
        assert pending == [("ride", other)]  # the node is held: the + ride is still riding
        node = session.get(Node, record.node_id)
        assert (node.path, node.theta_sha256) == ("0-", "e" * 64)
    early = RideResult(4, 8, "curvature-nonnegative", point=minimum("f" * 64))
    with db.session() as session:
        again = record_ride(
            session, plus, tokens[plus], early, EVERYWHERE, same_sha("e" * 64), evaluate_minima
        )
        assert (again.node_id, again.new, again.released) == (node.id, False, [node.id])
        node = session.get(Node, node.id)
        assert (node.path, node.theta_sha256) == ("0+", "f" * 64)
        pending = {(u.kind, u.id) for u in pending_units(session, job_id)}
        assert pending == {("node", node.id), ("ride", other)}


def test_a_reclaimed_unit_goes_back_to_pending_and_its_old_claim_is_dead(db):
    job_id, (ride_id,) = job_with_rides(db, 1)
    old = new_token()
    with db.session() as session:
        assert claim(session, "ride", ride_id, old)
    with db.session() as session:
        assert reclaim(session, job_id) == 1
        assert [u.id for u in pending_units(session, job_id)] == [ride_id]
    new = new_token()
    with db.session() as session:
        assert claim(session, "ride", ride_id, new)
    failed = RideResult(3, 9, "non-finite-loss", failure="NaN")
    with db.session() as session:
        assert (
            record_ride(session, ride_id, old, failed, EVERYWHERE, same_sha(""), evaluate_minima)
            is None
        )
        assert (
            record_ride(session, ride_id, new, failed, EVERYWHERE, same_sha(""), evaluate_minima)
            is not None
        )
        ride = session.get(Ride, ride_id)
        assert (ride.state, ride.failure, ride.attempts) == ("failed", "NaN", 2)


def test_the_job_is_finalised_exactly_once_when_its_counters_reach_zero(db):
    job_id, ride_ids = job_with_rides(db, 3)
    for ride_id, end in zip(ride_ids, ("done", "failed", "skipped"), strict=True):
        token = new_token()
        with db.session() as session:
            assert claim(session, "ride", ride_id, token)
            assert not claim_finalisation(session, job_id)
        with db.session() as session:
            if end == "done":
                result = RideResult(1, 1, "curvature-nonnegative", point=minimum("d" * 64))
                record = record_ride(
                    session, ride_id, token, result, EVERYWHERE, same_sha("-"), evaluate_minima
                )
                evaluate = record.node_id
            else:  # rides along other ridges: nothing of theirs to release
                assert end_unit(session, "ride", ride_id, token, end, "node budget") == []
    token = new_token()
    with db.session() as session:
        assert claim(session, "node", evaluate, token)
    with db.session() as session:
        assert record_evaluation(session, evaluate, token, "d" * 64, {"loss": 0.5}, None) == []
        assert get_job(session, job_id).stopped == "node budget"
    winners = []

    def finalise() -> None:
        with db.session() as session:
            winners.append(claim_finalisation(session, job_id))

    threads = [threading.Thread(target=finalise) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(winners) == [False] * 5 + [True]
    with db.session() as session:
        assert get_job(session, job_id).status == "finalising"


def test_racing_workers_that_reach_one_point_make_one_node_and_an_edge_each(db):
    """Eight threads record rides to the same critical point at once; merging takes a while
    (as alignment does), so without the job lock each would find no node and add its own."""
    workers = 8
    job_id, ride_ids = job_with_rides(db, workers)
    tokens = [new_token() for _ in ride_ids]
    for ride_id, token in zip(ride_ids, tokens, strict=True):
        with db.session() as session:
            assert claim(session, "ride", ride_id, token)
    point = minimum("e" * 64)
    start = threading.Barrier(workers)
    records, errors = [], []

    def record(ride_id: int, token: str) -> None:
        start.wait()
        try:
            with db.session() as session:
                result = RideResult(2, 7, "curvature-nonnegative", point=point)
                records.append(
                    record_ride(
                        session,
                        ride_id,
                        token,
                        result,
                        EVERYWHERE,
                        same_sha(point.theta_sha256, 0.05),
                        evaluate_minima,
                    )
                )
        except Exception as error:  # reported by the assert below
            errors.append(error)

    threads = [
        threading.Thread(target=record, args=pair) for pair in zip(ride_ids, tokens, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert sum(r.new for r in records) == 1
    with db.session() as session:
        nodes = session.scalar(
            select(func.count()).where(
                Node.job_id == job_id, Node.theta_sha256 == point.theta_sha256
            )
        )
        targets = session.scalars(select(Ride.to_node_id).where(Ride.job_id == job_id)).all()
        job = session.get(Job, job_id)
        assert nodes == 1
        assert len(targets) == workers and len(set(targets)) == 1
        assert job.outstanding == 1  # one evaluation, not eight


def test_the_sweep_gives_back_stale_units_and_gives_up_on_poison_ones(db):
    job_id, (poison, lost) = job_with_rides(db, 2)
    with db.session() as session:
        mark_enqueued(session, "job", job_id, "start-task")  # a pool job
        for ride_id in (poison, lost):
            assert claim(session, "ride", ride_id, new_token())
        session.get(Ride, poison).attempts = MAX_ATTEMPTS
        for ride_id in (poison, lost):
            session.get(Ride, ride_id).heartbeat_at = utcnow() - timedelta(minutes=5)
    with db.session() as session:
        found = lost_work(session, timedelta(seconds=60), timedelta(seconds=60))
    assert [(m.kind, m.unit_id) for m in found.units] == [("ride", lost)]
    with db.session(readonly=True) as session:
        assert session.get(Ride, poison).state == "failed"
        assert "gave up after 3 attempts" in session.get(Ride, poison).failure
        assert session.get(Ride, lost).state == "pending"
        assert session.get(Job, job_id).outstanding == 1


def test_a_stale_unit_of_a_cancelled_job_is_skipped_and_the_job_finalised(db):
    job_id, (ride_id,) = job_with_rides(db, 1)
    with db.session() as session:
        mark_enqueued(session, "job", job_id, "start-task")
        assert claim(session, "ride", ride_id, new_token())
        session.get(Ride, ride_id).heartbeat_at = utcnow() - timedelta(minutes=5)
    with db.session() as session:
        assert cancel_job(session, job_id) == []  # nothing pending: the ride is in flight
    with db.session() as session:
        found = lost_work(session, timedelta(seconds=60), timedelta(seconds=60))
    assert found.jobs_to_finalise == [job_id]
    with db.session(readonly=True) as session:
        assert session.get(Ride, ride_id).state == "skipped"
        assert session.get(Job, job_id).status == "finalising"


def test_the_sweep_gives_up_on_messages_sent_max_sends_times(db):
    """A unit, a start and a finalisation whose messages were sent MAX_SENDS times and never
    acted on are failed with the reason, not sent again; one sent fewer times is resent."""
    job_id, (given_up, resent) = job_with_rides(db, 2)
    long_ago = utcnow() - timedelta(minutes=5)
    with db.session() as session:
        mark_enqueued(session, "job", job_id, "start-task")
        for ride_id, sends in ((given_up, MAX_SENDS), (resent, MAX_SENDS - 1)):
            session.get(Ride, ride_id).sends = sends
            session.get(Ride, ride_id).enqueued_at = long_ago
        never_started = create_job(session, {"problem": "test"})
        never_finalised = create_job(session, {"problem": "test"})
        for job, status in ((never_started, "queued"), (never_finalised, "finalising")):
            job.status, job.sends, job.enqueued_at = status, MAX_SENDS, long_ago
    with db.session() as session:
        found = lost_work(session, timedelta(seconds=60), timedelta(seconds=60))
    assert [(m.kind, m.unit_id) for m in found.units if m.job_id == job_id] == [("ride", resent)]
    ours = {never_started.id, never_finalised.id}
    assert not ours & {*found.jobs_to_start, *found.jobs_to_finalise}
    with db.session(readonly=True) as session:
        ride = session.get(Ride, given_up)
        assert ride.state == "failed" and f"gave up after {MAX_SENDS} messages" in ride.failure
        assert session.get(Job, job_id).outstanding == 1
        for job_id_, step in ((never_started.id, "start"), (never_finalised.id, "finalisation")):
            job = session.get(Job, job_id_)
            assert job.status == "failed" and f"could do its {step}" in job.error


def test_sending_counts_the_messages(db):
    job_id, (ride_id,) = job_with_rides(db, 1)
    with db.session() as session:
        for _ in range(3):
            mark_enqueued(session, "ride", ride_id, "task")
        mark_enqueued(session, "job", job_id, "start-task")
    with db.session(readonly=True) as session:
        assert session.get(Ride, ride_id).sends == 3 and session.get(Job, job_id).sends == 1


def test_a_job_cancelled_while_it_starts_stays_cancelled(db):
    with db.session() as session:
        job_id = create_job(session, {"problem": "test"}).id
        mark_enqueued(session, "job", job_id, "start-task")
    with db.session() as session:
        cancel_job(session, job_id)  # the start task is loading the problem meanwhile
    with db.session() as session:
        root = start_job(session, job_id, SADDLE, "expand", 10)
    with db.session(readonly=True) as session:
        job = session.get(Job, job_id)
        assert job.status == "cancelled" and job.outstanding == 0
        assert session.get(Node, root.id).state == "skipped"
    with db.session() as session:
        found = lost_work(session, timedelta(seconds=60), timedelta(seconds=0))
    assert job_id not in {m.job_id for m in found.units} | {*found.jobs_to_finalise}


def test_the_sweep_finalises_a_running_job_with_nothing_outstanding(db):
    """Its worker died after the last record, before claiming the finalisation."""
    job_id, (ride_id,) = job_with_rides(db, 1)
    with db.session() as session:
        mark_enqueued(session, "job", job_id, "start-task")
        end_unit(session, "ride", ride_id, None, "failed", "a NaN loss")
    with db.session(readonly=True) as session:
        job = session.get(Job, job_id)
        assert (job.status, job.outstanding) == ("running", 0)
    with db.session() as session:
        found = lost_work(session, timedelta(seconds=60), timedelta(seconds=60))
    assert job_id in found.jobs_to_finalise
    with db.session(readonly=True) as session:
        assert session.get(Job, job_id).status == "finalising"


def test_a_queued_job_is_cancelled_at_once(db):
    with db.session() as session:
        job_id = create_job(session, {"problem": "test"}).id
    with db.session() as session:
        assert cancel_job(session, job_id) == []
    with db.session(readonly=True) as session:
        job = session.get(Job, job_id)
        assert job.status == "cancelled" and job.finished_at is not None


def test_only_the_nodes_in_the_merge_window_are_compared(db):
    job_id, ride_ids = job_with_rides(db, 3)
    losses = (0.1, 0.5, 0.9)
    seen: list[list[int]] = []

    def find(known: list[tuple[int, str]]) -> int | None:
        seen.append([node_id for node_id, _ in known])
        return None

    for ride_id, loss in zip(ride_ids, losses, strict=True):
        token = new_token()
        point = PointRecord("minimum", 0, True, loss, 0.0, [1.0], f"{ride_id:064d}")
        with db.session() as session:
            assert claim(session, "ride", ride_id, token)
        with db.session() as session:
            window = MergeWindow((loss - 0.45, loss + 0.05))
            record_ride(
                session,
                ride_id,
                token,
                RideResult(1, 1, "x", point=point),
                window,
                find,
                evaluate_minima,
            )
    with db.session(readonly=True) as session:
        nodes = dict(session.execute(select(Node.loss, Node.id).where(Node.job_id == job_id)).all())
    # the root's loss is 1.0: outside every window; each new node sees the one before it only
    assert seen == [[], [nodes[0.1]], [nodes[0.5]]]


def test_only_the_nodes_of_a_like_kind_are_compared(db):
    """A minimum is compared with the points without negative curvature only, a saddle with
    those with it (`critical.kinds_alike`), however close their losses."""
    _, ride_ids = job_with_rides(db, 2)
    seen: list[list[str]] = []

    def find(known: list[tuple[int, str]]) -> int | None:
        with db.session(readonly=True) as session:
            seen.append([session.get(Node, node_id).kind for node_id, _ in known])
        return None

    for ride_id, kind in zip(ride_ids, ("minimum", "saddle"), strict=True):
        token = new_token()
        point = PointRecord(kind, int(kind == "saddle"), True, 0.5, 0.0, [1.0], f"{ride_id:064d}")
        with db.session() as session:
            assert claim(session, "ride", ride_id, token)
        with db.session() as session:
            window = MergeWindow((-1e300, 1e300), None, kinds_alike(kind))
            result = RideResult(1, 1, "x", point=point)
            record_ride(session, ride_id, token, result, window, find, evaluate_minima)
    # the root is a saddle: the minimum sees no node, the saddle the root alone
    assert seen == [[], ["saddle"]]


def test_a_worker_whose_clock_is_behind_keeps_its_live_units_on_postgresql(
    postgres_url, monkeypatch
):
    """Claims and heartbeats carry the database's clock: a worker whose own clock is an hour
    behind does not make the unit it works on look stale to the sweep."""
    db = Database(postgres_url)
    monkeypatch.setattr(storage.units, "utcnow", lambda: utcnow() - timedelta(hours=1))
    job_id, (ride,) = job_with_rides(db, 1)
    token = new_token()
    with db.session() as session:
        mark_enqueued(session, "job", job_id, "start-task")  # a pool job
        assert claim(session, "ride", ride, token)
    with db.session() as session:
        assert heartbeat(session, "ride", ride, token)
    with db.session() as session:
        found = lost_work(session, timedelta(seconds=60), timedelta(seconds=60))
    with db.session(readonly=True) as session:
        assert session.get(Ride, ride).state == "claimed"
    assert all(message.job_id != job_id for message in found.units)
    db.dispose()


def test_a_claim_that_commits_while_a_cancel_waits_on_its_row_stays_outstanding(postgres_url):
    """On PostgreSQL a cancel that meets a ride locked by a claim waits, then leaves it to the
    claim: the job still counts that ride, so it is not finalised before the ride's worker
    records it (the pool once finalised a job with a ride in flight, one ride short)."""
    db = Database(postgres_url)
    job_id, (claimed, skipped) = job_with_rides(db, 2)
    with db.session() as session:
        mark_enqueued(session, "ride", claimed, "claimed-task")
        mark_enqueued(session, "ride", skipped, "skipped-task")
    revoked = []
    with db.session() as session:
        assert claim(session, "ride", claimed, new_token())
        cancelling = threading.Thread(
            target=lambda: revoked.extend(_cancel(db, job_id)), daemon=True
        )
        cancelling.start()
        _wait_for_a_lock_wait(db)  # the cancel waits on the claimed ride's row, the one lock held
    cancelling.join(timeout=30)
    assert revoked == ["skipped-task"]
    with db.session(readonly=True) as session:
        job = session.get(Job, job_id)
        assert (job.outstanding, job.cancel_requested) == (1, True)
        assert session.get(Ride, claimed).state == "claimed"
        assert session.get(Ride, skipped).state == "skipped"
        assert not claim_finalisation(session, job_id)
    db.dispose()


def _cancel(db: Database, job_id: int) -> list[str]:
    with db.session() as session:
        return cancel_job(session, job_id)


def _wait_for_a_lock_wait(db: Database, timeout: float = 30.0) -> None:
    """Until a session on this database waits for a lock (PostgreSQL's pg_stat_activity)."""
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session(readonly=True) as session:
            if session.scalar(waiting):
                return
        time.sleep(0.05)
    raise AssertionError(f"no transaction waited for a lock within {timeout} s")


def test_unowned_jobs_are_adopted_and_owned_ones_kept(db):
    with db.session() as session:
        unowned = create_job(session, {"problem": "himmelblau"}).id
        owned = create_job(session, {"problem": "himmelblau"}, owner="alice").id
    with db.session() as session:
        unowned_before = session.scalar(
            select(func.count()).select_from(Job).where(Job.owner.is_(None))
        )
        assert adopt_unowned(session, "local") == unowned_before >= 1
    with db.session(readonly=True) as session:
        assert get_job(session, unowned).owner == "local"
        assert get_job(session, owned).owner == "alice"
