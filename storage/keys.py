"""API keys: made once, shown once, stored as their sha256; a key's name owns its jobs."""

from __future__ import annotations

import hashlib
import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import ApiKey

PREFIX = "rr_"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")


class KeyNameError(ValueError):
    """A key name that is taken or malformed."""


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, name: str) -> str:
    """A new key for `name` (letters, digits, `_.@-`, up to 100); returns the key itself, which
    is not stored and cannot be shown again.

    Raises:
        KeyNameError: the name is malformed or already has a key.
    """
    if not NAME.match(name):
        raise KeyNameError(f"key name {name!r}: use 1-100 letters, digits and _.@- characters")
    if session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
        raise KeyNameError(f"key name {name!r} is taken")
    key = PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(name=name, key_sha256=_digest(key), prefix=key[:8]))
    session.flush()
    return key


def owner_of(session: Session, key: str) -> str | None:
    """The name the key belongs to, or None for an unknown or revoked key."""
    row = session.scalar(
        select(ApiKey).where(ApiKey.key_sha256 == _digest(key), ApiKey.revoked.is_(False))
    )
    return row.name if row else None


def has_keys(session: Session) -> bool:
    return session.scalar(select(ApiKey.id).where(ApiKey.revoked.is_(False)).limit(1)) is not None
