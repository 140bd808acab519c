"""The in-process runner on a problem that lives on CUDA: its solutions are stored (on the CPU)
and load back as CPU models that compute what the GPU problem does (collected only where CUDA
exists)."""

from __future__ import annotations

import pytest
import torch
from sqlalchemy import select

from ridgerider.problems.registry import load
from ridgerider.search import SearchSpec
from storage.jobs import create_job
from storage.models import Solution
from storage.solutions import load_model, load_theta
from workers.local import run_job

PROBLEM = "digits-mlp:hidden=4,device=cuda"


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_a_cuda_job_stores_solutions_that_load_as_cpu_models(db, store):
    spec = SearchSpec(problem=PROBLEM, max_depth=2, max_nodes=8, ridges_per_node=2)
    with db.session() as session:
        job_id = create_job(session, spec.model_dump()).id
    job = run_job(db, store, job_id)
    assert job.status == "finished"
    with db.session(readonly=True) as session:
        ids = list(session.scalars(select(Solution.id).where(Solution.job_id == job_id)))
    assert ids
    problem = load(PROBLEM)
    inputs = problem.splits["test"][0]
    for solution_id in ids:
        theta = load_theta(db, store, solution_id)
        assert theta.device.type == "cpu"
        model = load_model(db, store, solution_id)
        assert next(model.parameters()).device.type == "cpu"
        with torch.no_grad():
            expected = problem.predict(problem.place(theta), inputs).cpu()
            assert (model(inputs.cpu()) - expected).abs().max().item() < 1e-10
