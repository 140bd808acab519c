"""Waiting for a job to change: workers publish on the broker's channel for the job
(`workers.settings.job_channel`), and an event stream sleeps until then instead of polling the
database. A stream still looks now and then (`FALLBACK_SECONDS`): a message can be missed, and
jobs run in-process publish nothing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import redis
import redis.asyncio

from workers.settings import job_channel

FALLBACK_SECONDS = 2.0
log = logging.getLogger(__name__)

Wait = Callable[[float], Awaitable[None]]


@asynccontextmanager
async def job_changes(broker_url: str, job_id: int) -> AsyncIterator[Wait]:
    """A `wait(seconds)` that returns when a worker says the job changed, or after `seconds`
    (at most FALLBACK_SECONDS). Without a broker it just sleeps."""
    client = redis.asyncio.Redis.from_url(broker_url, socket_connect_timeout=2)
    listener = client.pubsub()
    try:
        await listener.subscribe(job_channel(job_id))
    except (redis.RedisError, OSError):
        log.warning("no broker to listen on for job %s: its event stream polls", job_id)
        listener = None

    async def wait(seconds: float) -> None:
        seconds = min(seconds, FALLBACK_SECONDS)
        if listener is None:
            await asyncio.sleep(seconds)
            return
        try:
            if await listener.get_message(ignore_subscribe_messages=True, timeout=seconds):
                while await listener.get_message(ignore_subscribe_messages=True, timeout=0):
                    pass  # one look at the database answers every change so far
        except (redis.RedisError, OSError):
            await asyncio.sleep(seconds)

    try:
        yield wait
    finally:
        if listener is not None:
            await listener.aclose()
        await client.aclose()
