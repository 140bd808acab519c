"""What the HTTP API accepts and returns (separate from the ORM models)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ridgerider.problems.parameters import UnknownProblemError
from ridgerider.problems.registry import resolve
from ridgerider.search import SearchSpec
from ridgerider.search.spec import SMALL_DEFAULTS
from storage.models import HandoffState
from storage.queries import MAX_PAGE, SolutionRow
from storage.selection import Choice
from workers.mlflow_names import DEFAULT_EXPERIMENT, PRINTABLE_PATTERN, REGISTERED_MODEL_PATTERN

MAX_ID = 2**31 - 1  # ids are 32-bit integers in the database
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]{0,99}$"
SORT_PATTERN = r"^[-+]?[A-Za-z_][A-Za-z0-9_.]{0,99}$"
_OBJECTIVE = r"[A-Za-z_][A-Za-z0-9_.]{0,99}(:(max|min))?"
OBJECTIVES_PATTERN = rf"^{_OBJECTIVE}(,{_OBJECTIVE}){{0,9}}$"
JobId = Annotated[int, Path(ge=1, le=MAX_ID, description="a job id")]
SolutionId = Annotated[int, Path(ge=1, le=MAX_ID, description="a solution id")]
HandoffId = Annotated[int, Path(ge=1, le=MAX_ID, description="a hand-off id")]


class ProblemDetails(BaseModel):
    """An RFC 9457 error: `errors` name the fields at fault and, where known, what is allowed."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[dict[str, Any]] | None = None


def _problem(description: str) -> dict[str, Any]:
    schema = ProblemDetails.model_json_schema()
    return {"description": description, "content": {"application/problem+json": {"schema": schema}}}


ERRORS_503 = _problem("the broker is unreachable; the request may be retried")
MLFLOW_503 = _problem("this server hands off to no MLflow: no tracking URI, or MLflow missing")
ERRORS: dict[int | str, dict[str, Any]] = {
    400: _problem("the body is not JSON, or a page cursor this service did not make"),
    401: _problem("no API key, or not a valid one"),
    404: _problem("no such resource (or another key's)"),
    413: _problem("the request body is too large"),
    422: _problem("a field out of range, of the wrong type, or unknown"),
    429: _problem("over a per-key limit (jobs in flight, submissions a minute, streams)"),
}


class JobSubmission(SearchSpec):
    """A search spec as submitted over HTTP: a registered problem only (never an import path)
    and tighter limits on what one request may cost. Strict types: "5" and true are not
    numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    max_nodes: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description=SearchSpec.model_fields["max_nodes"].description,
    )
    max_depth: int | None = Field(
        None,
        ge=1,
        le=SMALL_DEFAULTS["max_depth"],
        description=SearchSpec.model_fields["max_depth"].description,
    )
    ridges_per_node: int | None = Field(
        None,
        ge=1,
        le=SMALL_DEFAULTS["ridges_per_node"],
        description=SearchSpec.model_fields["ridges_per_node"].description,
    )
    max_hvps: int | None = Field(None, ge=1, le=10**9, description="total HVP budget")
    max_seconds: float | None = Field(None, gt=0, le=86_400, description="wall-time budget")
    max_steps: int = Field(10_000, ge=1, le=100_000, description="steps per ride")

    @field_validator("problem")
    @classmethod
    def _registered(cls, text: str) -> str:
        try:
            resolve(text, allow_import=False)
        except (UnknownProblemError, ValueError) as error:
            raise ValueError(str(error)) from None
        return text


class Progress(BaseModel):
    nodes: int
    minima: int
    saddles: int
    branch_points: int = Field(0, description="rides' ends with negative curvature left")
    rides: int
    failed_rides: int
    failed_points: int = Field(0, description="points whose evaluation or expansion raised")
    skipped_rides: int
    solutions: int
    hvps: int
    outstanding: int


class JobOut(BaseModel):
    id: int
    problem: str
    status: str
    created_at: str
    finished_at: str | None
    error: str | None
    hvps: int
    seconds: float
    spec: dict[str, Any]
    progress: Progress | None = None
    stats: dict[str, Any] = {}


class JobPage(BaseModel):
    jobs: list[JobOut]
    next_cursor: int | None


@dataclass(frozen=True)
class SolutionDetail(SolutionRow):
    lineage: Annotated[
        list[dict[str, Any]],
        Field(
            description="the rides from the start to this solution: from, to, eigen index, sign "
            "(+-2: a climb retaken with short steps)"
        ),
    ]


class SolutionPage(BaseModel):
    solutions: list[SolutionRow]
    next_cursor: str | None


class ObjectiveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    direction: Literal["max", "min"] = "max"


class SelectRequest(BaseModel):
    """Either a Pareto front over objectives or a diverse top-k, among solutions passing
    `filter`."""

    model_config = ConfigDict(extra="forbid")

    pareto: list[ObjectiveIn] | None = Field(None, min_length=1, max_length=10)
    diverse: int | None = Field(None, ge=1, le=MAX_PAGE)
    filter: str | None = Field(None, max_length=2000)

    def choice(self) -> Choice:
        """The selection, with `pareto` as the command line writes it (`a:max,b:min`)."""
        pareto = self.pareto and ",".join(f"{o.name}:{o.direction}" for o in self.pareto)
        return Choice(pareto or None, self.diverse, self.filter)


class Selection(BaseModel):
    selection: str
    solutions: list[SolutionRow]


MAX_ENSEMBLE = 20


class EnsembleRequest(BaseModel):
    """Solutions of the job whose ensemble metrics to compute (models are evaluated)."""

    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(min_length=1, max_length=MAX_ENSEMBLE)


class Ensemble(BaseModel):
    set_metrics: dict[str, float]
    disagreement: list[list[float]] = Field(
        description="the fraction of evaluation examples each pair predicts differently (empty "
        "for a problem that is no classifier)"
    )


class HandoffRequest(SelectRequest):
    """What to hand to MLflow: every solution passing `filter`, or a Pareto front, or a diverse
    top-k among them; the experiment to log into and, optionally, the registered model whose
    versions the chosen models become. The tracking server is the server's setting."""

    experiment: str = Field(DEFAULT_EXPERIMENT, pattern=PRINTABLE_PATTERN)
    registered_model: str | None = Field(
        None, pattern=REGISTERED_MODEL_PATTERN, description="letters, digits, _ and -"
    )


class HandoffOut(BaseModel):
    """A hand-off and where it is: queued, running, finished (`result` says where the runs
    are) or failed (`error` says why)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    job_id: int
    state: HandoffState
    request: dict[str, Any]
    created_at: datetime
    finished_at: datetime | None
    error: str | None
    result: dict[str, Any] | None


class ParameterInfo(BaseModel):
    """One problem parameter: a value outside `allowed` is refused with 422 naming it."""

    default: Any
    kind: Literal["integer", "number", "choice"] | None = None
    allowed: str | None = None
    help: str = ""
    choices: list[str] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    nullable: bool = False


class ProblemInfo(BaseModel):
    name: str
    parameters: dict[str, ParameterInfo]
    doc: str


class Health(BaseModel):
    database: str
    broker: str
