"""Persistence: SQLAlchemy models, Alembic migrations, the artifact store, queries, selection
and export."""
