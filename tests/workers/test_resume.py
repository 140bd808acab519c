"""`ridgerider run` killed with SIGKILL in the middle of a job, then `ridgerider resume`: the
job ends with exactly the DAG, minima and HVP count of an uninterrupted run, and no unit of work
that had been recorded is done twice."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from sqlalchemy import func, select

from ridgerider.search import SearchSpec
from storage.artifacts import LocalArtifactStore
from storage.database import Database
from storage.jobs import create_job
from storage.models import Job, Node, Ride
from storage.schema import ensure_schema
from tests.api.test_cli import RIDGERIDER, ridgerider
from tests.conftest import REPOSITORY
from workers.local import run_job

PROBLEM = "styblinski-tang:dim=3"  # 25 critical points, 46 rides: a few seconds
KILL_AFTER_RIDES = 12


def dag(db: Database, job_id: int) -> tuple[set, set]:
    """The DAG by lineage fingerprints, independent of row ids."""
    with db.session(readonly=True) as session:
        nodes = session.scalars(select(Node).where(Node.job_id == job_id)).all()
        fingerprint = {n.id: n.fingerprint for n in nodes}
        rides = session.scalars(select(Ride).where(Ride.job_id == job_id)).all()
        return (
            {(n.fingerprint, n.kind, n.index, round(n.loss, 6), n.state) for n in nodes},
            {
                (
                    fingerprint[r.from_node_id],
                    r.eigen_index,
                    r.sign,
                    fingerprint.get(r.to_node_id),
                    r.state,
                )
                for r in rides
            },
        )


def test_a_killed_run_resumes_without_losing_or_repeating_work(tmp_path):
    reference_db = Database(tmp_path / "reference.db")
    ensure_schema(reference_db)
    with reference_db.session() as session:
        spec = SearchSpec(problem=PROBLEM, max_nodes=100)  # every critical point
        reference_id = create_job(session, spec.model_dump()).id
    reference = run_job(reference_db, LocalArtifactStore(tmp_path / "reference"), reference_id)

    folder = tmp_path / "killed"
    folder.mkdir()
    spec_file = folder / "spec.toml"
    spec_file.write_text("max_nodes = 100\n")
    process = subprocess.Popen(
        [str(RIDGERIDER), "run", "--problem", PROBLEM, "--spec", str(spec_file)],
        cwd=folder,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPOSITORY)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = Database(folder / "ridgerider.db")
    deadline = time.monotonic() + 120
    done = 0
    while done < KILL_AFTER_RIDES and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
        if (folder / "ridgerider.db").exists():
            try:
                with db.session(readonly=True) as session:
                    done = session.scalar(select(func.count()).where(Ride.state == "done"))
            except Exception:  # the schema may not be there yet
                done = 0
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    with db.session(readonly=True) as session:
        job = session.get(Job, 1)
        assert job.status == "running" and job.outstanding > 0, "killed in the middle"

    result = ridgerider("resume", "1", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert "distinct minima" in result.stdout

    with db.session(readonly=True) as session:
        job = session.get(Job, 1)
        attempts = [
            *session.scalars(select(Node.attempts).where(Node.work != "none")),
            *session.scalars(select(Ride.attempts).where(Ride.state != "skipped")),
        ]
    assert job.status == "finished"
    assert dag(db, 1) == dag(reference_db, reference_id)
    assert job.hvps == reference.hvps
    assert job.stats["solutions"] == reference.stats["solutions"] == 8
    assert attempts.count(2) <= 1 and set(attempts) <= {1, 2}  # only the unit in flight, redone
