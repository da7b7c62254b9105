"""Content-addressed artifact store: computed once, shared by every trial and node.

An artifact is a directory ``<root>/<kind>/<key>/`` holding ``.npy`` arrays, optional
binary blobs (e.g. a checkpoint) and ``meta.json`` with each file's SHA-256. The key is a
hash of the canonical JSON of the spec that produced it. Writes go to a temporary
directory that is renamed into place, so readers never see half an artifact; a file whose
checksum does not match raises :class:`CorruptArtifactError` naming the path.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1


class CorruptArtifactError(RuntimeError):
    """A cached artifact whose files are missing, unreadable or fail their checksum."""


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no whitespace) used for content addressing."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def content_key(kind: str, spec: Mapping[str, Any]) -> str:
    """``<kind>-<hash>`` of a spec; equal specs give equal keys on every machine."""
    digest = hashlib.sha256(
        canonical_json({"kind": kind, "v": FORMAT_VERSION, "spec": spec}).encode()
    ).hexdigest()
    return f"{kind}-{digest[:20]}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Artifact:
    key: str
    path: Path
    meta: dict[str, Any]

    def array(self, name: str, mmap: bool = False) -> np.ndarray:
        return np.load(self.path / f"{name}.npy", mmap_mode="r" if mmap else None,
                       allow_pickle=False)

    def blob(self, name: str) -> bytes:
        return (self.path / f"{name}.bin").read_bytes()


class ArtifactStore:
    """A directory of content-addressed artifacts."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()

    def path(self, key: str) -> Path:
        return self.root / key.split("-", 1)[0] / key

    def exists(self, key: str) -> bool:
        return (self.path(key) / "meta.json").is_file()

    def save(self, key: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any],
             blobs: Mapping[str, bytes] | None = None) -> Artifact:
        """Write an artifact atomically; an existing complete one is kept as is."""
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
        try:
            files: dict[str, str] = {}
            for name, arr in arrays.items():
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)
                files[f"{name}.npy"] = _sha256(tmp / f"{name}.npy")
            for name, data in (blobs or {}).items():
                (tmp / f"{name}.bin").write_bytes(data)
                files[f"{name}.bin"] = _sha256(tmp / f"{name}.bin")
            full_meta = {"key": key, "format_version": FORMAT_VERSION, "files": files, **meta}
            (tmp / "meta.json").write_text(json.dumps(full_meta, indent=1, default=str))
            try:
                os.rename(tmp, final)
            except OSError:
                if not self.exists(key):  # a leftover partial directory: replace it
                    shutil.rmtree(final, ignore_errors=True)
                    os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return self.load(key)

    def load(self, key: str, verify: bool = True) -> Artifact:
        """Open artifact ``key``, checking every file against its recorded SHA-256."""
        path = self.path(key)
        hint = f"delete {path} to recompute it"
        try:
            meta = json.loads((path / "meta.json").read_text())
        except FileNotFoundError:
            raise CorruptArtifactError(f"artifact {key} has no meta.json at {path}; {hint}") \
                from None
        except (OSError, ValueError) as err:
            raise CorruptArtifactError(f"artifact {key}: unreadable {path / 'meta.json'} "
                                       f"({err}); {hint}") from None
        if verify:
            for name, digest in meta.get("files", {}).items():
                file = path / name
                if not file.is_file():
                    raise CorruptArtifactError(f"artifact {key}: missing file {file}; {hint}")
                if _sha256(file) != digest:
                    raise CorruptArtifactError(
                        f"artifact {key}: {file} fails its checksum (corrupt cache); {hint}")
        return Artifact(key=key, path=path, meta=meta)

    def get_or_compute(
        self, key: str,
        compute: Callable[[], tuple[Mapping[str, np.ndarray], Mapping[str, Any],
                                    Mapping[str, bytes] | None]],
    ) -> tuple[Artifact, bool]:
        """Load ``key`` if cached (verified), else compute and save it; (artifact, computed)."""
        if self.exists(key):
            return self.load(key), False
        arrays, meta, blobs = compute()
        return self.save(key, arrays, meta, blobs), True


def torch_state_bytes(state: Mapping[str, Any]) -> bytes:
    """Serialise a torch state dict to bytes (for :meth:`ArtifactStore.save` blobs)."""
    import torch

    buf = io.BytesIO()
    torch.save(dict(state), buf)
    return buf.getvalue()


def torch_state_from_bytes(data: bytes, device: str = "cpu") -> dict[str, Any]:
    import torch

    return torch.load(io.BytesIO(data), map_location=device, weights_only=True)
