"""What decides a search: the validated, JSON-serialisable `SearchSpec`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ridgerider.critical import CriticalPoint, SettleConfig
from ridgerider.problems.base import Problem
from ridgerider.problems.parameters import SEED_MAX
from ridgerider.ride import RideConfig

Frontier = Literal["dive", "breadth-first", "depth-first", "most-negative-first"]
Settle = Literal["auto", "saddle", "branch", "minimum"]
SettleTarget = Literal["saddle", "branch", "minimum"]
Leaf = Literal["minimum", "ride-end"]
SADDLE_SETTLE_MAX_DIM = 20
MAX_NODES = 100_000
# Problems of at most this many parameters are small: their eigenpairs and rides are exact
# (one block of products, `linalg.blocks.WHOLE_SPACE_SIZE`), their minima polished to
# `grad_tol`, and by default they are searched until the frontier is exhausted.
SMALL_DIM = 128
# Their depth limit holds hop chains between minima, two rides a hop: the depth-5 tree MDP of
# seed 27 exhausts at depth 82 and stopped at 64 (bench/RESULTS.md).
SMALL_DEFAULTS = {"max_nodes": None, "max_depth": 256, "ridges_per_node": 64}
# Larger problems (networks): a tree two rides deep, seven ridges a branch point and a node
# budget it ends on, so that `make run` (digits-mlp) returns dozens of minima within three
# minutes on this project's CPU: 45 in 133-146 s (bench/RESULTS.md); six ridges with no
# budget reached gave 38, seven 60 in 181 s.
LARGE_DEFAULTS = {"max_nodes": 64, "max_depth": 2, "ridges_per_node": 7}
# A small problem's ride steps grow up to this many times step_size: its rides cross the
# problem in a dozen steps, not hundreds (bench/known_answers.py).
SMALL_MAX_STEP = 64.0
PROBLEM_MAX_LENGTH = 200  # the width of the stored problem column
REPRODUCIBLE_TRACKING_TOL = 1e-10


class SearchSpec(BaseModel):
    """Everything that decides a search, with defaults; one seed makes it reproducible."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # true is no number

    problem: str = Field(
        "digits-mlp",
        max_length=PROBLEM_MAX_LENGTH,
        description="registered name[:key=value,...] (no control characters)",
    )
    frontier: Frontier = Field(
        "dive",
        description="what to expand next: dive (follow each of the start's ridges down to a "
        "leaf first, then paths that deviate once, twice, ...; a climb from a minimum counts one "
        "deviation more for each stiffer climb of that minimum), breadth-first, depth-first, or "
        "most-negative-first",
    )
    max_nodes: int | None = Field(
        None,
        ge=1,
        le=MAX_NODES,
        description="points in the tree at most, shared evenly down it (a branch point's "
        "rides split what is left of its share), so that a budget leaves the same tree on a "
        "pool; omitted: none for problems of at most "
        f"{SMALL_DIM} parameters (their trees end when the frontier is exhausted), "
        f"{LARGE_DEFAULTS['max_nodes']} above",
    )
    max_depth: int | None = Field(
        None,
        ge=1,
        le=1_000,
        description="rides from the start to the deepest point; a ride that reaches it ends "
        f"in a leaf; omitted: {SMALL_DEFAULTS['max_depth']} for problems of at most "
        f"{SMALL_DIM} parameters, {LARGE_DEFAULTS['max_depth']} above",
    )
    max_solutions: int | None = Field(None, ge=1, description="stop after this many solutions")
    ridges_per_node: int | None = Field(
        None,
        ge=1,
        le=512,
        description="ridges ridden per branch point; omitted: "
        f"{SMALL_DEFAULTS['ridges_per_node']} for problems of at most {SMALL_DIM} parameters, "
        f"{LARGE_DEFAULTS['ridges_per_node']} above",
    )
    ridge_policy: Literal["auto", "one-per-group", "every-direction"] = Field(
        "auto",
        description="ride one eigenvector per group of equal eigenvalues (symmetric copies), "
        "or every eigenvector; auto: as the problem's ridge_policy says, else one per group "
        "where the problem declares its symmetries (align)",
    )
    max_hvps: int | None = Field(None, ge=1, description="total Hessian-vector product budget")
    max_seconds: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="wall-time budget"
    )
    step_size: float = Field(
        0.02,
        gt=0,
        le=100,
        description="a ride's step length; a step that raises the loss or turns the ridge "
        "too far is halved and retaken",
    )
    max_steps: int = Field(10_000, ge=1, le=1_000_000, description="steps per ride")
    curvature_tol: float = Field(1e-8, ge=0, le=1, description="a ride ends at curvature >= -tol")
    tracking_tol: float = Field(
        3e-3,
        gt=0,
        lt=1,
        description="tracking residual / ||H||: a few HVPs a ride step; 1e-10 makes rides "
        "independent of rounding at about ten times the cost (see reproducible)",
    )
    reproducible: bool = Field(
        False,
        description="the same solutions with any thread count and CPU, at several times the "
        "cost: tracking to 1e-10 of ||H|| and every minimum polished by Newton to grad_tol "
        "after a nudge out of its whole negative-curvature subspace (always so for problems "
        f"of at most {SMALL_DIM} parameters, whose minima are polished to grad_tol)",
    )
    settle: Settle = Field(
        "auto",
        description="where a ride ends: saddle (settle on the critical point beneath), branch "
        "(branch at the ride's end while negative curvature is left: Ridge Rider's Algorithm 1), "
        "or minimum (descend to a minimum at once: a tree one ride deep, deeper through the "
        "climbs from minima; on a small problem each side of a ridge is one step and a plain "
        "descent, no ridge tracked); auto: minimum where minima are climbed from and max_nodes is "
        f"omitted (problems of at most {SMALL_DIM} parameters), else saddle for problems of "
        f"at most {SADDLE_SETTLE_MAX_DIM} parameters, branch otherwise",
    )
    leaf: Leaf = Field(
        "minimum",
        description="with settle = branch, a ride's end with no negative curvature left is "
        "polished to a minimum, or kept as the ride left it (ride-end, the paper's approximate RR)",
    )
    climb_minima: bool | None = Field(
        None,
        description="from every minimum, climb each of its Hessian's eigenvector groups (one "
        "per group, as ridges are chosen) to the saddle over the basin's rim, or the saddle of "
        "higher index it converges onto, and branch there (minimum hopping), reaching minima no "
        "ride from the start ends on; the whole "
        f"Hessian at every climb step, so for problems of at most {SMALL_DIM} parameters; "
        "omitted: on for those, off above",
    )
    grad_tol: float = Field(1e-9, gt=0, lt=1, description="gradient norm of a critical point")
    leaf_tol: float = Field(
        1e-7,
        gt=0,
        lt=1,
        description="a network's leaf is polished by L-BFGS until no gradient entry exceeds "
        f"leaf_tol * max(1, |loss|), |loss| where its descent starts (problems of more than "
        f"{SMALL_DIM} parameters, unless "
        "reproducible; in the engine's units, as grad_tol: a loss whose curvature at the start "
        "is below 1/32 is scaled up by a power of two); looser leaves stop short of their "
        "minimum, and copies of one minimum reached by two rides are then no longer merged "
        "(1e-5 kept 64 leaves of 46 minima on digits-mlp)",
    )
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

    def resolved(self, problem: Problem) -> SearchSpec:
        """This spec with every omitted budget filled in for `problem` (see the fields); a
        small problem's `max_nodes` stays None: no node budget.

        Raises:
            ValueError: a field does not suit `problem` (`climbs_minima`; `merge_by_function`
                on a problem that is no classifier).
        """
        self.climbs_minima(problem)
        if self.merge_by_function and problem.predict is None:
            raise ValueError(
                "merge_by_function: true compares predicted class probabilities, and "
                f"{problem.name!r} is no classifier (it has no predict): leave it false"
            )
        defaults = SMALL_DEFAULTS if problem.dim <= SMALL_DIM else LARGE_DEFAULTS
        missing = {name: value for name, value in defaults.items() if getattr(self, name) is None}
        return self.model_copy(update=missing)

    def climbs_minima(self, problem: Problem) -> bool:
        """Whether minima are climbed from (`climb_minima`, resolved for `problem`).

        Raises:
            ValueError: `climb_minima` is true for a problem of more than SMALL_DIM parameters.
        """
        small = problem.dim <= SMALL_DIM
        if self.climb_minima and not small:
            raise ValueError(
                f"climb_minima: true needs a problem of at most {SMALL_DIM} parameters; "
                f"{problem.name!r} has {problem.dim}"
            )
        return small if self.climb_minima is None else self.climb_minima

    def ride_config(self, problem: Problem | None = None) -> RideConfig:
        """How rides go; a small `problem`'s steps (exact eigenpairs, one block of products)
        may grow to SMALL_MAX_STEP times step_size."""
        small = problem is not None and problem.dim <= SMALL_DIM
        return RideConfig(
            max_step=SMALL_MAX_STEP if small else RideConfig.max_step,
            step_size=self.step_size,
            max_steps=self.max_steps,
            curvature_tol=self.curvature_tol,
            tracking_tol=REPRODUCIBLE_TRACKING_TOL if self.reproducible else self.tracking_tol,
        )

    def hops(self, problem: Problem) -> bool:
        """Whether the search hops between minima: its rides descend to minima and climbs from
        them find the rest (settle "minimum", or "auto" with no node budget, where minima are
        climbed from).

        Raises:
            ValueError: `climb_minima` is true for a problem too large to climb in.
        """
        if self.settle not in ("auto", "minimum"):
            return False
        climbs = self.climbs_minima(problem)
        return climbs and (self.settle == "minimum" or self.max_nodes is None)

    def settle_target(self, problem: Problem, start: CriticalPoint) -> SettleTarget:
        """The spec's settle with "auto" resolved for `problem` at its start.

        Where minima are climbed from and no node budget is set, rides descend to minima and
        the climbs find the rest (minimum hopping): the saddles beneath ride ends, or the
        branch points at them, multiply into trees of thousands of points on problems of 15 to
        127 parameters (the tree MDP), while the graph of minima and the saddles between them
        is exhausted (bench/RESULTS.md). A node budget's quotas split at every hop, so under one
        the tree settles on saddles where that holds every negative direction (small problems
        whose index the probe sees whole) and branches at the rides' ends elsewhere.

        Raises:
            ValueError: `climb_minima` is true for a problem too large to climb in.
        """
        if self.settle != "auto":
            return self.settle
        if self.hops(problem):
            return "minimum"
        small = problem.dim <= SADDLE_SETTLE_MAX_DIM
        holdable = start.index_is_exact and start.index <= SettleConfig.probe
        return "saddle" if small and holdable else "branch"

    def exact_minima(self, problem: Problem) -> bool:
        """Whether minima are polished to `grad_tol` (small problems, or reproducible) rather
        than to the practical `leaf_tol`."""
        return self.reproducible or problem.dim <= SMALL_DIM

    def settle_config(self, problem: Problem) -> SettleConfig:
        if self.exact_minima(problem):
            return SettleConfig(grad_tol=self.grad_tol)
        return SettleConfig(grad_tol=self.grad_tol, minimum_tol=self.leaf_tol, polish=False)
