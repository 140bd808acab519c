"""Budgets: when a search stops taking new work (evaluations of what it found always run).

The node budget is a quota split down the tree, not a running count: the start may have
`max_nodes` points below and at it; a branch point's quota, less its own point, is shared
evenly by its rides in the order they were chosen, and a ride's share bounds the points its
end and everything below it may hold. A ride whose share is 0 is skipped; one whose share is 1
ends in a leaf. Each ride's share follows from its path alone, so the tree a node budget leaves
is the same whatever order the units ran in: on one runner or on a pool of workers, with one
killed and its unit redone. (The solution, HVP and time budgets are running counts. Where the
time budget ends a search depends on that order. The solution and HVP budgets count what the
records hold; a pool makes its records in one runner's order and checks these budgets again
at each, so they end its search where one runner's ends.)

A minimum whose share cannot hold all its climbs leaves the rest waiting. Once no unit is left
the tree is still, and the points the budget did not use are shared by every climb waiting,
where they hold enough for each (`climb_grant`): a granted climb's quota is its grant, not a
share of its minimum's. The grant follows from the still tree alone, so it too is the same on
any runner, and a budget that the tree never needs cuts no climb. The retakes of climbs that
turned off their direction (`climb.turned_off`) wait the same way, under a node budget or not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ridgerider.search.fingerprint import Fingerprint

if TYPE_CHECKING:
    from ridgerider.search.spec import SearchSpec

# Why a search cut short by a limit that is no running budget is incomplete: a ride or a
# minimum's climbs left no share of the node budget, a saddle left unexpanded at `max_depth`,
# a branch point with more negative ridges than `ridges_per_node`.
NODE_BUDGET = "node budget"
DEPTH_LIMIT = "depth limit"
RIDGE_CAP = "ridge cap"
# those whose cuts follow from the tree alone, weakest first
_CUTS = (RIDGE_CAP, DEPTH_LIMIT, NODE_BUDGET)
# A minimum takes as many of its climbs (stiffest first) as its share of the node budget, less
# its own point, holds at this many points a climb: the saddle it reaches and both rides down.
# All or none kept 26 of the 27 minima of a three-well cube under max_nodes = 100000.
CLIMB_POINTS = 3


def stop_reason(current: str | None, reason: str) -> str:
    """Why a search stopped, told `reason` after `current` (None: nothing yet): the first
    reason, except that a cut which follows from the tree alone (the ridge cap, the depth
    limit, then the node budget) gives way to any later reason ranked above it, so that a pool,
    whose units end in another order, reports what one runner does."""
    if current is None:
        return reason

    def rank(name: str) -> int:
        return _CUTS.index(name) if name in _CUTS else len(_CUTS)

    return reason if rank(reason) > rank(current) else current


@dataclass(frozen=True)
class RidesFrom:
    """The rides from a point, each an (eigen index, sign): those queued with it, which share its
    quota in this order, and the climbs granted later, with their quotas."""

    shared: list[tuple[int, int]]
    granted: dict[tuple[int, int], int]


@dataclass(frozen=True)
class Progress:
    """What a search has spent and found so far."""

    nodes: int
    solutions: int
    hvps: int
    seconds: float


def exhausted(spec: SearchSpec, progress: Progress) -> str | None:
    """The running budget `progress` has used up ("solution budget", "HVP budget", "time
    budget"), or None."""
    if reason := counted_out(spec, progress):
        return reason
    if spec.max_seconds is not None and progress.seconds > spec.max_seconds:
        return "time budget"
    return None


def counted_out(spec: SearchSpec, progress: Progress) -> str | None:
    """The solution or HVP budget `progress` has used up, or None: the running budgets that
    count what the tree's records hold, so that where records are made in one order (a pool's
    turns, `storage.turns`) they run out at the same record on every runner."""
    if spec.max_solutions is not None and progress.solutions >= spec.max_solutions:
        return "solution budget"
    if spec.max_hvps is not None and progress.hvps >= spec.max_hvps:
        return "HVP budget"
    return None


def shares(quota: int, rides: int) -> list[int]:
    """`quota` points split as evenly as can be among `rides`, the first ones taking the rest."""
    each, rest = divmod(max(quota, 0), rides)
    return [each + (position < rest) for position in range(rides)]


def quota_of(
    fingerprint: Fingerprint,
    max_nodes: int,
    rides_from: Callable[[Fingerprint], RidesFrom],
) -> int:
    """The node quota of the point at `fingerprint` (of the ride that reaches it): `max_nodes`
    at the start, then each ride's grant, or else its share of its branch point's quota less
    the branch point's own point; `rides_from(path)` gives the rides from the point at `path`."""
    quota = max_nodes
    for depth, ride in enumerate(fingerprint):
        taken = rides_from(fingerprint[:depth])
        if ride in taken.granted:
            quota = taken.granted[ride]
        else:
            quota = shares(quota - 1, len(taken.shared))[taken.shared.index(ride)]
    return quota


def climb_grant(leftover: int, waiting: int) -> int:
    """The quota granted to each of `waiting` climbs from `leftover` points the node budget did
    not use: an equal share, where the points hold CLIMB_POINTS for every one; else 0, none
    granted (which to take first would depend on the order the tree was built in)."""
    each = max(leftover, 0) // waiting if waiting > 0 else 0
    return each if each >= CLIMB_POINTS else 0
