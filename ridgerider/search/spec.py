"""What decides a search: the validated, JSON-serialisable `SearchSpec`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ridgerider.critical import CriticalPoint, SettleConfig
from ridgerider.problems.parameters import SEED_MAX
from ridgerider.ride import RideConfig

Frontier = Literal["dive", "breadth-first", "depth-first", "most-negative-first"]
Settle = Literal["auto", "saddle", "branch", "minimum"]
SettleTarget = Literal["saddle", "branch", "minimum"]
Leaf = Literal["minimum", "ride-end"]
SADDLE_SETTLE_MAX_DIM = 20
MAX_NODES = 100_000
PROBLEM_MAX_LENGTH = 200  # the width of the stored problem column


class SearchSpec(BaseModel):
    """Everything that decides a search, with defaults; one seed makes it reproducible."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    problem: str = Field(
        "digits-mlp",
        max_length=PROBLEM_MAX_LENGTH,
        description="registered name[:key=value,...] (no control characters)",
    )
    frontier: Frontier = Field(
        "dive",
        description="what to expand next: dive (follow each of the start's ridges down to a "
        "leaf first, then paths that deviate once, twice, ...), breadth-first, depth-first, or "
        "most-negative-first",
    )
    max_nodes: int = Field(24, ge=1, le=MAX_NODES, description="distinct points in the tree")
    max_depth: int = Field(
        4,
        ge=1,
        le=1_000,
        description="rides from the start to the deepest point; a ride that reaches it ends "
        "in a leaf",
    )
    max_solutions: int | None = Field(None, ge=1, description="stop after this many solutions")
    ridges_per_node: int = Field(8, ge=1, le=512, description="ridges ridden per branch point")
    ridge_policy: Literal["auto", "one-per-group", "every-direction"] = Field(
        "auto",
        description="ride one eigenvector per group of equal eigenvalues (symmetric copies), "
        "or every eigenvector; auto: one per group where the problem declares its symmetries",
    )
    max_hvps: int | None = Field(None, ge=1, description="total Hessian-vector product budget")
    max_seconds: float | None = Field(None, gt=0, description="wall-time budget")
    step_size: float = Field(0.05, gt=0, le=100, description="ride step length")
    max_steps: int = Field(1000, ge=1, le=1_000_000, description="steps per ride")
    curvature_tol: float = Field(1e-8, ge=0, le=1, description="a ride ends at curvature >= -tol")
    tracking_tol: float = Field(
        1e-10,
        gt=0,
        lt=1,
        description="tracking residual / ||H||; tight, so that rides do not depend on rounding",
    )
    settle: Settle = Field(
        "auto",
        description="where a ride ends: saddle (settle on the critical point beneath), branch "
        "(branch at the ride's end while negative curvature is left: Ridge Rider's Algorithm 1), "
        "or minimum (descend to a minimum at once: a tree one ride deep); auto: saddle for "
        f"problems of at most {SADDLE_SETTLE_MAX_DIM} parameters, branch otherwise",
    )
    leaf: Leaf = Field(
        "minimum",
        description="with settle = branch, a ride's end with no negative curvature left is "
        "polished to a minimum, or kept as the ride left it (ride-end, the paper's approximate RR)",
    )
    grad_tol: float = Field(1e-9, gt=0, lt=1, description="gradient norm of a critical point")
    merge_tol: float = Field(1e-3, gt=0, lt=1, description="relative distance of one point")
    merge_by_function: bool = Field(
        False,
        description="also merge points whose predicted probabilities on the evaluation split "
        "agree to within 1e-4 (classifiers only)",
    )
    seed: int = Field(0, ge=0, le=SEED_MAX)

    @field_validator("problem")
    @classmethod
    def _printable(cls, text: str) -> str:
        if any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise ValueError("must not contain control characters (NUL, newline, tab, ...)")
        return text

    def ride_config(self) -> RideConfig:
        return RideConfig(
            step_size=self.step_size,
            max_steps=self.max_steps,
            curvature_tol=self.curvature_tol,
            tracking_tol=self.tracking_tol,
        )

    def settle_target(self, start: CriticalPoint) -> SettleTarget:
        """The spec's settle with "auto" resolved at the start: settling on the saddle beneath
        holds every negative direction, affordable only in small problems whose index the probe
        sees whole; elsewhere the tree branches at the rides' ends."""
        if self.settle != "auto":
            return self.settle
        small = start.theta.numel() <= SADDLE_SETTLE_MAX_DIM
        holdable = start.index_is_exact and start.index <= SettleConfig.probe
        return "saddle" if small and holdable else "branch"

    def settle_config(self) -> SettleConfig:
        return SettleConfig(grad_tol=self.grad_tol)
