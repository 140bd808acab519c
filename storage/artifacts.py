"""The artifact store: weights and eigenvectors as safetensors files named by their sha256.

A store only puts and gets bytes by hash (`ArtifactStore`), so that an object store can replace
the local folder without touching callers; every read verifies the hash.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from torch import Tensor


class CorruptArtifactError(RuntimeError):
    """An artifact's bytes do not hash to the name it is stored under (`sha256`)."""

    def __init__(self, message: str, sha256: str) -> None:
        super().__init__(message)
        self.sha256 = sha256

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # across processes, as raised
        return type(self), (str(self), self.sha256)


class MissingArtifactError(FileNotFoundError):
    """No artifact is stored under that hash (`sha256`)."""

    def __init__(self, message: str, sha256: str) -> None:
        super().__init__(message)
        self.sha256 = sha256

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return type(self), (str(self), self.sha256)


class ArtifactStore(Protocol):
    """Bytes addressed by their sha256 (lower-case hex)."""

    def put(self, data: bytes) -> str:
        """Store `data` and return its sha256 (storing the same bytes twice is one file)."""
        ...

    def get(self, sha256: str) -> bytes:
        """The bytes stored under `sha256`, verified.

        Raises:
            MissingArtifactError: nothing is stored under it.
            CorruptArtifactError: the stored bytes hash to something else.
        """
        ...


class LocalArtifactStore:
    """A folder: `<root>/<first two hex digits>/<sha256>.safetensors`, written atomically."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / f"{sha256}.safetensors"

    def put(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.path(sha256)
        if path.exists():
            return sha256
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
        return sha256

    def get(self, sha256: str) -> bytes:
        path = self.path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            message = f"artifact {sha256} is missing from {self.root}"
            raise MissingArtifactError(message, sha256) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise CorruptArtifactError(
                f"artifact {path} is corrupt: its sha256 is {actual}, expected {sha256}", sha256
            )
        return data


def put_tensors(store: ArtifactStore, tensors: dict[str, Tensor]) -> str:
    """Save named tensors as one safetensors artifact; returns its sha256."""
    from safetensors.torch import save as save_safetensors  # torch: only where tensors are

    return store.put(
        save_safetensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    )


def get_tensors(store: ArtifactStore, sha256: str) -> dict[str, Tensor]:
    """The named tensors of a safetensors artifact, verified against its hash (on the CPU)."""
    from safetensors.torch import load as load_safetensors  # torch: only where tensors are

    return load_safetensors(store.get(sha256))
