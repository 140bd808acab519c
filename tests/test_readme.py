"""The README's user-problem examples run as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.api.test_cli import ridgerider

README = (Path(__file__).parent.parent / "README.md").read_text()


def example(marker: str) -> str:
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if marker in b]
    return block


def test_readme_examples_fit_in_about_20_lines():
    for marker in ("def camel", "def tiny_net"):
        assert len(example(marker).strip().splitlines()) <= 22


def test_readme_user_problems_run(tmp_path):
    (tmp_path / "my_problems.py").write_text(example("def camel"))
    (tmp_path / "my_net.py").write_text(example("def tiny_net"))
    (tmp_path / "spec.json").write_text('{"max_nodes": 6}')
    env = {"PYTHONPATH": str(tmp_path)}
    result = ridgerider(
        "run", "--problem", "my_problems:camel:scale=2", "--json", env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["minima"]) == 6  # the six-hump camel's six minima
    spec = str(tmp_path / "spec.json")
    result = ridgerider(
        "run", "--problem", "my_net:tiny_net", "--spec", spec, "--json", env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    minima = json.loads(result.stdout)["minima"]
    assert minima and all(m["metrics"]["test_accuracy"] > 0.5 for m in minima)
