"""What the server keeps between requests, keyed by a job's record counter (which every record
bumps): rendered solution pages and progress counts are computed again only once the job has
recorded something since, or once their entry is evicted (least recently used first). Each
server process keeps its own."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Value = TypeVar("Value")
PAGE_BYTES = 64 * 1024 * 1024
PROGRESS_ENTRIES = 4096


class LruCache(Generic[Value]):
    """Values by key, at most `max_size` of them in all as `size` measures them."""

    def __init__(self, max_size: int, size: Callable[[Value], int] = lambda _: 1) -> None:
        self.max_size, self._size = max_size, size
        self._values: OrderedDict[Hashable, Value] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Value | None:
        with self._lock:
            value = self._values.get(key)
            if value is not None:
                self._values.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Value) -> None:
        size = self._size(value)
        if size > self.max_size:
            return
        with self._lock:
            if key in self._values:
                self._used -= self._size(self._values.pop(key))
            self._values[key] = value
            self._used += size
            while self._used > self.max_size:
                _, evicted = self._values.popitem(last=False)
                self._used -= self._size(evicted)


def page_cache() -> LruCache[bytes]:
    """Response bodies, up to 64 MiB of them."""
    return LruCache(PAGE_BYTES, len)


def progress_cache() -> LruCache[dict[str, int]]:
    """Progress counts of up to 4096 job versions."""
    return LruCache(PROGRESS_ENTRIES)


def etag(key: Hashable) -> str:
    """A strong ETag for the body a key names (the key holds the job's record counter)."""
    return '"' + hashlib.sha256(repr(key).encode()).hexdigest()[:32] + '"'
