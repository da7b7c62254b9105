"""Content-addressed artifact store on any filesystem (local, NFS, ``s3://…``).

An artifact is a directory ``<root>/<kind>/<key>/`` of ``.npy`` arrays and binary blobs.
The store writes the files first and its commit marker ``_COMMIT.json`` last; the marker
holds each file's SHA-256, computed by the store from the bytes it wrote, and the
artifact's metadata. Anything without a marker is absent (a crashed build is rebuilt,
never read); a marker whose files fail their checksum raises
:class:`CorruptArtifactError` naming the file, and nothing is deleted.

:meth:`ArtifactStore.build_once` makes each artifact exactly once across threads,
processes, drivers and nodes: the builder holds ``_LOCK`` (an exclusive create, kept
alive by a heartbeat: :class:`coretune.storage.locks.Lock`); everyone else waits for the
commit marker, and takes over the lock of a builder that died.

Durability costs one filesystem flush per commit, not a journal commit per file: the files
and the marker are written unsynced (each whole, through a temporary file), one
:meth:`~coretune.storage.Location.sync` makes them durable, and only then is the marker
renamed into place — so a marker never outlives its files. :meth:`ArtifactStore.batch`
commits many artifacts with one flush (a random coreset's build was four fsyncs, most of
its cost).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from coretune.errors import CacheError
from coretune.storage import Location
from coretune.storage.locks import Lock, stale_seconds

COMMIT = "_COMMIT.json"
LOCK = "_LOCK"
STORE_FORMAT = 2


class CorruptArtifactError(CacheError):
    """A committed artifact whose files are missing, unreadable or fail their checksum."""


@dataclass(frozen=True)
class Built:
    """What a compute function returns: arrays, metadata, optional binary blobs."""

    arrays: Mapping[str, np.ndarray]
    meta: Mapping[str, Any]
    blobs: Mapping[str, bytes] | None = None


@dataclass(frozen=True)
class Artifact:
    """A committed artifact: its key, where it lives, its metadata and file checksums."""

    key: str
    location: Location
    meta: dict[str, Any]
    files: dict[str, str]

    @property
    def path(self) -> str:
        return self.location.base

    def has(self, name: str) -> bool:
        return f"{name}.npy" in self.files or f"{name}.bin" in self.files

    def _committed(self, file: str) -> str:
        if file not in self.files:
            raise CorruptArtifactError(f"artifact {self.key}: {file} is not among its committed "
                                       f"files {sorted(self.files)} at {self.path}")
        return file

    def array(self, name: str, mmap: bool = False) -> np.ndarray:
        self._committed(f"{name}.npy")
        if mmap and self.location.is_local:
            return np.load(self.location.path(f"{name}.npy"), mmap_mode="r", allow_pickle=False)
        return np.load(io.BytesIO(self.location.read_bytes(f"{name}.npy")), allow_pickle=False)

    def blob(self, name: str) -> bytes:
        return self.location.read_bytes(self._committed(f"{name}.bin"))


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


class ArtifactStore:
    """A directory of content-addressed artifacts on any ``pyarrow.fs`` filesystem."""

    def __init__(self, root: str | os.PathLike, stale_after: float | None = None):
        """``stale_after``: seconds of a build lock's heartbeat silence before another
        process takes it over (default 120, or ``$CORETUNE_LOCK_STALE_SECONDS``)."""
        self.location = Location(root)
        self.uri = self.location.uri
        self.stale_after = stale_seconds(120.0) if stale_after is None else stale_after

    @property
    def root(self) -> str:
        return self.location.base

    def __reduce__(self):
        return (ArtifactStore, (self.uri, self.stale_after))

    def _dir(self, key: str) -> Location:
        return self.location.child(key.split("-", 1)[0], key)

    def exists(self, key: str) -> bool:
        """Whether ``key`` is committed (its marker is there; files are checked on load)."""
        return self._dir(key).is_file(COMMIT)

    def load(self, key: str, verify: bool = True) -> Artifact:
        """Open committed artifact ``key``, checking every file against its SHA-256."""
        where = self._dir(key)
        hint = f"delete {where.path()} to rebuild it"
        try:
            marker = json.loads(where.read_bytes(COMMIT))
            files, meta = dict(marker["files"]), dict(marker["meta"])
        except FileNotFoundError:
            raise CorruptArtifactError(f"artifact {key} is not committed at {where.path()}") \
                from None
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CorruptArtifactError(f"artifact {key}: unreadable commit marker "
                                       f"{where.path(COMMIT)} ({err}); {hint}") from None
        if marker.get("key") != key:
            raise CorruptArtifactError(f"artifact {key}: {where.path(COMMIT)} belongs to "
                                       f"{marker.get('key')!r}; {hint}")
        if verify:
            for name, digest in files.items():
                try:
                    data = where.read_bytes(name)
                except (FileNotFoundError, OSError):
                    raise CorruptArtifactError(
                        f"artifact {key}: missing file {where.path(name)}; {hint}") from None
                if hashlib.sha256(data).hexdigest() != digest:
                    raise CorruptArtifactError(f"artifact {key}: {where.path(name)} fails its "
                                               f"checksum (corrupt cache); {hint}")
        return Artifact(key=key, location=where, meta=meta, files=files)

    def save(self, key: str, built: Built) -> Artifact:
        """Write the files, then the commit marker with the checksums computed here."""
        where, data, written = self._stage(key, built)
        self.location.sync(written)
        return self._publish(where, data)

    def _stage(self, key: str, built: Built) -> tuple[Location, bytes, list[str]]:
        """Write ``built``'s files unsynced, and locally its marker as ``_COMMIT.json.tmp``
        (a temporary name: a killed build's is removed by the next builder); (where, the
        marker's bytes, the paths written). Nothing is visible until :meth:`_publish`,
        after they are synced."""
        where = self._dir(key)
        files: dict[str, str] = {}
        payloads = {f"{n}.npy": _npy_bytes(a) for n, a in built.arrays.items()}
        payloads |= {f"{n}.bin": bytes(b) for n, b in (built.blobs or {}).items()}
        for name, data in payloads.items():
            where.write_bytes(name, data, sync=False)
            files[name] = hashlib.sha256(data).hexdigest()
        marker = {"key": key, "store_format": STORE_FORMAT, "files": files,
                  "meta": dict(built.meta), "committed_at": datetime.now(UTC).isoformat(),
                  "builder": f"{socket.gethostname()}:{os.getpid()}"}
        data = json.dumps(marker, indent=1, default=str).encode()
        if where.is_local:
            where.write_bytes(COMMIT + ".tmp", data, sync=False)
            payloads[COMMIT + ".tmp"] = data
        return where, data, [where.path(name) for name in payloads]

    def _publish(self, where: Location, data: bytes) -> Artifact:
        """Commit a staged artifact (its files made durable since): the marker appears."""
        if where.is_local:
            where.rename(COMMIT + ".tmp", COMMIT)
        else:  # an object-store PUT is atomic and durable
            where.write_bytes(COMMIT, data)
        return _from_marker(where, data)

    def _lock(self, key: str) -> Lock:
        return Lock(self._dir(key), LOCK, self.stale_after, heartbeat=self.stale_after / 4)

    def _claim(self, key: str, lock: Lock) -> bool:
        """With ``lock`` held: True if ``key`` is still to build (a killed build's
        half-writes removed), else False with the lock released (committed meanwhile)."""
        if self.exists(key):  # committed between our check and our lock
            lock.release()
            return False
        where = self._dir(key)
        for leftover in where.list_files(suffix=".tmp"):  # a killed build's half-writes
            where.delete(leftover)
        return True

    def build_once(self, key: str, compute: Callable[[], Built], poll: float = 0.1
                   ) -> tuple[Artifact, bool]:
        """Load ``key`` if committed, else build it exactly once: (artifact, built_here).

        The builder holds the artifact's lock; others wait for its commit marker (checking
        at most every ``poll`` seconds), and take over if the lock's heartbeat stops or its
        holder's process is gone (a killed builder), or it is released uncommitted.
        """
        lock = self._lock(key)
        delay = min(0.005, poll)
        while True:
            if self.exists(key):
                return self.load(key), False
            if lock.acquire():
                break
            time.sleep(delay)
            delay = min(poll, 2 * delay)
        if not self._claim(key, lock):
            return self.load(key), False
        try:
            return self.save(key, compute()), True
        finally:
            lock.release()

    def batch(self) -> BuildBatch:
        """A :class:`BuildBatch` on this store (a context manager committing at exit)."""
        return BuildBatch(self)


class BuildBatch:
    """Artifacts built one after another and committed together, with one flush.

    :meth:`build_once` is the store's, but a built artifact stays staged, its lock held,
    until :meth:`commit` (called by the caller, and at exit — after an error too: what was
    built before it is kept). It never waits while it holds locks: an artifact another
    builder holds commits the batch first, then waits for it as the store's ``build_once``
    does. A build that reads an artifact still staged here must :meth:`commit` first
    (:attr:`pending` names them).
    """

    def __init__(self, store: ArtifactStore):
        self.store = store
        self.staged: list[tuple[Location, bytes, Lock]] = []
        self.written: list[str] = []
        self.pending: set[str] = set()

    def __enter__(self) -> BuildBatch:
        return self

    def __exit__(self, *exc) -> None:
        self.commit()

    def build_once(self, key: str, compute: Callable[[], Built], poll: float = 0.1
                   ) -> tuple[Artifact, bool]:
        """(artifact, built_here); an artifact built here is committed with the batch."""
        store = self.store
        if key in self.pending:
            raise ValueError(f"artifact {key} is already built in this batch")
        if store.exists(key):
            return store.load(key), False
        lock = store._lock(key)
        if not lock.acquire():  # another builder has it: never wait holding our locks
            self.commit()
            return store.build_once(key, compute, poll)
        if not store._claim(key, lock):
            return store.load(key), False
        try:
            where, data, written = store._stage(key, compute())
        except BaseException:
            lock.release()
            raise
        self.staged.append((where, data, lock))
        self.written += written
        self.pending.add(key)
        return _from_marker(where, data), True

    def commit(self) -> None:
        """Make every staged artifact durable with one flush, publish it, release it."""
        staged, written = self.staged, self.written
        self.staged, self.written, self.pending = [], [], set()
        try:
            if staged:
                self.store.location.sync(written)
                for where, data, _ in staged:
                    self.store._publish(where, data)
        finally:  # in parallel: freeing a flushed lock file's block waits on the disk
            with ThreadPoolExecutor(min(8, len(staged)) or 1) as pool:
                list(pool.map(Lock.release, [lock for _, _, lock in staged]))


def _from_marker(where: Location, data: bytes) -> Artifact:
    """The artifact a commit marker's bytes describe, in ``where``."""
    marker = json.loads(data)
    return Artifact(key=marker["key"], location=where, meta=dict(marker["meta"]),
                    files=dict(marker["files"]))


def torch_state_bytes(state: Mapping[str, Any]) -> bytes:
    """Serialise a torch state dict to bytes (an artifact blob)."""
    import torch

    buf = io.BytesIO()
    torch.save(dict(state), buf)
    return buf.getvalue()


def torch_state_from_bytes(data: bytes, device: str = "cpu") -> dict[str, Any]:
    import torch

    return torch.load(io.BytesIO(data), map_location=device, weights_only=True)
