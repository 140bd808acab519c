"""Dependencies of the routes: the services the app was made with, and the caller's identity."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.problems_json import ProblemError
from storage.artifacts import ArtifactStore
from storage.database import Database
from storage.keys import owner_of

BEARER = HTTPBearer(auto_error=False, description="an API key: `ridgerider keys create NAME`")
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False)


@dataclass(frozen=True)
class Services:
    """What the app talks to: the database, the artifact store, and the pool's task module
    (`workers.tasks`), which it only asks to enqueue."""

    db: Database
    store: ArtifactStore
    pool: ModuleType
    broker_url: str


def services(request: Request) -> Services:
    return request.app.state.services


def owner(
    services: Annotated[Services, Depends(services)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    api_key: Annotated[str | None, Depends(API_KEY)],
) -> str:
    """The name of the caller's API key (`Authorization: Bearer KEY` or `X-API-Key: KEY`)."""
    key = (bearer.credentials if bearer else None) or api_key
    challenge = {"WWW-Authenticate": 'Bearer realm="ridgerider"'}
    if not key:
        raise ProblemError(401, "Unauthorized", "an API key is required", headers=challenge)
    with services.db.session(readonly=True) as session:
        name = owner_of(session, key)
    if name is None:
        raise ProblemError(401, "Unauthorized", "the API key is not valid", headers=challenge)
    return name


ServicesDep = Annotated[Services, Depends(services)]
OwnerDep = Annotated[str, Depends(owner)]
