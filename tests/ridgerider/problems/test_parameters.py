"""Declared parameters: what each kind accepts, how its range reads, and checked calls."""

from __future__ import annotations

import math

import pytest

from ridgerider.problems.parameters import (
    ParameterError,
    choice,
    declare,
    defaults,
    integer,
    number,
)


def test_an_integer_takes_integers_in_its_closed_range_only():
    depth = integer("depth", 4, 10, "decisions")
    for value in (4, 7, 10):
        depth.check(value)
    for value in (3, 11, 5.0, True, "5", None):
        with pytest.raises(ParameterError, match=r"depth must be an integer in \[4, 10\]"):
            depth.check(value)


def test_a_number_honours_open_bounds_and_refuses_nan_and_infinity():
    entropy = number("entropy", 0.0, 0.2, "weight", open_low=True, open_high=True)
    assert entropy.allowed == "a number in (0, 0.2)"
    entropy.check(0.1)
    entropy.check(1e-12)
    for value in (0.0, 0.2, math.nan, math.inf, -1):
        with pytest.raises(ParameterError, match=r"entropy must be a number in \(0, 0.2\)"):
            entropy.check(value)


def test_a_choice_and_an_omittable_parameter():
    start = choice("start", ("zero", "mis"), "where", nullable=True)
    start.check("mis")
    start.check(None)
    with pytest.raises(ParameterError, match=r"start must be one of 'zero', 'mis' \(or omitted\)"):
        start.check("random")


def test_a_declared_factory_checks_positional_and_keyword_calls():
    @declare(integer("dim", 1, 8, "coordinates"), number("scale", 0.0, 2.0, "factor"))
    def bowl(dim: int = 2, scale: float = 1.0) -> tuple[int, float]:
        return dim, scale

    assert bowl(3, scale=2) == (3, 2)
    assert defaults(bowl) == {"dim": 2, "scale": 1.0}
    with pytest.raises(ParameterError, match="dim must be"):
        bowl(9)
    with pytest.raises(ParameterError, match="scale must be"):
        bowl(scale=-1.0)


def test_a_declaration_must_name_every_parameter():
    with pytest.raises(TypeError, match="declared"):

        @declare(integer("dim", 1, 8, "coordinates"))
        def bowl(dim: int = 2, scale: float = 1.0) -> None:
            pass
