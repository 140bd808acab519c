"""Persistence: database models and the artifact store (filled in by the storage issue)."""
