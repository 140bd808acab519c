"""The schema's version: Alembic migrations shipped in the package, under a version table of our
own name so that the database can be shared with other tools."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from storage.database import Database

VERSION_TABLE = "ridgerider_alembic_version"
MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaOutdatedError(RuntimeError):
    """The database's schema is not the one this version of ridgerider needs."""


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the package ships no migrations"
    return head


def current_revision(db: Database) -> str | None:
    """The revision the database is at, or None for a database Alembic never touched."""
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def upgrade(db: Database, revision: str = "head") -> None:
    """Apply every migration up to `revision` (idempotent)."""
    _migrate(db, command.upgrade, revision)


def downgrade(db: Database, revision: str) -> None:
    """Undo the migrations after `revision`."""
    _migrate(db, command.downgrade, revision)


def _migrate(db: Database, step: Callable[[Config, str], None], revision: str) -> None:
    """Run an Alembic command in one transaction. SQLite's foreign keys are off meanwhile: batch
    mode rebuilds a table by dropping it, and that must not cascade into the rows that refer to
    it (the pragma only takes effect outside a transaction)."""
    config = alembic_config()
    with db.engine.connect() as connection:
        driver = connection.connection.driver_connection
        if db.is_sqlite:
            driver.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                step(config, revision)
        finally:
            if db.is_sqlite:
                driver.execute("PRAGMA foreign_keys=ON")


def ensure_schema(db: Database, *, create: bool = True) -> None:
    """Check that the database is at the head revision; an empty database is created there when
    `create` is set (the embedded default needs no set-up step).

    Raises:
        SchemaOutdatedError: the database is at another revision, or holds tables but no
            version, and names the command that fixes it.
    """
    current, head = current_revision(db), head_revision()
    if current == head:
        return
    url = db.url.render_as_string(hide_password=True)
    if current is None:
        if inspect(db.engine).get_table_names():
            raise SchemaOutdatedError(
                f"the database at {url} has tables but no ridgerider schema version "
                f"(table {VERSION_TABLE}); point --db at an empty database or a ridgerider one"
            )
        if create:
            upgrade(db)
            return
    raise SchemaOutdatedError(
        f"the database at {url} is at schema revision {current or 'none'}, this ridgerider "
        f"needs {head}: run `ridgerider db upgrade --db {url}`"
    )
