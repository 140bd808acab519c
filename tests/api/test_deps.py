"""The key cache: owners of keys seen lately, forgotten after their time or past the size."""

from __future__ import annotations

import time

from api.deps import KeyCache


def test_a_key_is_remembered_for_its_time_only():
    cache = KeyCache(seconds=0.2)
    cache.put("digest", "alice")
    assert cache.get("digest") == "alice"
    assert cache.get("other") is None
    time.sleep(0.3)
    assert cache.get("digest") is None


def test_the_least_recently_used_key_goes_first_past_the_size():
    cache = KeyCache(seconds=60, size=2)
    cache.put("a", "alice")
    cache.put("b", "bob")
    assert cache.get("a") == "alice"
    cache.put("c", "carol")
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == ("alice", "carol")
