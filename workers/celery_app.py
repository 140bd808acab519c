"""The Celery app: Redis broker, JSON only, late acknowledgement, one message at a time.

Tasks carry ids, never tensors, and no result backend is used: the database is the source of
truth for what was done, so results are never waited for. The app exists at import (tasks are
declared on it) but knows no broker until `configure` gives it the service's settings.
"""

from __future__ import annotations

from celery import Celery

from workers.settings import Settings

DEFAULT_QUEUE = "ridgerider"
GPU_QUEUE = "gpu"

app = Celery("ridgerider", include=["workers.tasks"])


def configure(settings: Settings) -> None:
    """Point the app at `settings`' broker, with their time limits (before its first message);
    again with the same settings, nothing changes.

    Raises:
        RuntimeError: the app serves other settings already (its connections are to them).
    """
    configured = getattr(app, "ridgerider_settings", None)
    if configured == settings:
        return
    if configured is not None:
        raise RuntimeError("this process's Celery app serves another pool's settings")
    app.conf.update(
        broker_url=settings.broker_url,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_default_queue=DEFAULT_QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=settings.task_time_limit * 0.95,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        broker_connection_retry_on_startup=True,
        task_publish_retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    app.ridgerider_settings = settings


def settings() -> Settings:
    """The settings the app was configured with.

    Raises:
        RuntimeError: `configure` was not called in this process.
    """
    configured = getattr(app, "ridgerider_settings", None)
    if configured is None:
        raise RuntimeError("the Celery app is not configured: build a workers.pool.Pool first")
    return configured
