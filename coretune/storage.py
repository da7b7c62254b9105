"""Storage on any filesystem pyarrow reaches: a local path, an NFS mount, ``s3://…``.

A :class:`Location` is a (``pyarrow.fs.FileSystem``, base path) pair with the few
operations the artifact store and the results store need: whole-object writes that readers
never see half-done (:func:`write_atomic` locally, a single PUT on object stores), reads,
listings, and an exclusive create. :class:`Lock` is the one lock on top of it (the artifact
store's build-once and the results directory's one-driver lease). Like :mod:`coretune.spec`
it imports nothing from coretune but its errors.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import pyarrow.fs as pafs

from coretune.errors import PathError, UsageError

#: what :func:`write_atomic` writes: the bytes, or a function writing them to a binary file
Payload = bytes | Callable[[BinaryIO], object]

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

    def write_bytes(self, rel: str, data: Payload) -> None:
        """Write a whole file; readers see the old content or the new, never a part.

        ``data`` is the bytes or a function writing them to a binary file (see
        :func:`write_atomic`, which this is locally; an object store gets a single PUT).
        """
        target = self.path(rel)
        if self.is_local:
            write_atomic(target, data)
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


# ----------------------------------------------------------------------------- locks
#: environment overrides of every :class:`Lock`'s timing (the tests set them small): the
#: seconds between a holder's heartbeats, and the heartbeat silence after which a lock is
#: taken over (it replaces the default of a lock's owner, not a ``stale_after`` passed in)
HEARTBEAT_ENV, STALE_ENV = "CORETUNE_HEARTBEAT_SECONDS", "CORETUNE_LOCK_STALE_SECONDS"


def _env_seconds(name: str) -> float | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:
        raise UsageError(f"${name}={text!r}: expected a positive number of seconds")
    return seconds


def stale_seconds(default: float) -> float:
    """A lock's heartbeat silence before take-over: ``$CORETUNE_LOCK_STALE_SECONDS`` or
    ``default``."""
    return _env_seconds(STALE_ENV) or default


class Lock:
    """An exclusive lock file ``name`` in ``location``, held by one process at a time.

    :meth:`acquire` creates it exclusively, holding JSON naming its holder (host, pid,
    since, a random token), and starts a heartbeat thread that refreshes its modification
    time every ``heartbeat`` seconds (``$CORETUNE_HEARTBEAT_SECONDS`` when set and
    shorter). A lock whose heartbeat has been silent for ``stale_after`` seconds, or whose
    holder's process is gone (on this host), is taken over. :meth:`release` stops the
    heartbeat and deletes the file if it is still this holder's.
    """

    def __init__(self, location: Location, name: str, stale_after: float, heartbeat: float):
        self.location, self.name, self.stale_after = location, name, stale_after
        self.heartbeat = min(heartbeat, _env_seconds(HEARTBEAT_ENV) or heartbeat)
        self.holder = {"host": socket.gethostname(), "pid": os.getpid(),
                       "since": datetime.now(UTC).isoformat(), "token": uuid.uuid4().hex}
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"Lock({self.location.path(self.name)!r})"

    def acquire(self) -> bool:
        """Take the lock if it is free or its holder is dead; False while a live one has it."""
        data = json.dumps(self.holder).encode()
        for _ in range(2):  # the second try after taking over a dead holder's lock
            if self.location.create_exclusive(self.name, data):
                self._stop.clear()
                self._beat = threading.Thread(target=self._heartbeat, daemon=True,
                                              name=f"heartbeat {self.name}")
                self._beat.start()
                return True
            if not self._break_if_dead():
                return False
        return False

    def release(self) -> None:
        """Stop the heartbeat; delete the lock file unless another holder has taken it."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        try:
            if json.loads(self.location.read_bytes(self.name)).get("token") == \
                    self.holder["token"]:
                self.location.delete(self.name)
        except (OSError, ValueError, AttributeError):
            pass

    def current_holder(self) -> dict:
        """Who holds the lock now, as its file says ({} when absent or unreadable)."""
        return _holder(self._read())

    def _read(self) -> bytes | None:
        try:
            return self.location.read_bytes(self.name)
        except FileNotFoundError:
            return None
        except OSError:
            return b""

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                self.location.touch(self.name)
            except OSError:
                pass

    def _break_if_dead(self) -> bool:
        """Delete the lock if its holder is dead; True if it is gone (free to try again)."""
        raw = self._read()
        info = self.location.info(self.name)
        if raw is None or info.type == pafs.FileType.NotFound:
            return True  # released meanwhile
        other = _holder(raw)
        age = time.time() - info.mtime.timestamp() if info.mtime else 0.0
        gone = other.get("host") == socket.gethostname() and not _pid_alive(other.get("pid"))
        if not (gone or age > self.stale_after):
            return False
        if self._read() == raw:  # not taken over by another waiter meanwhile
            self.location.delete(self.name)
        return True


def _holder(raw: bytes | None) -> dict:
    try:
        other = json.loads(raw or b"")
    except ValueError:
        return {}
    return other if isinstance(other, dict) else {}


def _pid_alive(pid) -> bool:
    try:
        if int(pid) <= 0:  # 0 and -1 would signal process groups
            return False
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


def write_atomic(path: str | os.PathLike, data: Payload) -> None:
    """Write the local file ``path`` whole: readers see the old content or the new, never a
    part, and a crash leaves at most a ``<path>.<random>.tmp`` file (which the stores'
    lock holders remove).

    ``data`` is the bytes, or a function writing them to the binary file it is given. They
    go to a fsynced temporary file next to ``path`` that is ``os.replace``-d over it, then
    the directory is fsynced; if anything fails the temporary file is removed and ``path``
    keeps its previous content.
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
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _fsync_dir(os.path.dirname(target) or ".")


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
