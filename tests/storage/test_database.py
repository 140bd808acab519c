"""Engines: PostgreSQL plans a server's statements once when asked; reads run in autocommit."""

from __future__ import annotations

from sqlalchemy import text

from storage.database import POSTGRES_CONNECT_TIMEOUT_S, Database
from tests.conftest import postgres_database


def test_generic_plans_are_set_on_every_postgresql_connection_of_a_server():
    with postgres_database() as url:
        server, worker = Database(url, generic_plans=True), Database(url)
        try:
            with server.session(readonly=True) as session:
                assert session.scalar(text("SHOW plan_cache_mode")) == "force_generic_plan"
            with server.session() as session:
                assert session.scalar(text("SHOW plan_cache_mode")) == "force_generic_plan"
            with worker.session(readonly=True) as session:
                assert session.scalar(text("SHOW plan_cache_mode")) == "auto"
                assert session.connection().connection.driver_connection.autocommit
            with worker.session() as session:
                assert not session.connection().connection.driver_connection.autocommit
        finally:
            server.dispose()
            worker.dispose()


def test_postgresql_statements_and_connections_time_out():
    with postgres_database() as url:
        db = Database(url)
        try:
            with db.session(readonly=True) as session:
                assert session.scalar(text("SHOW statement_timeout")) == "2min"
                params = session.connection().connection.driver_connection.info.get_parameters()
            assert params["connect_timeout"] == str(POSTGRES_CONNECT_TIMEOUT_S)
        finally:
            db.dispose()
