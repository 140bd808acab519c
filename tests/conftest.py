"""Test-session wiring: CUDA tests are collected only where CUDA exists; databases on both
engines (SQLite in a temporary folder, PostgreSQL in a database created for the session and
dropped after). A missing PostgreSQL fails the tests that need it: it is never skipped."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from storage.artifacts import LocalArtifactStore
from storage.database import Database
from storage.schema import ensure_schema

CUDA = torch.cuda.is_available()
collect_ignore_glob = [] if CUDA else ["**/*_cuda.py"]
POSTGRES_ADMIN_URL = os.environ.get(
    "RIDGERIDER_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
ENGINES = ("sqlite", "postgresql")
REPOSITORY = Path(__file__).parent.parent


def pytest_configure() -> None:
    """One torch thread in the test process: its models are small, and the worker processes
    and servers some tests start share the cores (two threads spinning on busy cores made a
    search 20x slower). The determinism tests set two threads themselves."""
    torch.set_num_threads(1)


def pytest_report_header() -> str:
    if CUDA:
        return f"CUDA: {torch.cuda.get_device_name()} (CUDA tests collected)"
    return "CUDA: none on this machine, so the *_cuda.py tests are not collected"


@contextmanager
def postgres_database(prefix: str = "ridgerider_test") -> Iterator[str]:
    """A new, empty PostgreSQL database for the block (named `prefix`_ and a random suffix);
    its URL. Dropped after."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # any connection failure: say what is needed
        admin.dispose()
        raise RuntimeError(
            f"PostgreSQL is needed at {POSTGRES_ADMIN_URL} (set RIDGERIDER_TEST_POSTGRES): {error}"
        ) from error
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One PostgreSQL database for the session, at the schema's head."""
    with postgres_database() as url:
        db = Database(url)
        ensure_schema(db)
        db.dispose()
        yield url


def database_url(engine: str, folder: Path, postgres_url: str) -> str:
    return f"sqlite:///{folder / 'ridgerider.db'}" if engine == "sqlite" else postgres_url


@pytest.fixture(params=ENGINES)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A database at the schema's head, on each engine in turn."""
    url = (
        request.getfixturevalue("postgres_url")
        if request.param == "postgresql"
        else f"sqlite:///{tmp_path / 'ridgerider.db'}"
    )
    database = Database(url)
    ensure_schema(database)
    yield database
    database.dispose()


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty folder that is this process's temporary folder for the test (`tempfile`
    and, for the processes it starts, TMPDIR): to see what is left behind there."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setenv("TMPDIR", str(folder))
    return folder
