"""Fingerprints: a point's path from the start, the (eigen index, sign) of each ride taken.

The paper names the leaves of its tree this way; two points with one fingerprint were reached
the same way, so a fingerprint survives re-running a search anywhere. Its text form is the
rides joined by dots, each the eigen index and its sign: `0+.8-.0+` (the start's is empty).
"""

from __future__ import annotations

import re

Fingerprint = tuple[tuple[int, int], ...]
ROOT: Fingerprint = ()
FIRST_CHOICE = (0, 1)  # the most negative ridge, + sign: a dive's way down
_RIDE = re.compile(r"^(\d+)([+-])$")


def extend(fingerprint: Fingerprint, eigen_index: int, sign: int) -> Fingerprint:
    """The fingerprint of the point reached from `fingerprint` by riding (eigen_index, sign)."""
    return (*fingerprint, (eigen_index, sign))


def to_text(fingerprint: Fingerprint) -> str:
    return ".".join(f"{index}{'+' if sign > 0 else '-'}" for index, sign in fingerprint)


def from_text(text: str) -> Fingerprint:
    """The fingerprint `to_text` wrote.

    Raises:
        ValueError: `text` is not dot-separated rides like `0+.8-`.
    """
    if not text:
        return ROOT
    rides = []
    for part in text.split("."):
        match = _RIDE.match(part)
        if match is None:
            raise ValueError(f"a fingerprint is rides like 0+.8- joined by dots, got {text!r}")
        rides.append((int(match[1]), 1 if match[2] == "+" else -1))
    return tuple(rides)


def deviations(fingerprint: Fingerprint) -> int:
    """Rides below the start's that were not their branch point's first choice."""
    return sum(ride != FIRST_CHOICE for ride in fingerprint[1:])
