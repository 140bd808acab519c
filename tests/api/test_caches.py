"""The caches keep the most recently used values within their size, and ETags name keys."""

from __future__ import annotations

from api.caches import LruCache, etag


def test_the_least_recently_used_values_go_first_past_the_size():
    cache = LruCache(10, len)
    cache.put("a", b"1234")
    cache.put("b", b"5678")
    assert cache.get("a") == b"1234"  # now b is the least recently used
    cache.put("c", b"90ab")
    assert cache.get("b") is None
    assert cache.get("a") == b"1234" and cache.get("c") == b"90ab"
    cache.put("a", b"12")  # a replaced value counts at its new size
    cache.put("d", b"cdef")
    assert cache.get("a") == b"12" and cache.get("c") == b"90ab" and cache.get("d") == b"cdef"


def test_a_value_larger_than_the_cache_is_not_kept_and_entries_count_one_by_default():
    cache = LruCache(4, len)
    cache.put("small", b"12")
    cache.put("large", b"12345")
    assert cache.get("large") is None and cache.get("small") == b"12"
    counted = LruCache(2)
    for key in "abc":
        counted.put(key, {"nodes": 1})
    assert counted.get("a") is None and counted.get("c") == {"nodes": 1}


def test_etags_are_quoted_stable_and_differ_by_key():
    key = (1, 7, "loss < 1", "id", 50, None)
    assert etag(key) == etag(tuple(key)) and etag(key).startswith('"') and etag(key).endswith('"')
    assert etag(key) != etag((1, 8, "loss < 1", "id", 50, None))
