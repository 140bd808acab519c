"""`ridgerider run` as a real process: JSON output, user problems, clear errors."""

from __future__ import annotations

import json
import re
import subprocess
import textwrap

import pytest

from tests.api.test_cli import RIDGERIDER, ridgerider
from tests.conftest import REPOSITORY

USER_PROBLEMS = textwrap.dedent(
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    from ridgerider.problems.base import Problem, module_problem


    def camel(scale=1.0):
        def loss(t):
            x, y = t[0], t[1]
            return scale * ((4 - 2.1 * x**2 + x**4 / 3) * x**2 + x * y + (-4 + 4 * y**2) * y**2)
        return Problem("camel", loss, 2, torch.zeros(2, dtype=torch.float64))


    def tiny_net(hidden=3):
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn(60, 4, generator=generator, dtype=torch.float64)
        labels = (inputs[:, 0] * inputs[:, 1] > 0).long()
        net = nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, 2)).double()
        with torch.no_grad():  # the zero point: a critical point of every such net
            for p in net.parameters():
                p.zero_()
            net[2].bias.copy_(torch.bincount(labels, minlength=2).double().log())
        return module_problem("tiny-net", net, F.cross_entropy, (inputs, labels),
                              test=(inputs, labels), weight_decay=1e-2, zero_modes=1)
    """
)


def test_run_stores_every_job_and_prints_json(tmp_path):
    result = ridgerider("run", "--problem", "styblinski-tang:dim=2", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["minima"]) == 4
    assert data["stats"]["nodes"] == 9
    assert data["job"]["id"] == 1 and data["job"]["status"] == "finished"
    assert "job 1: styblinski-tang:dim=2, in-process, stored in sqlite:///ridgerider.db" in (
        result.stderr
    )
    assert (tmp_path / "ridgerider.db").exists() and (tmp_path / "ridgerider-artifacts").is_dir()

    again = ridgerider("run", "--problem", "himmelblau", "--json", cwd=tmp_path)
    assert json.loads(again.stdout)["job"]["id"] == 2
    listed = json.loads(ridgerider("jobs", "--format", "json", cwd=tmp_path).stdout)
    assert [(j["id"], j["problem"], j["minima"]) for j in listed] == [
        (2, "himmelblau", 4),
        (1, "styblinski-tang:dim=2", 4),
    ]


def test_what_a_run_and_a_hand_off_leave_in_the_working_folder_is_ignored_by_git(tmp_path):
    """`run` and `mlflow` (to MLflow's default store) write the database, the weights and
    MLflow's store and artifacts into the folder they run in: in a checkout, git ignores each."""
    (tmp_path / "spec.toml").write_text("max_nodes = 12\nmax_depth = 3\n")
    run = ridgerider(
        "run", "--problem", "tests.problems:tiny_net", "--spec", "spec.toml", cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    handed = ridgerider("mlflow", "1", "--diverse", "2", cwd=tmp_path)  # no MLFLOW_TRACKING_URI
    assert handed.returncode == 0, handed.stderr
    written = sorted(
        path.name + "/" * path.is_dir() for path in tmp_path.iterdir() if path.name != "spec.toml"
    )
    assert {"ridgerider.db", "ridgerider-artifacts/", "mlflow.db", "mlruns/"} <= set(written)
    ignored = subprocess.run(
        ["git", "check-ignore", "--stdin"],  # a committed copy would not count as ignored
        input="\n".join(written),
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
    )
    assert ignored.stdout.split() == written


def test_a_run_into_a_pipe_prints_progress_lines_before_its_table(tmp_path):
    """`ridgerider run ... 2>&1 | cat`: stderr is no terminal, so plain progress lines come
    while the search runs (here the first counts and the last: the interval is set long), then
    the table; the last line holds the counts the report ends with."""
    result = subprocess.run(
        [str(RIDGERIDER), "run", "--problem", "himmelblau"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one pipe, in the order written
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={"COLUMNS": "120", "PATH": "/usr/bin:/bin", "RIDGERIDER_PROGRESS_EVERY": "1000000"},
    )
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    table = next(i for i, line in enumerate(lines) if "distinct minima of himmelblau" in line)
    progress = re.compile(
        r"job 1: (?P<points>\d+) points, (?P<minima>\d+) minima, (?P<rides>\d+) rides, "
        r"\d+ branch points, (?P<to_go>\d+) to go, (?P<hvps>[\d,]+) HVPs, \d+\.\d s"
    )
    shown = [match for line in lines[:table] if (match := progress.fullmatch(line))]
    assert len(shown) == 2, lines[:table]  # the first counts and the last; none after the table
    assert not any(progress.fullmatch(line) for line in lines[table:])
    first, last = shown
    assert int(first["rides"]) < int(last["rides"]) and last["to_go"] == "0"
    ended = re.search(r"(\d+) points \(.*\), (\d+) rides, .*, ([\d,]+) HVPs", result.stdout)
    assert (last["points"], last["rides"], last["hvps"]) == ended.groups()
    assert last["minima"] == "4"

    refused = ridgerider(
        "run", "--problem", "himmelblau", cwd=tmp_path, env={"RIDGERIDER_PROGRESS_EVERY": "0"}
    )
    assert refused.returncode == 2
    assert "RIDGERIDER_PROGRESS_EVERY = '0' is not allowed" in refused.stderr


def test_a_run_stopped_by_a_budget_says_what_it_left_open(tmp_path):
    (tmp_path / "spec.toml").write_text("max_solutions = 2\n")
    result = ridgerider(
        "run", "--problem", "styblinski-tang:dim=4", "--spec", "spec.toml", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    left = re.search(
        r"stopped: solution budget \((\d+) rides left open\)", " ".join(result.stdout.split())
    )
    again = ridgerider(
        "run", "--problem", "styblinski-tang:dim=4", "--spec", "spec.toml", "--json", cwd=tmp_path
    )
    stats = json.loads(again.stdout)["stats"]
    assert left and int(left[1]) == stats["skipped_rides"] > 0 and stats["skipped_expansions"] == 0


def test_a_run_whose_start_is_degenerate_says_what_such_a_point_may_be(tmp_path):
    """The monkey saddle's start is flat to second order: the search stops there, and the report
    says what a degenerate point may be rather than leave "0 distinct minima" unexplained."""
    result = ridgerider("run", "--problem", "monkey-saddle", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stdout.split())
    assert "0 distinct minima" in said and "stopped: degenerate start" in said
    assert "1 degenerate point is in the graph, not among the minima" in said


def test_a_ring_of_minima_gives_minima_on_the_ring(tmp_path):
    """(x^2 + y^2 - 1)^2 from its maximum: the rides reach the ring of minima, flat along it and
    rising off it, so each point reached is a minimum (second order alone called them
    degenerate, and the run found "0 distinct minima")."""
    (tmp_path / "ring_problems.py").write_text(
        "import torch\n"
        "from ridgerider.problems.base import Problem\n"
        "def ring():\n"
        "    loss = lambda x: ((x**2).sum() - 1) ** 2\n"
        "    return Problem('ring', loss, 2, torch.zeros(2, dtype=torch.float64))\n"
    )
    result = ridgerider("run", "--problem", "ring_problems:ring", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["minima"] and data["stats"]["degenerate"] == 0
    for minimum in data["minima"]:
        assert minimum["loss"] == pytest.approx(0.0, abs=1e-12)
        assert sum(v * v for v in minimum["theta"]) == pytest.approx(1.0, abs=1e-6)


def test_a_point_whose_evaluation_fails_is_kept_and_reported(tmp_path):
    """Himmelblau with a behaviour metric that raises west of x = 0: the two western minima are
    kept as points without their evaluation, counted, and named in the report with their error,
    where they disappeared without a word."""
    (tmp_path / "failing_problems.py").write_text(
        textwrap.dedent(
            """
            from dataclasses import replace

            from ridgerider.problems.classic import himmelblau

            def behaviour(theta):
                if theta[0] < 0:
                    raise ValueError("no metric west of x = 0")
                return {"x": float(theta[0])}

            def west_fails():
                return replace(himmelblau(), behaviour=behaviour)
            """
        )
    )
    result = ridgerider("run", "--problem", "failing_problems:west_fails", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stdout.split())
    assert "2 distinct minima" in said
    assert re.search(
        r"2 points' evaluation or expansion failed, each kept without it; node \d+: "
        r"ValueError: no metric west of x = 0",
        said,
    )
    status = ridgerider("status", "1", cwd=tmp_path)
    assert "2 points failed" in " ".join(status.stdout.split())
    again = ridgerider("run", "--problem", "failing_problems:west_fails", "--json", cwd=tmp_path)
    document = json.loads(again.stdout)
    assert document["stats"]["failed_points"] == 2 and len(document["minima"]) == 2
    assert [point["error"] for point in document["failed_points"]] == [
        "ValueError: no metric west of x = 0"
    ] * 2


def test_user_problems_from_a_function_and_a_module(tmp_path):
    (tmp_path / "user_problems.py").write_text(USER_PROBLEMS)
    env = {"PYTHONPATH": str(tmp_path)}
    # from the module's own folder, as the README shows it: no PYTHONPATH needed
    result = ridgerider("run", "--problem", "user_problems:camel:scale=2.0", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    minima = json.loads(result.stdout)["minima"]
    # All six minima of the six-hump camel, in symmetric pairs, from (0, 0): the two global
    # ones the rides reach, the four others over the saddles around them (climbs)
    losses = sorted(m["loss"] / 2 for m in minima)
    assert losses == pytest.approx(
        [-1.031628, -1.031628, -0.215464, -0.215464, 2.104250, 2.104250], abs=1e-5
    )
    listed = ridgerider("jobs", cwd=tmp_path)
    assert "user_problems:camel:scale=2.0" in listed.stdout  # not an emoji code

    spec = tmp_path / "spec.json"
    spec.write_text('{"max_nodes": 6}')
    result = ridgerider(
        "run",
        "--problem",
        "user_problems:tiny_net",
        "--spec",
        str(spec),
        "--json",
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["spec"]["settle"] == "auto" and data["stats"]["nodes"] <= 6
    assert data["minima"], "the tiny net's search reached minima"
    for minimum in data["minima"]:
        assert minimum["grad_norm"] < 1e-6
        assert 0.5 <= minimum["metrics"]["test_accuracy"] <= 1.0


def test_bad_specs_and_problems_are_clear_errors(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text('problem = "himmelblau"\nmax_nodes = 0\ncolour = "red"\n')
    result = ridgerider("run", "--spec", str(spec), cwd=tmp_path)
    assert result.returncode == 2
    assert "max_nodes: Input should be greater than or equal to 1" in result.stderr
    assert "colour: Extra inputs are not permitted" in result.stderr

    result = ridgerider("run", "--problem", "rosenbrock", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown problem 'rosenbrock'" in result.stderr and "himmelblau" in result.stderr

    result = ridgerider("run", "--problem", "lever-game:levers=40", cwd=tmp_path)
    assert result.returncode == 2
    assert "levers must be an integer in [2, 32], got 40" in result.stderr
    assert not (tmp_path / "ridgerider.db").exists()  # nothing is stored for a bad request


def test_problems_lists_the_parameters_and_their_ranges(tmp_path):
    result = ridgerider("problems", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for text in ("tree-mdp", "depth", "[4, 10]", "colored-mnist", "label_noise", "[0, 0.5]"):
        assert text in result.stdout
    for name in ("himmelblau", "six-hump-camel", "monkey-saddle", "cubic-valley"):
        assert re.search(rf"{name} .*no parameters", result.stdout), name


BROKEN_PROBLEMS = textwrap.dedent(
    """
    import torch

    from ridgerider.problems.base import Problem


    def vector():
        return Problem("vector", lambda t: (t**2 - 1) ** 2, 2, torch.zeros(2, dtype=torch.float64))


    def not_finite():
        return Problem("not-finite", lambda t: torch.log(t).sum(), 2, torch.zeros(2).double())
    """
)


@pytest.mark.parametrize(
    ("factory", "error"),
    [
        ("vector", "'vector' must return a scalar (0-dimensional) tensor; at the start"),
        ("not_finite", "the loss of 'not-finite' is not finite at the start: -inf"),
    ],
)
def test_a_loss_that_is_no_finite_scalar_at_the_start_fails_its_job(tmp_path, factory, error):
    (tmp_path / "broken.py").write_text(BROKEN_PROBLEMS)
    result = ridgerider("run", "--problem", f"broken:{factory}", cwd=tmp_path)
    assert result.returncode == 2
    assert error in result.stderr and "Traceback" not in result.stderr
    job = json.loads(ridgerider("jobs", "--format", "json", cwd=tmp_path).stdout)[0]
    assert job["status"] == "failed" and error in job["error"]
