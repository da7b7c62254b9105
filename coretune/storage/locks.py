"""The one lock: an exclusive lock file kept alive by a heartbeat (the artifact store's
build-once and the results directory's one-driver lease), on any
:class:`~coretune.storage.Location`.

Every lock a process holds is refreshed by one heartbeat thread of that process.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime

import pyarrow.fs as pafs

from coretune.errors import UsageError
from coretune.storage import Location

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


class _Heartbeats:
    """One daemon thread per process refreshing every held :class:`Lock` when its beat is
    due (a thread per lock cost more to start and join than a small artifact's build).
    A lock is touched only while registered: after :meth:`remove` returns, never again."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.due: dict[Lock, float] = {}
        self.thread: threading.Thread | None = None

    def add(self, lock: Lock) -> None:
        with self.cond:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, daemon=True,
                                               name="coretune lock heartbeats")
                self.thread.start()
            self.due[lock] = time.monotonic() + lock.heartbeat
            self.cond.notify()

    def remove(self, lock: Lock) -> None:
        with self.cond:  # not while the thread touches a lock: it holds the condition
            self.due.pop(lock, None)

    def _run(self) -> None:
        with self.cond:
            while True:
                now = time.monotonic()
                for lock in [k for k, due in self.due.items() if due <= now]:
                    try:
                        lock.location.touch(lock.name)
                    except Exception:  # noqa: BLE001 - one lock's failure stops no other beat
                        pass
                    self.due[lock] = time.monotonic() + lock.heartbeat
                self.cond.wait(min(self.due.values(), default=now + 60) - time.monotonic())


_HEARTBEATS = _Heartbeats()
if hasattr(os, "register_at_fork"):  # a forked child starts afresh (no thread, no locks)
    os.register_at_fork(after_in_child=_HEARTBEATS.__init__)


class Lock:
    """An exclusive lock file ``name`` in ``location``, held by one process at a time.

    :meth:`acquire` creates it exclusively, holding JSON naming its holder (host, pid,
    since, a random token); while held, the process's heartbeat thread refreshes its
    modification time every ``heartbeat`` seconds (``$CORETUNE_HEARTBEAT_SECONDS`` when set
    and shorter). A lock whose heartbeat has been silent for ``stale_after`` seconds, or
    whose holder's process is gone (on this host), is taken over. :meth:`release` stops
    its heartbeat and deletes the file if it is still this holder's.
    """

    def __init__(self, location: Location, name: str, stale_after: float, heartbeat: float):
        self.location, self.name, self.stale_after = location, name, stale_after
        self.heartbeat = min(heartbeat, _env_seconds(HEARTBEAT_ENV) or heartbeat)
        self.holder = {"host": socket.gethostname(), "pid": os.getpid(),
                       "since": datetime.now(UTC).isoformat(), "token": uuid.uuid4().hex}

    def __repr__(self) -> str:
        return f"Lock({self.location.path(self.name)!r})"

    def acquire(self) -> bool:
        """Take the lock if it is free or its holder is dead; False while a live one has it."""
        data = json.dumps(self.holder).encode()
        for _ in range(2):  # the second try after taking over a dead holder's lock
            if self.location.create_exclusive(self.name, data):
                _HEARTBEATS.add(self)
                return True
            if not self._break_if_dead():
                return False
        return False

    def release(self) -> None:
        """Stop the heartbeat; delete the lock file unless another holder has taken it."""
        _HEARTBEATS.remove(self)
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
