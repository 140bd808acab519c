"""The export and ensemble endpoints in-process (no server or pool): the export sends the archive,
and the temporary folder it builds that in is gone afterwards, whether it worked or failed; the
ensemble evaluates the chosen solutions in the export process and refuses ids of no solution."""

from __future__ import annotations

import io
import tarfile
import uuid

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.deps import Services
from ridgerider.search import SearchSpec
from storage.jobs import create_job
from storage.keys import create_key
from storage.queries import solutions_page
from tests.storage.test_export import corrupt
from workers.local import run_job
from workers.pool import Pool
from workers.settings import load_settings


@pytest.fixture
def served(db, store):
    """A client of the API over a finished himmelblau job of a new key's, as that key; the job
    id (the database may be shared by the module's tests)."""
    owner = f"alice-{uuid.uuid4().hex[:8]}"
    with db.session() as session:
        key = create_key(session, owner)
        spec = SearchSpec(problem="himmelblau").model_dump()
        job_id = create_job(session, spec, owner=owner).id
    run_job(db, store, job_id)
    settings = load_settings(broker_url="redis://127.0.0.1:1/0")  # an export enqueues nothing
    app = create_app(Services(settings, db, store, Pool(settings)))
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(app, raise_server_exceptions=False, headers=headers) as http:
        yield http, job_id


def test_an_export_leaves_no_temporary_folder_sent_or_failed(served, store, scratch):
    http, job_id = served
    response = http.get(f"/jobs/{job_id}/export")
    assert response.status_code == 200, response.text
    with tarfile.open(fileobj=io.BytesIO(response.content)) as archive:
        assert f"ridgerider-job-{job_id}/MODEL_CARD.md" in archive.getnames()
    assert list(scratch.iterdir()) == []
    for path in store.root.rglob("*.safetensors"):
        corrupt(path)
    assert http.get(f"/jobs/{job_id}/export").status_code == 500
    assert list(scratch.iterdir()) == []


def test_the_ensemble_of_chosen_solutions_is_computed_off_the_request(served, db):
    http, job_id = served
    with db.session(readonly=True) as session:
        ids = [row.id for row in solutions_page(session, job_id).items]
    answer = http.post(f"/jobs/{job_id}/ensemble", json={"ids": ids})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"set_metrics": {"solutions": float(len(ids))}, "disagreement": []}
    missing = http.post(f"/jobs/{job_id}/ensemble", json={"ids": [ids[0], 999]})
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "ids"
    assert "no solution 999" in missing.json()["detail"]
    too_many = http.post(f"/jobs/{job_id}/ensemble", json={"ids": list(range(1, 22))})
    assert too_many.status_code == 422 and too_many.json()["errors"][0]["field"] == "ids"
