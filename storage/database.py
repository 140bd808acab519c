"""Engines and sessions: SQLite (WAL, busy timeout) embedded by default, PostgreSQL (psycopg 3)
for a worker pool; the URL is given (the service's settings choose it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000
READONLY_OPTION = "ridgerider_readonly"
POSTGRES_POOL_SIZE = 10  # connections kept: an API process serves this many requests at once
POSTGRES_OVERFLOW = 30  # and opens up to this many more under a burst
POSTGRES_CONNECT_TIMEOUT_S = 10  # a database that does not answer is an error, not a hang
POSTGRES_STATEMENT_TIMEOUT_MS = 120_000  # no statement of ours is near this; a stuck one ends


def database_url(url: str | os.PathLike[str]) -> str:
    """`url` with the psycopg 3 driver for PostgreSQL; a bare path is read as an SQLite file."""
    url = os.fspath(url)
    if "://" not in url:
        url = f"sqlite:///{url}"
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str | os.PathLike[str], *, generic_plans: bool = False) -> Engine:
    """An engine for `url` (see `database_url`). SQLite gets WAL, a busy timeout, foreign keys
    and real transactions: BEGIN IMMEDIATE (the write lock, waited for) unless the connection is
    read-only, so that a transaction never fails by upgrading a stale read to a write.

    `generic_plans` makes PostgreSQL plan each prepared statement once, not at every execution:
    for a server, whose few statement shapes run many times (planning the solutions page costs
    ~3 ms, executing it ~0.6 ms). PostgreSQL connections time out after 10 s and statements
    after 120 s."""
    url = database_url(url)
    if not url.startswith("sqlite"):
        options = f"-c statement_timeout={POSTGRES_STATEMENT_TIMEOUT_MS}"
        if generic_plans:
            options += " -c plan_cache_mode=force_generic_plan"
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_size=POSTGRES_POOL_SIZE,
            max_overflow=POSTGRES_OVERFLOW,
            connect_args={"options": options, "connect_timeout": POSTGRES_CONNECT_TIMEOUT_S},
        )
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        readonly = connection.get_execution_options().get(READONLY_OPTION, False)
        connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine


class Database:
    """An engine and its session factory; `session()` is one transaction."""

    def __init__(self, url: str | os.PathLike[str], *, generic_plans: bool = False) -> None:
        self.engine = make_engine(url, generic_plans=generic_plans)
        self.url = self.engine.url
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        readonly = self.engine.execution_options(**{READONLY_OPTION: True})
        if not self.is_sqlite:  # reads need no BEGIN and COMMIT round trips
            readonly = readonly.execution_options(isolation_level="AUTOCOMMIT")
        self._readonly_sessions = sessionmaker(readonly, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """A session whose transaction commits at the end of the block, or rolls back.

        `readonly` sessions do not take SQLite's write lock (WAL readers run beside a writer);
        on PostgreSQL they run in autocommit, each statement on its own snapshot.
        """
        factory = self._readonly_sessions if readonly else self._sessions
        with factory() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
