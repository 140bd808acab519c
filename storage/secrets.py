"""The service's secrets, kept in its database (made by the migration that added them) so that
every process of a server, and the CLI on the same database, use the same key."""

from __future__ import annotations

import hashlib
import hmac

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import ServiceSecret

CURSOR = "cursor"
INSTANCE = "instance"  # names this database where other systems keep our ids (MLflow tags)
_cache: dict[str, bytes] = {}


def service_secret(session: Session, name: str) -> bytes:
    """The secret `name` of the database `session` is bound to (read once per process)."""
    key = f"{session.get_bind().engine.url!r}/{name}"
    if key not in _cache:
        value = session.scalar(select(ServiceSecret.value).where(ServiceSecret.name == name))
        if value is None:
            raise LookupError(f"the database has no secret {name!r}: run `ridgerider db upgrade`")
        _cache[key] = bytes(value)
    return _cache[key]


def sign(secret: bytes, message: bytes) -> str:
    """An HMAC-SHA256 tag of `message`, hex."""
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def verify(secret: bytes, message: bytes, tag: str) -> bool:
    return hmac.compare_digest(sign(secret, message), tag)
