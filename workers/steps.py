"""The units of tree work, each a claimed unit in, the engine's pure step, a record out.

The in-process runner (`workers.local`) and the Celery tasks call these same functions with ids;
tensors travel through the artifact store, never through a queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from sqlalchemy import select
from sqlalchemy.orm import Session
from torch import Tensor

from ridgerider.critical import CriticalPoint, classify
from ridgerider.metrics import minimum_metrics, pairwise_metrics, set_metrics
from ridgerider.problems.base import Problem
from ridgerider.problems.registry import load
from ridgerider.search import (
    SearchSpec,
    Spectrum,
    choose_ridges,
    find_copy,
    follow,
    make_ridge,
    needs_expansion,
    node_spectrum,
)
from storage.artifacts import ArtifactStore, get_tensors, put_tensors
from storage.database import Database
from storage.jobs import (
    ROOT_FINGERPRINT,
    Message,
    PointRecord,
    RideRecord,
    RideResult,
    UnitKind,
    Work,
    counts,
    elapsed_seconds,
    end_unit,
    fail_job,
    get_job,
    record_evaluation,
    record_expansion,
    record_finalisation,
    record_ride,
    start_job,
)
from storage.models import Job, Node, Ride, Solution

THETA_CACHE_SIZE = 4096


class StartError(ValueError):
    """The job cannot start: its problem has no start, or the start is no critical point."""


@dataclass
class JobContext:
    """What every step of one job needs: the database, the artifacts, the spec and the problem
    (built once per process), and a cache of critical points' parameters by hash."""

    db: Database
    store: ArtifactStore
    job_id: int
    spec: SearchSpec
    problem: Problem
    thetas: dict[str, Tensor] = field(default_factory=dict)

    @classmethod
    def load(
        cls, db: Database, store: ArtifactStore, job_id: int, *, allow_import: bool = True
    ) -> JobContext:
        with db.session(readonly=True) as session:
            spec = SearchSpec(**get_job(session, job_id).spec)
        return cls(db, store, job_id, spec, load(spec.problem, allow_import=allow_import))

    def theta(self, sha256: str) -> Tensor:
        if sha256 not in self.thetas:
            if len(self.thetas) >= THETA_CACHE_SIZE:
                self.thetas.pop(next(iter(self.thetas)))
            theta = get_tensors(self.store, sha256)["theta"]
            self.thetas[sha256] = theta.to(self.problem.dtype)
        return self.thetas[sha256]

    def point(self, node: Node) -> CriticalPoint:
        """The node as the engine's CriticalPoint."""
        return CriticalPoint(
            self.theta(node.theta_sha256),
            node.loss,
            node.grad_norm,
            node.kind,
            node.index,
            torch.tensor(node.eigenvalues, dtype=torch.float64),
            0,
            node.index_is_exact,
        )

    def save_point(self, point: CriticalPoint) -> PointRecord:
        sha256 = put_tensors(self.store, {"theta": point.theta})
        self.thetas[sha256] = point.theta
        return PointRecord(
            point.kind,
            point.index,
            point.index_is_exact,
            point.loss,
            point.grad_norm,
            point.eigenvalues.tolist(),
            sha256,
        )

    def work_of(self, point: PointRecord, depth: int) -> Work:
        """A saddle above the depth limit is expanded, a minimum evaluated, the rest kept."""
        if point.kind == "minimum":
            return "evaluate"
        return "expand" if needs_expansion(point.index, depth, self.spec) else "none"


def start(ctx: JobContext) -> None:
    """Classify the problem's start and make it the job's root node.

    Raises:
        StartError: the problem has no start or it is not a critical point (the job is failed).
    """
    problem = ctx.problem
    torch.manual_seed(ctx.spec.seed)
    error = None
    if problem.start is None:
        error = f"problem {problem.name!r} has no start point; give one"
    else:
        root = classify(problem.loss, problem.start, zero_modes=problem.zero_modes)
        if root.grad_norm > 1e-5 * max(1.0, abs(root.loss)):
            error = (
                f"the start of {problem.name!r} is not a critical point: gradient norm "
                f"{root.grad_norm:.3g}"
            )
    with ctx.db.session() as session:
        if error is not None:
            fail_job(session, ctx.job_id, error)
        else:
            record = ctx.save_point(root)
            start_job(session, ctx.job_id, record, ctx.work_of(record, 0), root.hvps)
    if error is not None:
        raise StartError(error)


def expand(ctx: JobContext, node_id: int, token: str) -> list[int] | None:
    """Eigenpairs of a claimed saddle, once; queues a ride per chosen ridge and sign. Returns the
    rides' ids (None if the claim was lost)."""
    with ctx.db.session(readonly=True) as session:
        node = session.get(Node, node_id)
    torch.manual_seed(ctx.spec.seed)
    spectrum = node_spectrum(ctx.problem, ctx.point(node), ctx.spec)
    chosen = choose_ridges(ctx.problem, spectrum, ctx.spec)
    sha256 = put_tensors(
        ctx.store,
        {
            "values": spectrum.values,
            "vectors": spectrum.vectors,
            "norm_estimate": torch.tensor([spectrum.norm_estimate], dtype=torch.float64),
        },
    )
    rides = [(index, sign, spectrum.values[index].item()) for index, sign in chosen]
    with ctx.db.session() as session:
        return record_expansion(session, node_id, token, sha256, rides, spectrum.hvps)


