"""What the server keeps between requests, keyed by a job's record counter (which every record
bumps): rendered solution pages and progress counts are computed again only once the job has
recorded something since, or once their entry is evicted (least recently used first). Each
server process keeps its own; the eviction is cachetools', shared by the request threads."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import cachetools

Value = TypeVar("Value")
PAGE_BYTES = 64 * 1024 * 1024
PROGRESS_ENTRIES = 4096


class SharedCache(Generic[Value]):
    """A cachetools cache that a process's threads share: reads and writes take a lock (a read
    reorders an LRU cache). A value larger than the whole cache is not kept."""

    def __init__(self, cache: cachetools.Cache) -> None:
        self._cache = cache
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Value | None:
        with self._lock:
            return self._cache.get(key)

    def put(self, key: Hashable, value: Value) -> None:
        with self._lock:
            try:
                self._cache[key] = value
            except ValueError:  # larger than the cache
                return


class LruCache(SharedCache[Value]):
    """Values by key, at most `max_size` of them in all as `size` measures them (1 each by
    default), the least recently used evicted first."""

    def __init__(self, max_size: int, size: Callable[[Value], int] | None = None) -> None:
        super().__init__(cachetools.LRUCache(max_size, getsizeof=size))


def page_cache() -> LruCache[bytes]:
    """Response bodies, up to 64 MiB of them."""
    return LruCache(PAGE_BYTES, len)


def progress_cache() -> LruCache[dict[str, int]]:
    """Progress counts of up to 4096 job versions."""
    return LruCache(PROGRESS_ENTRIES)


def etag(key: Hashable) -> str:
    """A strong ETag for the body a key names (the key holds the job's record counter)."""
    return '"' + hashlib.sha256(repr(key).encode()).hexdigest()[:32] + '"'
