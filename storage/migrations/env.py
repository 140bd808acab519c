"""Alembic's entry: migrations run on the connection `storage.schema` hands over."""

from __future__ import annotations

from alembic import context

from storage.models import Base
from storage.schema import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
