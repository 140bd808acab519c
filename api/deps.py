"""Dependencies of the routes: the services the app was made with, and the caller's identity.

Both are async and, once a key is known, touch no database and no thread: a sync dependency
costs a hop to the thread pool on every request."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated

import cachetools
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from api.background import BackgroundProcess
from api.caches import LruCache, SharedCache, page_cache, progress_cache
from api.limits import StreamSlots
from api.problems_json import ProblemError
from storage.artifacts import ArtifactStore, LocalArtifactStore
from storage.database import Database
from storage.keys import KEY_CACHE_SECONDS, key_digest, owner_of_digest
from workers.pool import JobPool, Pool
from workers.settings import Settings

BEARER = HTTPBearer(auto_error=False, description="an API key: `ridgerider keys create NAME`")
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False)
KEY_CACHE_SIZE = 1024


class KeyCache(SharedCache[str]):
    """Owners of the keys seen in the last `seconds` (by sha256), so that a request costs no key
    lookup; a revoked key stops working within `seconds`. Unknown keys are not remembered."""

    def __init__(self, seconds: float = KEY_CACHE_SECONDS, size: int = KEY_CACHE_SIZE) -> None:
        super().__init__(cachetools.TTLCache(size, ttl=seconds, timer=time.monotonic))


@dataclass(frozen=True)
class Services:
    """What the app talks to: the database, the artifact store and the worker pool (which it
    only asks to enqueue and cancel), built from `settings`, whose MLflow tracking server
    hand-offs go to (None: this server hands off nothing)."""

    settings: Settings
    db: Database
    store: ArtifactStore
    pool: JobPool
    keys: KeyCache = field(default_factory=KeyCache)
    pages: LruCache[bytes] = field(default_factory=page_cache)
    progress: LruCache[dict[str, int]] = field(default_factory=progress_cache)
    streams: StreamSlots = field(init=False)
    exports: BackgroundProcess = field(init=False)
    handoffs: BackgroundProcess = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "streams", StreamSlots(self.settings))
        waiting = self.settings.exports_waiting
        object.__setattr__(self, "exports", BackgroundProcess("exports", waiting))
        object.__setattr__(self, "handoffs", BackgroundProcess("MLflow hand-offs", waiting))

    @classmethod
    def of(cls, settings: Settings) -> Services:
        """The services `settings` name. PostgreSQL plans a server's statements once per
        connection (see `storage.database.make_engine`)."""
        return cls(
            settings,
            Database(settings.database_url, generic_plans=True),
            LocalArtifactStore(settings.artifacts),
            Pool(settings),
        )


async def services(request: Request) -> Services:
    return request.app.state.services


async def owner(
    services: Annotated[Services, Depends(services)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    api_key: Annotated[str | None, Depends(API_KEY)],
) -> str:
    """The name of the caller's API key (`Authorization: Bearer KEY` or `X-API-Key: KEY`)."""
    key = (bearer.credentials if bearer else None) or api_key
    challenge = {"WWW-Authenticate": 'Bearer realm="ridgerider"'}
    if not key:
        raise ProblemError(401, "Unauthorized", "an API key is required", headers=challenge)
    digest = key_digest(key)
    name = services.keys.get(digest)
    if name is None:
        name = await run_in_threadpool(_look_up, services.db, digest)
        if name is None:
            raise ProblemError(401, "Unauthorized", "the API key is not valid", headers=challenge)
        services.keys.put(digest, name)
    return name


def _look_up(db: Database, digest: str) -> str | None:
    with db.session(readonly=True) as session:
        return owner_of_digest(session, digest)


ServicesDep = Annotated[Services, Depends(services)]
OwnerDep = Annotated[str, Depends(owner)]
