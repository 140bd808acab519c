"""Execution: Celery tasks and the in-process runner (filled in by the distributed-search issue)."""
