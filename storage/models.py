"""The tables: jobs, nodes (critical points), rides (edges), solutions, metrics, API keys,
service secrets, hand-offs to MLflow.

Work units carry a state machine (`pending` -> `claimed` -> `computed` -> `done` | `failed` |
`skipped`; a climb the node budget's share cannot hold starts `waiting`, then is granted,
`pending`, or `skipped`) and a claim token, so that claiming is a compare-and-set UPDATE and a
redelivered unit is done once. A `computed` unit's step is done and its `outcome` kept until
its turn to be recorded (`storage.turns`).
A job's `outstanding` counter is the number of its units not yet finished; the transaction that
brings it to zero is the one that finalises the job.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import false as sa_false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class JobStatus(StrEnum):
    """Where a job is: queued -> running -> finalising -> finished; or failed, or cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    FINALISING = "finalising"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


JOB_ENDED = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELLED)
JOB_IN_FLIGHT = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.FINALISING)


class UnitState(StrEnum):
    """Where a unit of work is: pending -> claimed -> computed -> done, failed or skipped; a
    climb left waiting for the node budget's unused points, then pending (granted) or
    skipped."""

    WAITING = "waiting"
    PENDING = "pending"
    CLAIMED = "claimed"
    COMPUTED = "computed"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


UNIT_ACTIVE = (UnitState.PENDING, UnitState.CLAIMED, UnitState.COMPUTED)


class HandoffState(StrEnum):
    """Where an MLflow hand-off is."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


SHA256_HEX = 64


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map: ClassVar = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Job(Base):
    """One search: its spec, who owns it, where it is, and the counters that end it."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    spec: Mapped[dict[str, Any]]
    problem: Mapped[str] = mapped_column(String(200))
    owner: Mapped[str | None] = mapped_column(String(100), index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    run_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    stopped: Mapped[str | None] = mapped_column(String(100))
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)
    outstanding: Mapped[int] = mapped_column(Integer, default=0)
    hvps: Mapped[int] = mapped_column(BigInteger, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    cancelled_at: Mapped[datetime | None]
    enqueued_at: Mapped[datetime | None]
    # Bumped by every change to what the job has stored (`lock_job`): its lock, and its version.
    merge_lock: Mapped[int] = mapped_column(BigInteger, default=0)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    # Messages sent to start or finalise it; the sweep gives up on a job after MAX_SENDS.
    sends: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Whether its problem may name a module to import: only jobs submitted from the CLI.
    allow_import: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())

    __table_args__ = (UniqueConstraint("owner", "idempotency_key"),)


class WorkUnit:
    """The columns of a unit of tree work (a node to expand or evaluate, a ride to ride): its
    state, the claim that a worker holds on it while it runs, and what its step found (JSON)
    while it waits for its turn to be recorded."""

    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claim_token: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    enqueued_at: Mapped[datetime | None]
    task_id: Mapped[str | None] = mapped_column(String(155))
    sends: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    outcome: Mapped[str | None] = mapped_column(Text)


class Node(WorkUnit, Base):
    """A point of a job's tree (a critical point, or a ride's end); its work unit expands it (a
    branch point) or evaluates it (a solution). `path` is its fingerprint, the rides from the
    start that reached it (`0+.8-`; the + ride's where both directions of a ridge did);
    `fingerprint` is a hash of that lineage, unique in the job. `loss` and `function_key` are
    the archive's indexes (see `ridgerider.search.archive`)."""

    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    fingerprint: Mapped[str] = mapped_column(String(SHA256_HEX))
    path: Mapped[str] = mapped_column(Text, server_default="")
    depth: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    index: Mapped[int] = mapped_column(Integer)
    index_is_exact: Mapped[bool] = mapped_column(Boolean)
    loss: Mapped[float] = mapped_column(Float)
    grad_norm: Mapped[float] = mapped_column(Float)
    eigenvalues: Mapped[list[float]] = mapped_column(JSON)
    norm_estimate: Mapped[float | None] = mapped_column(Float)
    function_key: Mapped[float | None] = mapped_column(Float)
    theta_sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    spectrum_sha256: Mapped[str | None] = mapped_column(String(SHA256_HEX))
    work: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("job_id", "fingerprint"),
        Index(None, "job_id", "state"),
        Index(None, "job_id", "loss"),
        Index(None, "job_id", "function_key"),
    )


class Ride(WorkUnit, Base):
    """An edge: the ride from a saddle along eigenvector `eigen_index` with `sign`; `quota`,
    the node budget's points granted to a climb that waited (`ridgerider.search.budget`)."""

    __tablename__ = "rides"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    from_node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    to_node_id: Mapped[int | None] = mapped_column(ForeignKey("nodes.id", ondelete="SET NULL"))
    eigen_index: Mapped[int] = mapped_column(Integer)
    sign: Mapped[int] = mapped_column(Integer)
    eigenvalue: Mapped[float] = mapped_column(Float)
    depth: Mapped[int] = mapped_column(Integer)
    steps: Mapped[int | None] = mapped_column(Integer)
    hvps: Mapped[int | None] = mapped_column(BigInteger)
    end_reason: Mapped[str | None] = mapped_column(String(32))
    failure: Mapped[str | None] = mapped_column(Text)
    quota: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        UniqueConstraint("from_node_id", "eigen_index", "sign"),
        Index(None, "job_id", "state"),
    )


class Solution(Base):
    """A distinct minimum kept for model selection: its weights, predictions on the evaluation
    split (int16 class labels, for disagreement without loading the model), and its metrics as
    one JSON object (a read copy of its `Metric` rows, written with them, never changed)."""

    __tablename__ = "solutions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), unique=True)
    weights_sha256: Mapped[str] = mapped_column(String(SHA256_HEX))
    predictions: Mapped[bytes | None] = mapped_column(LargeBinary)
    metrics_json: Mapped[str] = mapped_column(Text, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def metrics_json(metrics: dict[str, float]) -> str:
    """`Solution.metrics_json` for `metrics` (floats written exactly, keys sorted)."""
    return json.dumps({name: float(value) for name, value in metrics.items()}, sort_keys=True)


class Metric(Base):
    """One metric of one solution (a tall table, so that filters and sorts are SQL)."""

    __tablename__ = "metrics"

    solution_id: Mapped[int] = mapped_column(
        ForeignKey("solutions.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    value: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index(None, "job_id", "name", "value", "solution_id"),)


class PairMetric(Base):
    """One metric of a pair of solutions of a job (a < b)."""

    __tablename__ = "pair_metrics"

    a_id: Mapped[int] = mapped_column(
        ForeignKey("solutions.id", ondelete="CASCADE"), primary_key=True
    )
    b_id: Mapped[int] = mapped_column(
        ForeignKey("solutions.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    value: Mapped[float] = mapped_column(Float)


class ServiceSecret(Base):
    """A random secret the service keeps in its database, so that every server process signs
    (cursors) with the same key."""

    __tablename__ = "service_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


class ApiKey(Base):
    """An API key, stored as its sha256 only; `owner` is what its jobs are filed under."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    key_sha256: Mapped[str] = mapped_column(String(SHA256_HEX), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class Handoff(Base):
    """A hand-off of a job's chosen solutions to MLflow, asked for over HTTP and done in the
    background: what was asked (`request`: the selection, experiment and registered model),
    where it is, and where it put the runs (`result`)."""

    __tablename__ = "handoffs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    request: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16), default=HandoffState.QUEUED)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
