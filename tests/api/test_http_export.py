"""The export endpoint in-process (no server or pool): it sends the archive, and the temporary
folder it builds that in is gone afterwards, whether the export worked or failed."""

from __future__ import annotations

import io
import tarfile

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.deps import Services
from ridgerider.search import SearchSpec
from storage.jobs import create_job
from storage.keys import create_key
from tests.storage.test_export import corrupt
from workers.local import run_job
from workers.pool import Pool
from workers.settings import load_settings


@pytest.fixture
def served(db, store):
    """A client of the API over a finished himmelblau job of alice's, as alice; the job id."""
    with db.session() as session:
        key = create_key(session, "alice")
        spec = SearchSpec(problem="himmelblau").model_dump()
        job_id = create_job(session, spec, owner="alice").id
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
