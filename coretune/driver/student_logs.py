"""The driver's side of ``--log``: each student's points and row, fanned out to the chosen
experiment loggers (:mod:`coretune.driver.loggers`), a run per student.

Grouped students (several in one Tune trial) are separate runs, and a Tune trial re-run
from scratch ends its students' runs as ``abandoned`` (the re-run opens new ones, so no
point is logged twice in a run). Rows come first: the results writer hands over a trial's
rows only after writing them, and every logger call runs on one background thread of the
driver, each in its own ``try``: a logger that fails or hangs never loses, delays or
duplicates a row and never stops the sweep (its first error is printed once, the count at
the end).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from coretune.driver.loggers import (
    LOGGERS,
    ExperimentLogger,
    log_dir,
    point_metrics,
    student_run,
)

#: seconds :meth:`StudentLogs.close` waits for the loggers to catch up before giving up
CLOSE_SECONDS = 300.0


def student_logs(names: Sequence[str], plan: Any,
                 warn: Callable[[str], None] | None = None) -> StudentLogs | None:
    """The loggers ``names`` for a :class:`~coretune.driver.plan.Plan`'s students (None if
    no name); refuses an output they cannot write under (call it before Ray starts)."""
    if not names:
        return None
    return StudentLogs(names, log_dir(names, plan.results.location),
                       {p.trial_id: p.spec for p in plan.trials}, plan.spec.name, warn)


def _stderr(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"warning: {message}", markup=False, highlight=False,
                               soft_wrap=True)


class StudentLogs:
    """The chosen loggers, fed by the driver's results callback; every call is queued to
    one background thread (started at the first call), so a slow logger (``wandb.init``
    takes about half a second; a remote tracking server a request per report) never holds
    up Tune's loop. ``specs``: each student's TrialSpec by trial id."""

    def __init__(self, names: Sequence[str], log_root: Path | None,
                 specs: Mapping[str, Any], sweep: str,
                 warn: Callable[[str], None] | None = None):
        self.names, self.log_root, self.specs, self.sweep = tuple(names), log_root, specs, sweep
        self.warn = warn or _stderr
        self.errors: dict[str, list[str]] = {}  # by logger: the messages, first shown
        self._loggers: dict[str, ExperimentLogger | None] = {}
        self._runs: dict[tuple[str, str], Any] = {}  # (logger, trial id) -> open handle
        self._tasks: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- the callback's side
    def point(self, trial_id: str, group_id: str, report: Mapping[str, Any]) -> None:
        """A new report point of a student (its run is opened at the first)."""
        self._submit(self._point, trial_id, group_id, dict(report))

    def abandon(self, trial_ids: Iterable[str]) -> None:
        """The students' Tune trial runs again from scratch: end their open runs."""
        self._submit(self._abandon, list(trial_ids))

    def finish(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Students' rows, once written: each ends its run (opening one if none is)."""
        self._submit(self._finish, [dict(r) for r in rows])

    def close(self) -> None:
        """Wait (up to :data:`CLOSE_SECONDS`) for the queued calls; runs still open end as
        ``interrupted``; then the loggers close and the error counts are reported."""
        if self._thread is None:
            return
        self._tasks.put(None)
        self._thread.join(CLOSE_SECONDS)
        if self._thread.is_alive():
            self.warn(f"--log: the loggers did not finish within {CLOSE_SECONDS:.0f} s; "
                      "some runs may be incomplete (the results are not affected)")
        for name, messages in self.errors.items():
            if len(messages) > 1:
                self.warn(f"--log {name}: {len(messages)} errors in all (first: "
                          f"{messages[0]}); the results are not affected")

    # ---------------------------------------------------------------- the logging thread
    def _submit(self, fn: Callable, *args: Any) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="coretune-loggers",
                                            daemon=True)
            self._thread.start()
        self._tasks.put((fn, args))

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            fn, args = task
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001 - a bug here must not stop the sweep
                self._failed("(all loggers)", exc)
        for (name, tid), handle in list(self._runs.items()):
            self._end(name, tid, handle, "interrupted", None)
        for name, logger in self._loggers.items():
            if logger is not None:
                self._call(name, logger.close)

    def _failed(self, name: str, exc: BaseException) -> None:
        message = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
        self.errors.setdefault(name, []).append(message)
        if len(self.errors[name]) == 1:
            self.warn(f"--log {name} failed ({message}); the sweep goes on and its results "
                      f"are not affected; further {name} errors are only counted")

    def _call(self, name: str, fn: Callable, *args: Any) -> tuple[bool, Any]:
        try:
            return True, fn(*args)
        except Exception as exc:  # noqa: BLE001 - a logger's failure is reported, not raised
            self._failed(name, exc)
            return False, None

    def _logger(self, name: str) -> ExperimentLogger | None:
        if name not in self._loggers:  # constructed here: its imports stay off Tune's loop
            ok, logger = self._call(name, LOGGERS.get(name).factory, self.log_root, self.sweep)
            self._loggers[name] = logger if ok else None
        return self._loggers[name]

    def _handle(self, name: str, trial_id: str, group_id: str) -> Any:
        """The student's open run in logger ``name`` (opened now if none); None if failed."""
        key = (name, trial_id)
        if key not in self._runs and (logger := self._logger(name)) is not None:
            run = student_run(self.specs[trial_id], trial_id, group_id)
            self._runs[key] = self._call(name, logger.open, run)[1]
        return self._runs.get(key)

    def _end(self, name: str, trial_id: str, handle: Any, status: str, row: dict | None):
        self._runs.pop((name, trial_id), None)
        if handle is not None and (logger := self._loggers.get(name)) is not None:
            self._call(name, logger.end, handle, status, row)

    def _point(self, trial_id: str, group_id: str, report: dict) -> None:
        metrics, step = point_metrics(report), report.get("step")
        step = int(step) if isinstance(step, int | float) else int(report.get("epoch") or 0)
        for name in self.names:
            if (handle := self._handle(name, trial_id, group_id)) is not None and metrics:
                self._call(name, self._loggers[name].log, handle, metrics, step)

    def _abandon(self, trial_ids: list[str]) -> None:
        for name in self.names:
            for tid in trial_ids:
                if (name, tid) in self._runs:
                    self._end(name, tid, self._runs[(name, tid)], "abandoned", None)

    def _finish(self, rows: list[dict]) -> None:
        for row in rows:
            for name in self.names:
                handle = self._handle(name, row["trial_id"], row.get("group_id") or "")
                self._end(name, row["trial_id"], handle, row["status"], row)
