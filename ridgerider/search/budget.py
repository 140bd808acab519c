"""Budgets: when a search stops taking new work (evaluations of what it found always run)."""

from __future__ import annotations

from dataclasses import dataclass

from ridgerider.search.spec import SearchSpec


@dataclass(frozen=True)
class Progress:
    """What a search has spent and found so far."""

    nodes: int
    solutions: int
    hvps: int
    seconds: float


def exhausted(spec: SearchSpec, progress: Progress) -> str | None:
    """The budget `progress` has used up ("node budget", "solution budget", "HVP budget",
    "time budget"), or None."""
    if progress.nodes >= spec.max_nodes:
        return "node budget"
    if spec.max_solutions is not None and progress.solutions >= spec.max_solutions:
        return "solution budget"
    if spec.max_hvps is not None and progress.hvps >= spec.max_hvps:
        return "HVP budget"
    if spec.max_seconds is not None and progress.seconds > spec.max_seconds:
        return "time budget"
    return None
