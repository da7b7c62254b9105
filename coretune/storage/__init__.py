"""Storage on any filesystem pyarrow reaches: a local path, an NFS mount, ``s3://…``.

A :class:`Location` is a (``pyarrow.fs.FileSystem``, base path) pair with the few
operations the artifact store and the results store need: whole-object writes that readers
never see half-done (:func:`write_atomic` locally, a single PUT on object stores), reads,
listings, an exclusive create, and :meth:`Location.sync`, the flush that makes many
unsynced writes durable at once. :class:`coretune.storage.locks.Lock` is the one lock on top of it
(the artifact store's build-once and the results directory's one-driver lease). Like
:mod:`coretune.spec` it imports nothing from coretune but its errors.
"""

from __future__ import annotations

import io
import os
import posixpath
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import pyarrow.fs as pafs

from coretune.errors import PathError

#: what :func:`write_atomic` writes: the bytes, or a function writing them to a binary file
Payload = bytes | Callable[[BinaryIO], object]

#: :meth:`Location.sync` fsyncs up to this many files one by one, more with one flush
FSYNC_AT_MOST = 4

#: filesystem types (as in /proc/mounts) that every node of a cluster can share
SHARED_FSTYPES = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph",
                  "glusterfs", "fuse.", "panfs", "wekafs", "orangefs", "afs")


