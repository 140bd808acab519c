"""Fingerprints: a point's path from the start, the (eigen index, sign) of each ride taken.

The paper names the leaves of its tree this way; two points with one fingerprint were reached
the same way, so a fingerprint survives re-running a search anywhere. Its text form is the
rides joined by dots, each the eigen index and its sign: `0+.8-.0+` (the start's is empty).
A climb retaken with short steps (`RETAKEN`) has its sign doubled: `0+.8-.5++`.
"""

from __future__ import annotations

import re

Fingerprint = tuple[tuple[int, int], ...]
ROOT: Fingerprint = ()
FIRST_CHOICE = (0, 1)  # the most negative ridge, + sign: a dive's way down
RETAKEN = 2  # a sign of this size: the climb of sign +-1 retaken with short steps
_RIDE = re.compile(r"^(\d+)([+-])(\2?)$")


def extend(fingerprint: Fingerprint, eigen_index: int, sign: int) -> Fingerprint:
    """The fingerprint of the point reached from `fingerprint` by riding (eigen_index, sign)."""
    return (*fingerprint, (eigen_index, sign))


def retaken(sign: int) -> bool:
    """Whether a ride of `sign` is a climb retaken with short steps."""
    return abs(sign) == RETAKEN


def to_text(fingerprint: Fingerprint) -> str:
    return ".".join(
        f"{index}{('+' if sign > 0 else '-') * abs(sign)}" for index, sign in fingerprint
    )


def from_text(text: str) -> Fingerprint:
    """The fingerprint `to_text` wrote.

    Raises:
        ValueError: `text` is not dot-separated rides like `0+.8-` (or `5++`).
    """
    if not text:
        return ROOT
    rides = []
    for part in text.split("."):
        match = _RIDE.match(part)
        if match is None:
            raise ValueError(f"a fingerprint is rides like 0+.8- joined by dots, got {text!r}")
        sign = 1 if match[2] == "+" else -1
        rides.append((int(match[1]), sign * (RETAKEN if match[3] else 1)))
    return tuple(rides)


def deviations(fingerprint: Fingerprint) -> int:
    """Rides below the start's that were not their branch point's first choice."""
    return sum(ride != FIRST_CHOICE for ride in fingerprint[1:])
