"""Alembic owns the schema: migrations from an empty database on both engines, our own version
table, and a clear error (naming the command) against an old schema."""

from __future__ import annotations

import json

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from ridgerider.search import SearchSpec
from storage.artifacts import LocalArtifactStore
from storage.database import Database
from storage.jobs import create_job
from storage.models import Base
from storage.schema import (
    VERSION_TABLE,
    SchemaOutdatedError,
    current_revision,
    downgrade,
    ensure_schema,
    head_revision,
    upgrade,
)
from storage.synthetic import synthetic_job
from tests.conftest import ENGINES, postgres_database
from workers.local import run_job


@pytest.fixture(params=ENGINES)
def empty_db(request, tmp_path):
    if request.param == "sqlite":
        database = Database(tmp_path / "empty.db")
        yield database
        database.dispose()
    else:
        with postgres_database() as url:
            database = Database(url)
            yield database
            database.dispose()


def test_migrations_from_empty_build_exactly_the_models(empty_db):
    assert current_revision(empty_db) is None
    upgrade(empty_db)
    assert current_revision(empty_db) == head_revision()
    tables = set(inspect(empty_db.engine).get_table_names())
    assert {"jobs", "nodes", "rides", "solutions", "metrics", "pair_metrics", "api_keys"} <= tables
    assert VERSION_TABLE in tables and "alembic_version" not in tables
    with empty_db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        assert compare_metadata(context, Base.metadata) == []
    upgrade(empty_db)  # a second upgrade is a no-op
    assert current_revision(empty_db) == head_revision()


def test_an_empty_database_is_created_and_an_old_one_is_refused(empty_db):
    ensure_schema(empty_db)
    assert current_revision(empty_db) == head_revision()
    with empty_db.engine.begin() as connection:
        connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '0000'"))
    with pytest.raises(SchemaOutdatedError, match="run `ridgerider db upgrade --db "):
        ensure_schema(empty_db)


def test_a_foreign_database_is_not_touched(empty_db):
    with empty_db.engine.begin() as connection:
        connection.execute(text("CREATE TABLE someone_elses (id INTEGER PRIMARY KEY)"))
    with pytest.raises(SchemaOutdatedError, match="has tables but no ridgerider schema"):
        ensure_schema(empty_db)
    assert set(inspect(empty_db.engine).get_table_names()) == {"someone_elses"}


def test_upgrade_to_0003_fills_each_solutions_metrics_json_from_the_metrics_table(empty_db):
    upgrade(empty_db)
    _, metrics = synthetic_job(empty_db, 5)
    downgrade(empty_db, "0002")
    assert "metrics_json" not in {
        c["name"] for c in inspect(empty_db.engine).get_columns("solutions")
    }
    upgrade(empty_db)
    with empty_db.engine.connect() as connection:
        rows = connection.execute(text("SELECT id, metrics_json FROM solutions")).all()
    assert {i: json.loads(text_) for i, text_ in rows} == metrics  # every float exact


def test_upgrade_to_0004_gives_every_node_its_path_from_the_rides(empty_db, tmp_path):
    upgrade(empty_db)
    store = LocalArtifactStore(tmp_path / "artifacts")
    with empty_db.session() as session:
        job_id = create_job(session, SearchSpec(problem="styblinski-tang:dim=2").model_dump()).id
    run_job(empty_db, store, job_id)
    query = text("SELECT id, path FROM nodes ORDER BY id")
    with empty_db.engine.connect() as connection:
        paths = dict(connection.execute(query).all())
    assert len(paths) == 9 and sorted(paths.values())[:2] == ["", "0+"]
    downgrade(empty_db, "0003")
    assert "path" not in {c["name"] for c in inspect(empty_db.engine).get_columns("nodes")}
    upgrade(empty_db)
    with empty_db.engine.connect() as connection:
        assert dict(connection.execute(query).all()) == paths