def resolve(uri: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) of a local path or any URI ``pyarrow.fs`` accepts.

    S3 URIs take pyarrow's query options, e.g.
    ``s3://bucket/runs?endpoint_override=127.0.0.1:9000&scheme=http``.
    """
    text = os.fspath(uri)
    if "://" in text:
        try:
            fs, path = pafs.FileSystem.from_uri(text)
        except (ValueError, OSError) as err:  # pyarrow raises ArrowInvalid (a ValueError)
            raise PathError(f"cannot open storage {text!r}: {err}") from None
        return fs, path.rstrip("/") or "/"
    return pafs.LocalFileSystem(), str(Path(text).expanduser().absolute())


class Location:
    """A directory on some filesystem; paths below it are '/'-separated and relative."""

    def __init__(self, uri: str | os.PathLike):
        self.fs, self.base = resolve(uri)
        # a relative local path is made absolute now: Ray workers run in other directories
        self.uri = os.fspath(uri) if "://" in os.fspath(uri) else self.base

    def __repr__(self) -> str:
        return f"Location({self.uri!r})"

    def __reduce__(self):  # filesystems with credentials pickle by their URI
        return (Location, (self.uri,))

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        return posixpath.join(self.base, *parts) if parts else self.base

    def child(self, *parts: str) -> Location:
        """A :class:`Location` below this one, sharing its filesystem object."""
        loc = object.__new__(Location)
        if "://" in self.uri:
            head, sep, query = self.uri.partition("?")
            loc.uri = posixpath.join(head.rstrip("/"), *parts) + sep + query
        else:
            loc.uri = os.path.join(self.uri, *parts)
        loc.fs, loc.base = self.fs, posixpath.join(self.base, *parts)
        return loc

    # ----------------------------------------------------------------- queries
    def info(self, rel: str) -> pafs.FileInfo:
        return self.fs.get_file_info(self.path(rel))

    def is_file(self, rel: str) -> bool:
        return self.info(rel).type == pafs.FileType.File

    def is_dir(self, rel: str = "") -> bool:
        return self.fs.get_file_info(self.path(rel) if rel else self.base).type \
            == pafs.FileType.Directory

    def exists(self, rel: str = "") -> bool:
        return self.fs.get_file_info(self.path(rel) if rel else self.base).type \
            != pafs.FileType.NotFound

    def list_files(self, rel: str = "", suffix: str = "") -> list[str]:
        """Paths (relative to this location) of the files directly below ``rel``."""
        sel = pafs.FileSelector(self.path(rel) if rel else self.base, allow_not_found=True)
        prefix = self.base.rstrip("/") + "/"
        # by prefix, not posixpath.relpath: an object store's paths are relative, and
        # relpath would resolve them against the working directory (which may be gone)
        out = [i.path[len(prefix):] if i.path.startswith(prefix) else
               posixpath.relpath(i.path, self.base) for i in self.fs.get_file_info(sel)
               if i.type == pafs.FileType.File and i.path.endswith(suffix)]
        return sorted(out)

    # ----------------------------------------------------------------- reads and writes
    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open_input_stream(self.path(rel)) as fh:
            return fh.read()

    def makedirs(self, rel: str = "") -> None:
        self.fs.create_dir(self.path(rel) if rel else self.base, recursive=True)

    def write_bytes(self, rel: str, data: Payload, sync: bool = True) -> None:
        """Write a whole file; readers see the old content or the new, never a part.

        ``data`` is the bytes or a function writing them to a binary file (see
        :func:`write_atomic`, which this is locally, durable unless ``sync`` is False; an
        object store gets a single PUT).
        """
        target = self.path(rel)
        if self.is_local:
            write_atomic(target, data, sync)
            return
        if callable(data):  # buffered first: a failing writer must not PUT half an object
            buf = io.BytesIO()
            data(buf)
            data = buf.getvalue()
        self.fs.create_dir(posixpath.dirname(target), recursive=True)
        with self.fs.open_output_stream(target) as fh:  # an object-store PUT is atomic
            fh.write(data)

    def create_exclusive(self, rel: str, data: bytes) -> bool:
        """Create ``rel`` holding ``data`` unless it exists; True if this call created it.

        Atomic on local and NFS (v3+) filesystems (``O_CREAT | O_EXCL``). Object stores
        offer no create-if-absent through pyarrow: there the claim is written and read back,
        and only the writer whose claim survives owns it.
        """
        target = self.path(rel)
        self.fs.create_dir(posixpath.dirname(target), recursive=True)
        if self.is_local:
            try:
                fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return True
        if self.exists(rel):
            return False
        self.write_bytes(rel, data)
        return self.read_bytes(rel) == data

    def rename(self, src: str, dst: str) -> None:
        """Move ``src`` over ``dst`` (atomic locally: ``os.replace``)."""
        self.fs.move(self.path(src), self.path(dst))

    def sync(self, paths: Sequence[str]) -> None:
        """Make ``paths`` (from :meth:`path`: files written with ``sync=False`` on this
        location's filesystem) durable with their directory entries: a few by an fsync of
        each and of their directories; more than :data:`FSYNC_AT_MOST` by one flush of the
        filesystem (Linux ``syncfs``) instead of a journal commit each. Nothing on an object
        store, where a PUT is durable when it returns."""
        if not self.is_local or not paths:
            return
        if len(paths) > FSYNC_AT_MOST and _SYNCFS is not None:
            fd = os.open(self.base, os.O_RDONLY)
            try:
                if _SYNCFS(fd) == 0:
                    return
            finally:
                os.close(fd)
        for path in paths:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for directory in sorted({posixpath.dirname(p) for p in paths}):
            _fsync_dir(directory)

    def delete(self, rel: str) -> None:
        try:
            self.fs.delete_file(self.path(rel))
        except FileNotFoundError:
            pass

    def touch(self, rel: str) -> None:
        """Refresh ``rel``'s modification time (a lock's heartbeat)."""
        if self.is_local:
            os.utime(self.path(rel))
        else:
            self.write_bytes(rel, self.read_bytes(rel))

    # ----------------------------------------------------------------- cluster checks
    def node_local_fstype(self) -> str | None:
        """The filesystem type if this location is on a disk only this node sees, else None."""
        if not self.is_local:
            return None
        fstype = mount_fstype(self.base)
        if fstype is None or fstype.startswith(SHARED_FSTYPES):
            return None
        return fstype


def write_atomic(path: str | os.PathLike, data: Payload, sync: bool = True) -> None:
    """Write the local file ``path`` whole: readers see the old content or the new, never a
    part, and a crash leaves at most a ``<path>.<random>.tmp`` file (which the stores'
    lock holders remove).

    ``data`` is the bytes, or a function writing them to the binary file it is given. They
    go to a fsynced temporary file next to ``path`` that is ``os.replace``-d over it, then
    the directory is fsynced; if anything fails the temporary file is removed and ``path``
    keeps its previous content. ``sync=False`` leaves out both fsyncs (the caller makes the
    writes durable together: :meth:`Location.sync`).
    """
    target = os.fspath(path)
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    tmp = f"{target}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        with open(tmp, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if sync:
        _fsync_dir(os.path.dirname(target) or ".")


def _libc_syncfs():
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):  # not Linux
        return None


_SYNCFS = _libc_syncfs()


def _fsync_dir(directory: str) -> None:
    """Make a rename in ``directory`` durable (best effort: not every filesystem can)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def mount_fstype(path: str) -> str | None:
    """Filesystem type of the mount holding ``path`` (its nearest existing ancestor)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    real = str(p.resolve())
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    best, fstype = "", None
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, parts[2]
    return fstype
