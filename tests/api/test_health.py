"""`/healthz` through the ASGI app: a database that answers reads but takes no writes (a
replica, a read-only file) is reported unhealthy, as it would fail every job."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import create_engine, text

from api.app import create_app
from api.deps import Services
from storage.artifacts import LocalArtifactStore
from storage.database import Database
from storage.schema import ensure_schema
from tests.conftest import postgres_database
from tests.workers.pool import pool
from workers.pool import Pool
from workers.settings import load_settings


def health(db: Database, store: LocalArtifactStore, broker_url: str) -> httpx.Response:
    settings = load_settings(broker_url=broker_url)
    app = create_app(Services(settings, db, store, Pool(settings)))

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/healthz")

    return asyncio.run(get())


def test_a_read_only_database_is_unhealthy(tmp_path):
    store = LocalArtifactStore(tmp_path / "artifacts")
    with pool(tmp_path, workers=0) as (running, _), postgres_database() as url:
        db = Database(url)
        ensure_schema(db)
        writable = health(db, store, running.broker_url)
        db.dispose()
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            name = connection.scalar(text("SELECT current_database()"))
            connection.execute(
                text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
            )
        admin.dispose()
        replica = Database(url)
        read_only = health(replica, store, running.broker_url)
        replica.dispose()
    assert writable.status_code == 200 and writable.json() == {"database": "ok", "broker": "ok"}
    assert read_only.status_code == 503
    assert read_only.json()["database"].startswith("not writable")
    assert read_only.json()["broker"] == "ok"
