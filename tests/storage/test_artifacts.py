"""The artifact store: content-addressed safetensors, verified on every read."""

from __future__ import annotations

import hashlib

import pytest
import torch

from storage.artifacts import (
    CorruptArtifactError,
    LocalArtifactStore,
    MissingArtifactError,
    get_tensors,
    put_tensors,
)


def test_tensors_round_trip_under_their_sha256(store):
    tensors = {"theta": torch.randn(50, dtype=torch.float64), "k": torch.arange(3)}
    sha256 = put_tensors(store, tensors)
    path = store.path(sha256)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256
    back = get_tensors(store, sha256)
    assert torch.equal(back["theta"], tensors["theta"]) and torch.equal(back["k"], tensors["k"])
    assert put_tensors(store, tensors) == sha256  # the same bytes are one file
    assert len(list(store.root.rglob("*.safetensors"))) == 1


def test_a_corrupted_artifact_is_detected(store):
    sha256 = put_tensors(store, {"theta": torch.ones(10)})
    path = store.path(sha256)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifactError, match=f"expected {sha256}"):
        get_tensors(store, sha256)


def test_missing_and_malformed_references_fail_loudly(tmp_path):
    store = LocalArtifactStore(tmp_path)
    with pytest.raises(MissingArtifactError, match="missing"):
        store.get("0" * 64)
    with pytest.raises(ValueError, match="not a sha256"):
        store.get("../../etc/passwd")