def ride(ctx: JobContext, ride_id: int, token: str) -> RideRecord | None:
    """Follow a claimed ride to its critical point and merge that into the DAG (None if the
    claim was lost)."""
    with ctx.db.session(readonly=True) as session:
        edge = session.get(Ride, ride_id)
        node = session.get(Node, edge.from_node_id)
        root = session.scalar(
            select(Node).where(Node.job_id == ctx.job_id, Node.fingerprint == ROOT_FINGERPRINT)
        )
    stored = get_tensors(ctx.store, node.spectrum_sha256)
    spectrum = Spectrum(
        stored["values"],
        stored["vectors"].to(ctx.problem.dtype),
        stored["norm_estimate"].item(),
        0,
    )
    track = ctx.spec.ride_config().track
    ridge = make_ridge(node.id, spectrum, edge.eigen_index, edge.sign, track)
    torch.manual_seed(ctx.spec.seed)
    settle_config = ctx.spec.settle_config(ctx.point(root))
    outcome = follow(ctx.problem, ctx.theta(node.theta_sha256), ridge, ctx.spec, settle_config)
    stats = {"steps": outcome.end.steps, "hvps": outcome.hvps, "end_reason": outcome.end.reason}
    if outcome.point is None:
        result = RideResult(**stats, failure=outcome.failure)
    else:
        result = RideResult(**stats, point=ctx.save_point(outcome.point))

    def copy_of(known: list[tuple[int, str]]) -> int | None:
        candidates = ((node_id, ctx.theta(sha256)) for node_id, sha256 in known)
        return find_copy(ctx.problem, outcome.point.theta, candidates, ctx.spec)

    with ctx.db.session() as session:
        return record_ride(session, ride_id, token, result, copy_of, ctx.work_of)


def evaluate(ctx: JobContext, node_id: int, token: str) -> int | None:
    """Behavioural metrics of a claimed minimum; keeps it as a solution (its id, or None if the
    claim was lost). Predictions on the evaluation split are stored for disagreement queries."""
    with ctx.db.session(readonly=True) as session:
        node = session.get(Node, node_id)
    point = ctx.point(node)
    torch.manual_seed(ctx.spec.seed)
    metrics = minimum_metrics(ctx.problem, point)
    with ctx.db.session() as session:
        return record_evaluation(
            session, node_id, token, node.theta_sha256, metrics, predictions(ctx.problem, point)
        )


def predictions(problem: Problem, point: CriticalPoint) -> bytes | None:
    """Predicted classes on the test split (else train) as int16 bytes; None for non-classifiers."""
    if problem.predict is None or not problem.splits:
        return None
    inputs, _ = problem.splits.get("test", problem.splits.get("train"))
    with torch.no_grad():
        labels = problem.predict(point.theta, inputs).argmax(1)
    return labels.cpu().numpy().astype(np.int16).tobytes()


def do_unit(ctx: JobContext, kind: UnitKind, unit_id: int, work: str, token: str) -> list[Message]:
    """One claimed unit: skipped if a budget ran out (evaluations never are), else done; an
    exception fails that unit only, and the job goes on. Returns the units it created (rides of
    an expanded saddle, the work of a new node), for a worker pool to send out."""
    if work != "evaluate" and (reason := budget_exceeded(ctx)):
        with ctx.db.session() as session:
            end_unit(session, kind, unit_id, token, "skipped", reason)
        return []
    try:
        if kind == "ride":
            record = ride(ctx, unit_id, token)
            if record is not None and record.new and record.work != "none":
                return [Message(ctx.job_id, "node", record.node_id, record.work)]
        elif work == "expand":
            rides = expand(ctx, unit_id, token) or []
            return [Message(ctx.job_id, "ride", ride_id, "ride") for ride_id in rides]
        else:
            evaluate(ctx, unit_id, token)
    except (ArithmeticError, ValueError, RuntimeError) as error:
        with ctx.db.session() as session:
            reason = f"{type(error).__name__}: {error}"
            end_unit(session, kind, unit_id, token, "failed", reason)
    return []


def root_message(session: Session, job_id: int) -> Message | None:
    """The root's unit, if it has one pending (a saddle to expand or a minimum to evaluate)."""
    root = session.scalar(
        select(Node).where(Node.job_id == job_id, Node.fingerprint == ROOT_FINGERPRINT)
    )
    if root is None or root.state != "pending":
        return None
    return Message(job_id, "node", root.id, root.work)


def budget_exceeded(ctx: JobContext) -> str | None:
    """The budget (nodes, HVPs, seconds) the job has used up, or None."""
    spec = ctx.spec
    with ctx.db.session(readonly=True) as session:
        job = session.get(Job, ctx.job_id)
        progress = counts(session, ctx.job_id)
    if progress["nodes"] >= spec.max_nodes:
        return "node budget"
    if spec.max_hvps is not None and job.hvps >= spec.max_hvps:
        return "HVP budget"
    if spec.max_seconds is not None and elapsed_seconds(job) > spec.max_seconds:
        return "time budget"
    return None


def finalise(ctx: JobContext) -> None:
    """Pairwise and set-level metrics of the job's solutions, and its statistics; the job ends
    `finished` (or `cancelled`)."""
    with ctx.db.session(readonly=True) as session:
        job = session.get(Job, ctx.job_id)
        solutions = session.execute(
            select(Solution.id, Node)
            .join(Node, Node.id == Solution.node_id)
            .where(Solution.job_id == ctx.job_id)
            .order_by(Solution.id)
        ).all()
        progress = counts(session, ctx.job_id)
    ids = [solution_id for solution_id, _ in solutions]
    points = [ctx.point(node) for _, node in solutions]
    pairs = pairwise_metrics(ctx.problem, points)
    stats = {
        **progress,
        "set_metrics": set_metrics(ctx.problem, points, pairs),
        "stopped": job.stopped or "frontier exhausted",
        "seconds": job.run_seconds,
    }
    by_id = {(ids[i], ids[j]): values for (i, j), values in pairs.items()}
    with ctx.db.session() as session:
        record_finalisation(session, ctx.job_id, by_id, stats)
