"""Errors a user can act on, from any command, as real processes: one line on stderr naming the
problem, exit code 2, no traceback. Bad spec files, taken or impossible export paths, damaged
artifacts, filters nested too deep, forged cursors, a database that refuses writes."""

from __future__ import annotations

import base64
import shutil

import pytest

from tests.api.test_cli import ridgerider
from tests.storage.test_export import corrupt


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A folder whose embedded database holds job 1: himmelblau, searched to the end."""
    path = tmp_path_factory.mktemp("errors")
    result = ridgerider("run", "--problem", "himmelblau", cwd=path)
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture
def copy(folder, tmp_path):
    """A copy of `folder` for a test that damages it."""
    return shutil.copytree(folder, tmp_path / "copy")


def refused(folder, *args, env=None):
    """Run the command, check it is refused the way a user's mistake is; its stderr."""
    result = ridgerider(*args, cwd=folder, env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.startswith("error: ")
    return result.stderr


def one_line(folder, *args, env=None):
    stderr = refused(folder, *args, env=env)
    assert stderr.count("\n") == 1, stderr
    return stderr


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def test_a_spec_file_must_be_utf8_holding_an_object(folder):
    (folder / "list.json").write_text("[1, 2]")
    (folder / "latin1.json").write_bytes('{"problem": "himmelblau", "n": "é"}'.encode("latin-1"))
    assert "list.json: a spec is a JSON object" in one_line(folder, "run", "--spec", "list.json")
    assert "not an array" in one_line(folder, "submit", "list.json")
    stderr = one_line(folder, "run", "--spec", "latin1.json")
    assert "latin1.json: not UTF-8 text (at byte 32)" in stderr


def test_an_export_to_a_taken_or_impossible_path_is_refused_leaving_nothing(folder, scratch):
    env = {"TMPDIR": str(scratch)}
    (folder / "empty.tar.gz").mkdir()
    stderr = one_line(folder, "export", "1", "empty.tar.gz", env=env)
    assert "empty.tar.gz already exists" in stderr
    (folder / "afile").write_text("")
    stderr = one_line(folder, "export", "1", "afile/set.tar.gz", env=env)
    assert "cannot write afile/set.tar.gz: afile is a file, not a folder" in stderr
    assert list(scratch.iterdir()) == []


def test_a_corrupt_artifact_stops_export_and_select(copy, scratch):
    for path in (copy / "ridgerider-artifacts").rglob("*.safetensors"):
        corrupt(path)
    stderr = one_line(copy, "export", "1", "set.tar.gz", env={"TMPDIR": str(scratch)})
    assert "is corrupt: its sha256 is" in stderr
    assert not (copy / "set.tar.gz").exists() and list(scratch.iterdir()) == []
    assert "is corrupt" in one_line(copy, "select", "1", "--pareto", "loss:min")


@pytest.mark.parametrize(
    "expression",
    [
        "not " * 500 + "sharpness > 1",
        "(" * 995 + "sharpness > 1" + ")" * 995,
        "not " * 450 + "sharpness > 1",  # under the length limit: refused for its depth
        "(" * 900 + "sharpness > 1" + ")" * 900,
    ],
)
def test_a_filter_nested_too_deep_is_refused(folder, expression):
    stderr = refused(folder, "solutions", "1", "--filter", expression)
    assert stderr.splitlines()[0].startswith("error: a filter ")


@pytest.mark.parametrize(
    "forged",
    [cursor('{"v":1,"id":1000000000000000000000000000000,"s":"id","f":""}'), cursor("[" * 1400)],
)
def test_a_forged_cursor_is_refused(folder, forged):
    assert "cursor" in one_line(folder, "solutions", "1", "--cursor", forged)


def test_writes_to_a_read_only_database_are_refused(copy):
    database = copy / "ridgerider.db"
    database.chmod(0o444)
    url = f"sqlite:///file:{database}?mode=ro&uri=true"  # read-only for root too
    for command in (("cancel", "1"), ("run", "--problem", "himmelblau"), ("keys", "create", "a")):
        stderr = one_line(copy, *command, "--db", url)
        assert "database error: attempt to write a readonly database" in stderr


def test_an_out_of_range_problem_parameter_is_refused(folder):
    stderr = one_line(folder, "run", "--problem", f"digits-mlp:hidden={10**20}")
    assert "hidden must be an integer in [1, 1024]" in stderr
