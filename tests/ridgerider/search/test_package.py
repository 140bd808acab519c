"""The search package's names load their modules on first use: its torch-free modules, and the
JSON shapes storage shares, import alone."""

from __future__ import annotations

import subprocess
import sys

import pytest

import ridgerider.search
from ridgerider.search import archive, memory, spec, steps
from tests.conftest import REPOSITORY


def test_each_name_is_its_module_s():
    assert ridgerider.search.search is memory.search
    assert ridgerider.search.MemoryTree is memory.MemoryTree
    assert ridgerider.search.SearchResult is memory.SearchResult
    assert ridgerider.search.SearchSpec is spec.SearchSpec
    assert ridgerider.search.StartError is steps.StartError
    assert ridgerider.search.find_copy is archive.find_copy
    assert set(ridgerider.search.__all__) <= set(dir(ridgerider.search))
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        ridgerider.search.nothing  # noqa: B018


def test_fingerprints_budgets_and_json_shapes_import_without_torch():
    script = (
        "import sys\n"
        "import ridgerider.json_shapes, ridgerider.search.budget, ridgerider.search.fingerprint\n"
        "print(sorted(name for name in ('torch', 'scipy') if name in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPOSITORY, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
