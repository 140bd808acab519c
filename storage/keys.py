"""API keys: made once, shown once, stored as their sha256; a key's name owns its jobs."""

from __future__ import annotations

import hashlib
import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import ApiKey, utcnow

PREFIX = "rr_"
KEY_CACHE_SECONDS = 10.0  # how long a server may still accept a key after it is revoked
LOCAL_OWNER = "local"  # owns the jobs run on the command line, for the local dashboard
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")


class KeyNameError(ValueError):
    """A key name that is taken or malformed."""


def key_digest(key: str) -> str:
    """What is stored of a key: its sha256 (hex)."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, name: str, *, local: bool = False) -> str:
    """A new key for `name` (letters, digits, `_.@-`, up to 100); returns the key itself, which
    is not stored and cannot be shown again. A name whose key was revoked gets a new one (the
    name keeps its jobs). `LOCAL_OWNER`'s key, which sees the command line's jobs, is made only
    by `ridgerider dashboard` (`local`).

    Raises:
        KeyNameError: the name is malformed, reserved, or already has a valid key.
    """
    if not NAME.match(name):
        raise KeyNameError(f"key name {name!r}: use 1-100 letters, digits and _.@- characters")
    if name == LOCAL_OWNER and not local:
        raise KeyNameError(
            f"key name {name!r} is reserved: it owns the command line's jobs "
            "(`ridgerider dashboard` makes its key)"
        )
    found = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if found is not None and not found.revoked:
        raise KeyNameError(f"key name {name!r} is taken")
    key = PREFIX + secrets.token_urlsafe(32)
    row = found or ApiKey(name=name)
    row.key_sha256, row.prefix, row.revoked, row.created_at = (
        key_digest(key),
        key[:8],
        False,
        utcnow(),
    )
    session.add(row)
    session.flush()
    return key


def revoke_key(session: Session, name: str) -> bool:
    """Revoke the key of `name`; False if it has no valid key."""
    found = session.scalar(select(ApiKey).where(ApiKey.name == name, ApiKey.revoked.is_(False)))
    if found is not None:
        found.revoked = True
    return found is not None


def list_keys(session: Session) -> list[ApiKey]:
    """Every key, by name: its first characters, when it was made, whether it is revoked."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.name)))


def owner_of_digest(session: Session, digest: str) -> str | None:
    """The name the key with sha256 `digest` belongs to, or None for an unknown or revoked key."""
    return session.scalar(
        select(ApiKey.name).where(ApiKey.key_sha256 == digest, ApiKey.revoked.is_(False))
    )


def has_keys(session: Session) -> bool:
    return session.scalar(select(ApiKey.id).where(ApiKey.revoked.is_(False)).limit(1)) is not None
