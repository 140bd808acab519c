"""The service's settings: one `Settings`, read from `RIDGERIDER_*` variables (and command-line
flags, which override them) where a process starts, then passed to what it builds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "RIDGERIDER_"


class SettingsError(ValueError):
    """A setting is out of its range: the message names the variable and the range."""


def job_channel(job_id: int) -> str:
    """The broker's pub/sub channel on which workers say that a job changed (event streams
    listen there instead of polling the database)."""
    return f"ridgerider:job:{job_id}"


def _seconds(default: float, help: str) -> Any:
    return Field(default, gt=0, le=10**7, description=f"{help} (seconds, > 0)")


def _count(default: int, maximum: int, help: str) -> Any:
    return Field(default, ge=1, le=maximum, description=f"{help} (an integer in [1, {maximum}])")


class Settings(BaseSettings):
    """Every setting of the service; each field is read from `RIDGERIDER_<FIELD>`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True, extra="forbid"
    )

    database_url: str = Field(
        "sqlite:///ridgerider.db",
        description="the database: an SQLAlchemy URL or an SQLite file's path",
    )
    artifacts: Path = Field(Path("ridgerider-artifacts"), description="the weights' folder")
    broker_url: str = Field(
        "redis://127.0.0.1:6379/0", description="the worker pool's Redis broker"
    )
    server: str | None = Field(None, description="a ridgerider server, for the command line")
    api_key: SecretStr | None = Field(None, description="the command line's key for `server`")
    progress_every: float = _seconds(
        5, "a running job's progress line on the command line, where stderr is no terminal"
    )

    task_time_limit: float = _seconds(3600, "a task is killed after this")
    stale_after: float = _seconds(
        60, "a claimed unit whose heartbeat is older is given back (beats every quarter of it)"
    )
    requeue_after: float = _seconds(
        120, "a pending unit sent longer ago is sent again when the broker's queues are empty"
    )
    sweep_every: float = _seconds(10, "how often each worker looks for lost work")
    gpu_queue: bool = Field(False, description="send expansions and rides to the `gpu` queue")
    max_parameters: int = _count(
        100_000_000, 10**12, "a job whose problem has more parameters fails at its start"
    )

    server_threads: int = _count(2, 256, "requests each server process works on at once")
    mlflow_tracking_uri: str | None = Field(
        None, description="the MLflow tracking server that POST /jobs/{id}/mlflow logs to"
    )
    max_active_jobs: int = _count(20, 100_000, "jobs of one key queued or running at once")
    submissions_per_minute: int = _count(60, 100_000, "jobs one key may submit a minute")
    streams_per_key: int = _count(8, 10_000, "event streams one key may hold open a process")
    streams: int = _count(256, 100_000, "event streams a server process holds open in all")
    stream_seconds: int = _count(3600, 86_400, "an event stream ends after this many seconds")
    exports_waiting: int = _count(4, 1_000, "exports or hand-offs queued on a server process")

    @property
    def visibility_timeout(self) -> float:
        """An unacknowledged message is redelivered after this: above the time limit, so a
        running task is never handed to a second worker by the broker."""
        return self.task_time_limit * 2

    def environment(self) -> dict[str, str]:
        """These settings as the variables that give them to a child process."""
        values = self.model_dump(exclude_none=True)
        if self.api_key is not None:
            values["api_key"] = self.api_key.get_secret_value()
        return {ENV_PREFIX + name.upper(): str(value) for name, value in values.items()}


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment, with the `overrides` that are not None (flags).

    Raises:
        SettingsError: a value is out of range; one line per bad variable, naming it.
    """
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        raise SettingsError("\n".join(_describe(e) for e in error.errors())) from None


def _describe(error: Any) -> str:
    name = str(error["loc"][0]) if error["loc"] else "?"
    field = Settings.model_fields.get(name)
    allowed = f": {field.description}" if field and field.description else ""
    return f"{ENV_PREFIX}{name.upper()} = {error.get('input')!r} is not allowed{allowed}"
