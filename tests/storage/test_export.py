"""A real search's solutions back out of storage, on both engines: loaded as models, and
exported as a folder whose every part opens (GraphML in networkx, safetensors with their hashes,
a card that renders, PNG plots of real size)."""

from __future__ import annotations

import hashlib
import json
import tarfile

import networkx as nx
import numpy as np
import pytest
import torch
from matplotlib import image
from safetensors.torch import load_file
from sqlalchemy import func, select

from ridgerider.problems.registry import load
from ridgerider.search import SearchSpec
from storage.artifacts import CorruptArtifactError
from storage.export import disagreement_matrix, export
from storage.jobs import create_job
from storage.models import Node, Ride, Solution
from storage.queries import solutions_page
from storage.solutions import SolutionNotFoundError, load_model, load_theta
from workers.local import run_job

PROBLEM = "tests.problems:three_class_net"


def corrupt(path):
    """Flip a bit in the middle of a stored file, so that its sha256 no longer matches."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


@pytest.fixture
def job(db, store):
    with db.session() as session:
        spec = SearchSpec(problem=PROBLEM, max_nodes=30, max_depth=4)
        job_id = create_job(session, spec.model_dump()).id
    run_job(db, store, job_id)
    return job_id


def test_a_stored_solution_loads_as_a_ready_model_in_one_call(db, store, job):
    problem = load(PROBLEM)
    with db.session(readonly=True) as session:
        row = solutions_page(session, job, sort="-test_accuracy", limit=1).items[0]
        predictions = session.scalar(select(Solution.predictions).where(Solution.id == row.id))
    model = load_model(db, store, row.id)
    inputs, labels = problem.splits["test"]
    with torch.no_grad():
        predicted = model(inputs).argmax(1)
    assert not model.training
    assert (predicted == labels).double().mean().item() == row.metrics["test_accuracy"]
    assert np.array_equal(predicted.numpy(), np.frombuffer(predictions, np.int16))
    theta = load_theta(db, store, row.id)
    assert problem.loss(theta).item() == pytest.approx(row.metrics["loss"], rel=1e-12)
    with pytest.raises(SolutionNotFoundError):
        load_model(db, store, row.id, owner="someone-else")


def test_a_corrupted_weight_file_is_refused_when_loaded(db, store, job):
    with db.session(readonly=True) as session:
        solution = session.scalars(select(Solution).where(Solution.job_id == job)).first()
    corrupt(store.path(solution.weights_sha256))
    with pytest.raises(CorruptArtifactError, match="is corrupt"):
        load_theta(db, store, solution.id)


def test_the_export_opens_everywhere(db, store, job, tmp_path):
    problem = load(PROBLEM)
    with db.session(readonly=True) as session:
        nodes = session.scalar(select(func.count()).where(Node.job_id == job))
        rides = session.scalar(select(func.count()).where(Ride.job_id == job, Ride.state == "done"))
        solutions = session.scalar(select(func.count()).where(Solution.job_id == job))
    assert solutions >= 2
    destination = export(db, store, job, tmp_path / "set", problem)
    graph = nx.read_graphml(destination / "lineage.graphml")
    assert graph.number_of_nodes() == nodes and graph.number_of_edges() == rides
    kinds = nx.get_node_attributes(graph, "kind")
    assert sorted(kinds.values()).count("minimum") == solutions
    fingerprints = nx.get_node_attributes(graph, "fingerprint")
    assert sorted(fingerprints.values())[:2] == ["", "0+"]  # the start, and its first ride
    sums = (destination / "weights" / "SHA256SUMS").read_text().splitlines()
    assert len(sums) == solutions
    for line in sums:
        digest, name = line.split("  ")
        path = destination / "weights" / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
        assert load_file(path)["theta"].shape == (problem.dim,)
    csv_lines = (destination / "metrics.csv").read_text().splitlines()
    assert len(csv_lines) == solutions + 1 and "test_accuracy" in csv_lines[0]
    assert "fingerprint" in csv_lines[0]
    card = (destination / "MODEL_CARD.md").read_text()
    assert card.startswith(f"# Model card: ridgerider job {job}, three-class-net")
    assert card.count("\n| ") == solutions + 1  # the metrics table: header and solutions
    assert "ensemble test accuracy" in card and f'"problem": "{PROBLEM}"' in card
    for name in ("ride_tree", "pareto", "disagreement", "per_class_accuracy"):
        png = destination / "plots" / f"{name}.png"
        assert f"](plots/{name}.png)" in card
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        pixels = image.imread(png)
        assert pixels.shape[0] > 300 and pixels.std() > 0.05  # drawn, not blank
    lineage = json.loads((destination / "lineage.json").read_text())
    assert nx.node_link_graph(lineage, edges="edges").number_of_edges() == rides


def test_an_export_leaves_no_temporary_files_whether_it_succeeds_or_fails(
    db, store, job, tmp_path, scratch
):
    written = export(db, store, job, tmp_path / "set.tar.gz")
    with tarfile.open(written) as archive:
        assert "set/weights/SHA256SUMS" in archive.getnames()
    assert list(scratch.iterdir()) == []
    dangling = tmp_path / "link.tar.gz"  # taken, though exists() says not: found at the end
    dangling.symlink_to(tmp_path / "elsewhere.tar.gz")
    with pytest.raises(FileExistsError):
        export(db, store, job, dangling)
    assert list(scratch.iterdir()) == [] and not (tmp_path / "elsewhere.tar.gz").exists()
    assert dangling.is_symlink()
    with db.session(readonly=True) as session:
        digests = session.scalars(select(Solution.weights_sha256).where(Solution.job_id == job))
        corrupt(store.path(digests.first()))
    with pytest.raises(CorruptArtifactError, match="is corrupt"):
        export(db, store, job, tmp_path / "corrupt")
    assert list(scratch.iterdir()) == [] and not (tmp_path / "corrupt").exists()


def test_an_export_refuses_a_taken_or_impossible_destination_up_front(
    db, store, job, tmp_path, scratch
):
    (tmp_path / "folder.tar.gz").mkdir()
    with pytest.raises(FileExistsError, match=r"folder\.tar\.gz already exists"):
        export(db, store, job, tmp_path / "folder.tar.gz")
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="file is a file, not a folder"):
        export(db, store, job, tmp_path / "file" / "set.tar.gz")
    assert list(scratch.iterdir()) == []


def test_the_disagreement_matrix_counts_differing_predictions_pair_by_pair():
    predictions = np.array([[0, 1, 2, 3], [0, 1, 2, 0], [1, 0, 2, 0]], dtype=np.int16)
    expected = np.array([[0, 1, 3], [1, 0, 2], [3, 2, 0]]) / 4
    np.testing.assert_array_equal(disagreement_matrix(predictions), expected)
