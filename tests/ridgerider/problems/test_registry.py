"""Loading problems by name, with arguments, and from a user's `module:factory`."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from ridgerider.problems.parameters import (
    ParameterError,
    UnknownProblemError,
    check,
    declared,
    defaults,
)
from ridgerider.problems.registry import BUILT_INS, load, parse, registered, resolve


def test_parse_names_and_arguments():
    assert parse("himmelblau") == ("himmelblau", {})
    assert parse("styblinski-tang:dim=3") == ("styblinski-tang", {"dim": 3})
    assert parse("x:rate=0.5,act=tanh") == ("x", {"rate": 0.5, "act": "tanh"})
    assert parse("mypkg.problems:make") == ("mypkg.problems:make", {})
    with pytest.raises(ParameterError, match="must look like key=value"):
        parse("styblinski-tang:dim=3,oops")
    with pytest.raises(ParameterError, match="'dim' is given twice"):
        parse("styblinski-tang:dim=2,dim=3")


def test_built_ins_load_with_arguments():
    problem = load("styblinski-tang:dim=4")
    assert problem.dim == 4 and problem.start.shape == (4,)
    with pytest.raises(ParameterError, match="'styblinski-tang': unknown parameter 'width'"):
        load("styblinski-tang:width=3")
    with pytest.raises(ParameterError, match=r"dim must be an integer in \[1, 1024\], got 0"):
        load("styblinski-tang:dim=0")


@pytest.mark.parametrize("name", sorted(BUILT_INS))
def test_every_built_in_declares_its_parameters_and_its_defaults_fit_them(name):
    factory = BUILT_INS[name]
    schema = declared(factory)
    assert schema is not None and set(schema) == set(defaults(factory))
    check(factory, defaults(factory))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("digits-mlp:hidden=1000000000", r"hidden must be an integer in \[1, 1024\]"),
        ("digits-mlp:weight_decay=abc", r"weight_decay must be a number in \[0, 1\], got 'abc'"),
        ("digits-mlp:hidden=2.5", "hidden must be an integer"),
        ("mnist-mlp:activation=relu", "activation must be one of 'tanh', 'gelu'"),
        ("digits-mlp:activation=relu", "activation must be one of 'tanh', 'gelu'"),
        ("colored-digits:activation=relu", "activation must be one of 'tanh', 'gelu'"),
        ("colored-mnist:label_noise=0.6", r"label_noise must be a number in \[0, 0.5\]"),
        ("tree-mdp:depth=11", r"depth must be an integer in \[4, 10\]"),
        ("lever-game:entropy=0.2", r"entropy must be a number in \(0, 0.2\)"),
    ],
)
def test_out_of_range_arguments_are_refused_before_the_factory_runs(text, message):
    with pytest.raises(ParameterError, match=message):
        resolve(text)


def test_unknown_names_list_the_registered_ones():
    with pytest.raises(UnknownProblemError, match=r"unknown problem 'rosenbrock'.*himmelblau"):
        load("rosenbrock")


def test_user_factory_from_a_module(tmp_path, monkeypatch):
    (tmp_path / "user_problems.py").write_text(
        textwrap.dedent(
            """
            import torch
            from ridgerider.problems.base import Problem

            def bowl(scale=1.0):
                return Problem("bowl", lambda t: -scale * (t**2).sum(), 3, torch.zeros(3).double())
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    problem = load("user_problems:bowl:scale=2.0")
    assert problem.loss(torch.ones(3, dtype=torch.float64)).item() == -6.0
    with pytest.raises(UnknownProblemError, match="user_problems:bowl"):
        load("user_problems:bowl", allow_import=False)
    with pytest.raises(UnknownProblemError, match="cannot import 'user_problems:missing'"):
        load("user_problems:missing")
    sys.modules.pop("user_problems", None)


def test_installed_packages_declare_problems_as_entry_points(tmp_path, monkeypatch):
    (tmp_path / "plugin_problems.py").write_text(
        textwrap.dedent(
            """
            import torch
            from ridgerider.problems.base import Problem

            def ridge(depth=1.0):
                return Problem("ridge", lambda t: -depth * t[0] ** 2 + t[1] ** 2, 2,
                               torch.zeros(2).double())
            """
        )
    )
    info = tmp_path / "plugin_problems-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plugin-problems\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[ridgerider.problems]\nplugin-ridge = plugin_problems:ridge\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "plugin-ridge" in registered()
    problem = load("plugin-ridge:depth=3", allow_import=False)
    assert problem.loss(torch.tensor([1.0, 0.0], dtype=torch.float64)).item() == -3.0
    sys.modules.pop("plugin_problems", None)
