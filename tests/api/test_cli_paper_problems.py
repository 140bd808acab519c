"""The paper's four problems end to end through the command line, on small settings: a search
stored in the embedded database, its solutions' known behaviour, a filter and an export."""

from __future__ import annotations

import json
import tarfile

import pytest

from ridgerider.problems.lever_game import true_payoffs
from ridgerider.problems.tree_mdp import TreeMDP
from tests.api.test_cli import ridgerider

ONE_RIDGE = "max_depth = 1\nridges_per_node = 1\n"
LEAF_TOL = 1e-4  # MNIST's leaves polished to a looser tolerance than the default: a shorter test


def run(tmp_path, problem: str, spec: str) -> dict:
    (tmp_path / "spec.toml").write_text(spec)
    result = ridgerider(
        "run", "--problem", problem, "--spec", "spec.toml", "--json", cwd=tmp_path, timeout=600
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["job"]["status"] == "finished" and document["minima"]
    return document


def filtered(tmp_path, job: int, condition: str) -> list[dict]:
    result = ridgerider(
        "solutions", str(job), "--filter", condition, "--format", "json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["solutions"]


def test_tree_mdp_minima_are_winning_leaves_with_their_exact_rewards(tmp_path):
    document = run(tmp_path, "tree-mdp:depth=4,seed=3", "max_nodes = 8\n")
    mdp = TreeMDP.build(4, 3)
    winners = set(mdp.minimum_leaves())
    for minimum in document["minima"]:
        metrics = minimum["metrics"]
        leaf = int(metrics["leaf"])
        assert leaf in winners, "the greedy leaf of every local minimum is a winner"
        assert metrics["reward"] == pytest.approx(mdp.rewards[leaf].item(), abs=1e-12)
        assert metrics["solution"] == float(leaf in mdp.solutions())
    paying = [m["id"] for m in document["minima"] if m["metrics"]["reward"] > 0]
    assert sorted(s["id"] for s in filtered(tmp_path, 1, "reward > 0")) == sorted(paying)


def test_lever_game_minima_coordinate_on_a_lever_and_earn_its_payoff(tmp_path):
    document = run(tmp_path, "lever-game:levers=2,seed=1", "max_nodes = 8\n")
    payoffs = true_payoffs(2).tolist()
    for minimum in document["minima"]:
        metrics = minimum["metrics"]
        assert metrics["coordinated"] == 1.0 and metrics["lever"] == metrics["lever_b"]
        assert metrics["payoff"] == payoffs[int(metrics["lever"])]
        assert metrics["return"] == pytest.approx(metrics["payoff"], abs=0.05)
    levers = {m["metrics"]["payoff"] for m in document["minima"]}
    assert 0.6 in levers, "the most negative ridge, ridden downhill, lands on the 0.6 lever"


def test_colored_mnist_stores_metrics_per_environment_and_exports(tmp_path):
    spec = ONE_RIDGE + f"leaf_tol = {LEAF_TOL}\n"
    document = run(tmp_path, "colored-mnist:hidden=2,layers=1", spec)
    for minimum in document["minima"]:
        metrics = minimum["metrics"]
        for split in ("train", "val", "env1", "env2", "test"):
            assert 0.0 <= metrics[f"{split}_accuracy"] <= 1.0
        assert metrics["env_gap"] == pytest.approx(
            abs(metrics["env1_accuracy"] - metrics["env2_accuracy"]), abs=1e-12
        )
    best = max(m["metrics"]["val_accuracy"] for m in document["minima"])
    chosen = filtered(tmp_path, 1, f"val_accuracy >= {best - 1e-9}")
    assert chosen and all(s["metrics"]["val_accuracy"] >= best - 1e-9 for s in chosen)
    result = ridgerider(
        "select",
        "1",
        "--filter",
        "val_accuracy > 0.5",
        "--pareto",
        "val_accuracy:max,env_gap:min",
        "--format",
        "json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    front = json.loads(result.stdout)["solutions"]
    assert front and {s["id"] for s in front} <= {m["id"] for m in document["minima"]}
    assert all(s["metrics"]["val_accuracy"] > 0.5 for s in front)
    result = ridgerider(
        "export", "1", "export.tar.gz", "--filter", "val_accuracy > 0", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    with tarfile.open(tmp_path / "export.tar.gz") as archive:
        assert any(name.endswith("MODEL_CARD.md") for name in archive.getnames())


def test_mnist_mlp_runs_from_its_maximally_invariant_saddle(tmp_path):
    spec = ONE_RIDGE + f"max_nodes = 2\nleaf_tol = {LEAF_TOL}\n"
    document = run(tmp_path, "mnist-mlp:hidden=2,layers=1", spec)
    root = next(n for n in document["graph"]["nodes"] if n["fingerprint"] == "")
    assert root["kind"] == "saddle" and root["index"] >= 1
    for minimum in document["minima"]:
        metrics = minimum["metrics"]
        # a practical minimum: its gradient's largest entry within LEAF_TOL * max(1, |loss|)
        # (at most ln 10 < 2.5 where its descent began) of the 1,600 parameters
        assert minimum["grad_norm"] <= LEAF_TOL * 2.5 * 1600**0.5
        assert minimum["index"] == 0
        assert 0.1 < metrics["test_accuracy"] <= 1.0
        assert {f"class_{c}_accuracy" for c in range(10)} <= set(metrics)
