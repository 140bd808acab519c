"""The Celery app: Redis broker, JSON only, late acknowledgement, one message at a time.

Tasks carry ids, never tensors, and no result backend is used: the database is the source of
truth for what was done, so results are never waited for.
"""

from __future__ import annotations

from celery import Celery

from workers.settings import PoolSettings

DEFAULT_QUEUE = "ridgerider"
GPU_QUEUE = "gpu"


def make_app(settings: PoolSettings | None = None) -> Celery:
    settings = settings or PoolSettings.from_env()
    app = Celery("ridgerider", broker=settings.broker_url, include=["workers.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_default_queue=DEFAULT_QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.time_limit,
        task_soft_time_limit=settings.time_limit * 0.95,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        broker_connection_retry_on_startup=True,
        task_publish_retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    app.ridgerider_settings = settings
    return app


app = make_app()
