"""Declared problem parameters: one schema (type, range, help) that checks a factory's
arguments before any work, and that `GET /problems` and the CLI show to users."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

Factory = TypeVar("Factory", bound=Callable[..., Any])
SEED_MAX = 2**32 - 1
DECLARED = "__ridgerider_parameters__"  # where `declare` leaves a factory's schema


class ParameterError(ValueError):
    """A problem argument that is unknown, repeated, of the wrong type or out of range."""


class UnknownProblemError(LookupError):
    """A problem name that is neither registered nor (where allowed) an import path (raised by
    `registry`; here, beside `ParameterError`, so that catching it loads no problem)."""


@dataclass(frozen=True)
class Parameter:
    """One argument of a problem factory: its kind, its allowed values and what it means."""

    name: str
    kind: Literal["integer", "number", "choice"]
    help: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple[str, ...] = ()
    nullable: bool = False

    @property
    def allowed(self) -> str:
        """The allowed values in words, e.g. "an integer in [1, 1024]"."""
        if self.kind == "choice":
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            article = "an integer" if self.kind == "integer" else "a number"
            left = "(" if self.open_low else "["
            right = ")" if self.open_high or self.high is None else "]"
            low = "-inf" if self.low is None else _number(self.low)
            high = "inf" if self.high is None else _number(self.high)
            text = f"{article} in {left}{low}, {high}{right}"
        return text + (" (or omitted)" if self.nullable else "")

    def check(self, value: object) -> None:
        """Raises ParameterError naming this parameter and its range if `value` is not allowed."""
        if value is None and self.nullable:
            return
        if not self._fits(value):
            raise ParameterError(f"{self.name} must be {self.allowed}, got {value!r}")

    def _fits(self, value: object) -> bool:
        if self.kind == "choice":
            return isinstance(value, str) and value in self.choices
        if isinstance(value, bool):
            return False
        if not isinstance(value, int if self.kind == "integer" else int | float):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or (value < self.high if self.open_high else value <= self.high)

    def as_json(self, default: object) -> dict[str, object]:
        """The parameter as `GET /problems` lists it."""
        return {
            "kind": self.kind,
            "default": default,
            "allowed": self.allowed,
            "help": self.help,
            **({"choices": list(self.choices)} if self.choices else {}),
            **({"minimum": self.low} if self.low is not None else {}),
            **({"maximum": self.high} if self.high is not None else {}),
            "exclusive_minimum": self.open_low,
            "exclusive_maximum": self.open_high,
            "nullable": self.nullable,
        }


def integer(name: str, low: int, high: int, help: str) -> Parameter:
    """An integer parameter in [low, high]."""
    return Parameter(name, "integer", help, low, high)


def number(
    name: str,
    low: float,
    high: float,
    help: str,
    *,
    open_low: bool = False,
    open_high: bool = False,
    nullable: bool = False,
) -> Parameter:
    """A real parameter in [low, high] (bounds made open with open_low / open_high)."""
    return Parameter(name, "number", help, low, high, open_low, open_high, nullable=nullable)


def choice(name: str, choices: tuple[str, ...], help: str, *, nullable: bool = False) -> Parameter:
    """A parameter that takes one of a few strings."""
    return Parameter(name, "choice", help, choices=choices, nullable=nullable)


def seed(help: str = "the data's seed") -> Parameter:
    """The usual seed parameter, in [0, 2**32 - 1] (what numpy's generators accept)."""
    return integer("seed", 0, SEED_MAX, help)


def declare(*parameters: Parameter) -> Callable[[Factory], Factory]:
    """Declare a factory's parameters (every one, in any order); calls are checked against them."""
    declared = {p.name: p for p in parameters}

    def wrap(factory: Factory) -> Factory:
        signature = inspect.signature(factory)
        if set(declared) != set(signature.parameters):
            raise TypeError(f"{factory.__name__}: declared {sorted(declared)}, takes {signature}")

        @functools.wraps(factory)
        def checked(*args: Any, **kwargs: Any) -> Any:
            check(checked, signature.bind(*args, **kwargs).arguments)
            return factory(*args, **kwargs)

        setattr(checked, DECLARED, declared)
        return checked  # type: ignore[return-value]

    return wrap


def declared(factory: Callable[..., Any]) -> Mapping[str, Parameter] | None:
    """The parameters `factory` declares, or None for a factory that declares none."""
    return getattr(factory, DECLARED, None)


def check(factory: Callable[..., Any], arguments: Mapping[str, object]) -> None:
    """Raises ParameterError if an argument is unknown to `factory` or outside its declaration.

    Factories that declare nothing are checked against their signature only.
    """
    schema = declared(factory)
    if schema is None:
        try:
            inspect.signature(factory).bind(**arguments)
        except TypeError as error:
            raise ParameterError(str(error)) from None
        return
    for name, value in arguments.items():
        if name not in schema:
            known = ", ".join(schema) or "none"
            raise ParameterError(f"unknown parameter {name!r}; parameters: {known}")
        schema[name].check(value)


def defaults(factory: Callable[..., Any]) -> dict[str, object]:
    """Each parameter of `factory` with its default (None where it has none)."""
    return {
        p.name: None if p.default is inspect.Parameter.empty else p.default
        for p in inspect.signature(factory).parameters.values()
    }


def _number(value: float) -> str:
    if isinstance(value, int) and value >= 2**20:
        return (
            f"2**{value.bit_length()} - 1" if value + 1 == 2 ** value.bit_length() else str(value)
        )
    return f"{value:g}" if isinstance(value, float) else str(value)
