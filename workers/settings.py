"""The worker pool's settings, from the environment (one place, so that the Celery app, the
workers and the command line agree)."""

from __future__ import annotations

import os
from dataclasses import dataclass

BROKER_URL_ENV = "RIDGERIDER_BROKER_URL"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"


def job_channel(job_id: int) -> str:
    """The broker's pub/sub channel on which workers say that a job changed (event streams
    listen there instead of polling the database)."""
    return f"ridgerider:job:{job_id}"


def _seconds(name: str, default: float) -> float:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {text!r}") from None
    if not value > 0:
        raise ValueError(f"{name} must be > 0 seconds, got {value}")
    return value


def env_integer(name: str, default: int, maximum: int) -> int:
    """The integer environment variable `name` (`default` if unset), in [1, `maximum`].

    Raises:
        ValueError: it is not an integer in that range (named).
    """
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer in [1, {maximum}], got {text!r}") from None
    if not 1 <= value <= maximum:
        raise ValueError(f"{name} must be an integer in [1, {maximum}], got {value}")
    return value


@dataclass(frozen=True)
class PoolSettings:
    """Attributes:
    broker_url: the Redis broker (`RIDGERIDER_BROKER_URL`).
    time_limit: a task is killed after this many seconds (`RIDGERIDER_TASK_TIME_LIMIT`).
    visibility_timeout: an unacknowledged message is redelivered after this; above the time
        limit, so a running task is never handed to a second worker by the broker.
    stale_after: a claimed unit whose heartbeat is older is given back
        (`RIDGERIDER_STALE_AFTER`); heartbeats come every quarter of it.
    requeue_after: a pending unit whose message went out longer ago is sent again when the
        broker's queues are empty (`RIDGERIDER_REQUEUE_AFTER`): its message was lost.
    sweep_every: how often each worker looks for such work (`RIDGERIDER_SWEEP_EVERY`).
    gpu_queue: send expansions and rides to the `gpu` queue (`RIDGERIDER_GPU_QUEUE=1`).
    max_parameters: a job whose problem has more parameters fails at its start
        (`RIDGERIDER_MAX_PARAMETERS`, 100,000,000: an admin's bound on a job's memory).
    """

    broker_url: str
    time_limit: float
    visibility_timeout: float
    stale_after: float
    requeue_after: float
    sweep_every: float
    gpu_queue: bool
    max_parameters: int

    @classmethod
    def from_env(cls, broker_url: str | None = None) -> PoolSettings:
        time_limit = _seconds("RIDGERIDER_TASK_TIME_LIMIT", 3600)
        return cls(
            broker_url=broker_url or os.environ.get(BROKER_URL_ENV) or DEFAULT_BROKER_URL,
            time_limit=time_limit,
            visibility_timeout=time_limit * 2,
            stale_after=_seconds("RIDGERIDER_STALE_AFTER", 60),
            requeue_after=_seconds("RIDGERIDER_REQUEUE_AFTER", 120),
            sweep_every=_seconds("RIDGERIDER_SWEEP_EVERY", 10),
            gpu_queue=os.environ.get("RIDGERIDER_GPU_QUEUE", "") not in ("", "0"),
            max_parameters=env_integer("RIDGERIDER_MAX_PARAMETERS", 100_000_000, 10**12),
        )
