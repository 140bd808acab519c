"""The `ridgerider` command, run as a real process: the spectrum command and the basics."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import typer
from rich.text import Text

from api.cli import app
from tests.conftest import REPOSITORY

RIDGERIDER = Path(sys.executable).parent / "ridgerider"


def ridgerider(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the installed command line in a fresh process, as a user would: in `cwd` (so that the
    embedded database and artifacts land there), with the repository on PYTHONPATH so that
    `tests.problems:...` problems load."""
    return subprocess.run(
        [str(RIDGERIDER), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=cli_environment(env),
    )


def cli_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A command-line process's environment: a fixed width, the system's PATH, and the
    repository on PYTHONPATH (so that `tests.problems:...` problems load), with `extra`."""
    base = {"COLUMNS": "120", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPOSITORY)}
    return base | (extra or {})


def test_spectrum_of_the_zero_point_shows_the_known_multiplicities():
    result = ridgerider("spectrum", "--hidden", "8", "--point", "zero", "-k", "10")
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"│\s+(-?\d\.\d+)\s+│\s+(\d+)\s+│", result.stdout)
    assert rows == [("-0.240457", "8"), ("-0.208871", "2")]
    assert "10/10 converged" in result.stdout


def test_out_of_range_arguments_name_the_option_and_range():
    result = ridgerider("spectrum", "-k", "0")
    assert result.returncode == 2
    assert "Invalid value for '-k'" in result.stderr
    assert "greater than or equal to 1" in result.stderr
    result = ridgerider("spectrum", "--hidden", "2", "-k", "200")
    assert result.returncode == 2
    assert "must be in [1, 160]" in result.stderr


def test_version():
    result = ridgerider("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("ridgerider 0.1.0")


def test_every_help_text_survives_rich_markup():
    """Typer prints help through rich, whose markup eats a bracketed "[default: ...]": no
    option's help may change when rendered."""

    def commands(group: click.Command, path: str = "") -> list[tuple[str, click.Command]]:
        found = [(path, group)]
        for name, command in getattr(group, "commands", {}).items():
            found += commands(command, f"{path} {name}")
        return found

    changed = [
        (path, param.name, param.help)
        for path, command in commands(typer.main.get_command(app))
        for param in command.params
        if getattr(param, "help", None) and Text.from_markup(param.help).plain != param.help
    ]
    assert changed == []
