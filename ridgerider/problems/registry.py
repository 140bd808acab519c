"""Problems by name: the built-ins, entry points of installed packages, and `module:factory`."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points

from ridgerider.problems import classic, colored, digits, lever_game, mnist, tree_mdp
from ridgerider.problems.base import Problem
from ridgerider.problems.parameters import ParameterError, UnknownProblemError, check

ENTRY_POINT_GROUP = "ridgerider.problems"
BUILT_INS: dict[str, Callable[..., Problem]] = {
    "himmelblau": classic.himmelblau,
    "styblinski-tang": classic.styblinski_tang,
    "six-hump-camel": classic.six_hump_camel,
    "monkey-saddle": classic.monkey_saddle,
    "cubic-valley": classic.cubic_valley,
    "digits-mlp": digits.digits_mlp_problem,
    "colored-digits": colored.colored_digits_problem,
    "colored-mnist": mnist.colored_mnist_problem,
    "mnist-mlp": mnist.mnist_mlp_problem,
    "tree-mdp": tree_mdp.tree_mdp,
    "lever-game": lever_game.lever_game,
}


def registered() -> dict[str, Callable[..., Problem]]:
    """Built-ins plus the factories that installed packages declare as entry points."""
    factories = dict(BUILT_INS)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        factories.setdefault(entry.name, entry.load())
    return factories


def parse(text: str) -> tuple[str, dict[str, object]]:
    """`name[:key=value,...]` into the name and keyword arguments (ints, floats or strings).

    The name may itself be a `module:factory` import path: arguments follow the last colon.
    """
    name, _, rest = text.rpartition(":")
    if not name or "=" not in rest:
        return text, {}
    kwargs: dict[str, object] = {}
    for item in rest.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParameterError(f"problem argument {item!r} must look like key=value")
        if key in kwargs:
            raise ParameterError(f"problem argument {key!r} is given twice")
        kwargs[key] = _literal(value.strip())
    return name, kwargs


def resolve(text: str, *, allow_import: bool = True) -> tuple[Callable[..., Problem], dict]:
    """The factory `text` names and its keyword arguments, checked against its declared
    parameters (or its signature) but not called: cheap, for validating a request before any work.

    Raises:
        UnknownProblemError: the name is not registered (and is no importable factory).
        ParameterError: an argument is unknown, repeated or out of its range (named).
    """
    name, kwargs = parse(text)
    factories = registered()
    if name in factories:
        factory = factories[name]
    elif allow_import and ":" in name:
        module_name, _, attribute = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise UnknownProblemError(f"cannot import {name!r}: {error}") from error
    elif ":" in name:
        raise UnknownProblemError(
            f"problem {name!r} names a module to import, which is allowed only in jobs "
            "submitted from the CLI or the library, not over HTTP"
        )
    else:
        known = ", ".join(sorted(factories))
        raise UnknownProblemError(f"unknown problem {name!r}; registered problems: {known}")
    try:
        check(factory, kwargs)
    except ParameterError as error:
        raise ParameterError(f"problem {name!r}: {error}") from None
    return factory, kwargs


def load(text: str, *, allow_import: bool = True) -> Problem:
    """The problem `text` names: `name[:key=value,...]` or, if allowed, `module:factory`.

    Raises:
        UnknownProblemError: the name is not registered (and is no importable factory).
        ParameterError: an argument is unknown, repeated or out of its range (named).
        ValueError: the factory rejects the arguments' combination.
    """
    factory, kwargs = resolve(text, allow_import=allow_import)
    problem = factory(**kwargs)
    if not isinstance(problem, Problem):
        raise TypeError(f"{text!r} returned {type(problem).__name__}, not a Problem")
    return problem


def _literal(value: str) -> object:
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return value
