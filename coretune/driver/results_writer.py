"""The driver's Tune callback: each Tune trial's students become rows the moment it ends.

Curves are written first, then the trial rows (a row commits its student), one part file
each per Tune trial, so a killed driver loses only the trials still running. A trial lost
with its node is held back for a fresh Tune pass (:func:`coretune.driver.run.run_plan`)
instead of being written as an error.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from ray import tune
from rich.progress import Progress

from coretune.driver.plan import Plan, PlannedTrial
from coretune.driver.student_logs import StudentLogs
from coretune.reports.results import ResultsStore
from coretune.reports.rows import curve_rows, now, trial_row, versions

#: how many fresh Tune passes re-run the trials lost with their node (see ``run_plan``)
NODE_LOSS_PASSES = 3


def lost_with_node(error: str | None) -> bool:
    """Whether a Tune trial's error is its node's death, not its own: Ray's
    ``ActorDiedError`` "… because its node has died" or a ``NodeDiedError``."""
    text = (error or "").lower()
    return "node has died" in text or "nodediederror" in text


class ResultWriter(tune.Callback):
    """Writes each Tune trial's students as part files the moment the trial ends.

    A trial whose node died is not written while a re-run pass remains (``defer_lost``):
    its group is kept in ``lost`` for the next pass, so its students get one row, from
    the run that completes them. ``logs`` (``--log``) gets each student's new report
    points, its trial's re-runs and, once written, its row."""

    def __init__(self, plan: Plan, teacher_acc: dict[str, float], select_seconds: dict,
                 progress: Progress | None, task: Any, logs: StudentLogs | None = None):
        self.results: ResultsStore = plan.results
        self.students = {s.trial_id: s for group in plan.groups for s in group}
        self.teacher_acc, self.select_seconds = teacher_acc, select_seconds
        self.chosen_beta = plan.chosen_beta
        self.progress, self.task = progress, task
        self.versions = versions()
        self.curves: dict[str, dict[str, list[dict]]] = {}
        self.last: dict[str, dict[str, dict]] = {}
        self.rows: list[dict] = []
        self.retries: dict[str, int] = {}  # by group id, across Tune passes
        self.defer_lost = False
        self.lost: list[dict] = []
        self.body_seconds = 0.0
        self.metric, self.mode = plan.spec.metric, plan.spec.metric_mode
        self.running, self.failed, self.best = 0, 0, None
        self.total = len(plan.trials)
        self.logs = logs

    def _show(self) -> None:
        if self.progress is None:
            return
        best = "–" if self.best is None else f"{self.best:.4g}"
        self.progress.update(self.task, completed=len(self.rows), running=self.running,
                             pending=self.total - len(self.rows) - self.running,
                             failed=self.failed, best=f"{self.metric} {best}")

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running += len(trial.config["group"]["students"])
        self._show()

    def __getstate__(self) -> dict:  # Tune may pickle callbacks; the writer stays here
        return {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        students = result.get("students") or {}
        self.last[trial.trial_id] = students
        curves = self.curves.setdefault(trial.trial_id, {})
        for sid, metrics in students.items():
            seen = curves.setdefault(sid, [])
            if not seen or seen[-1].get("epoch") != metrics.get("epoch"):
                seen.append(metrics)
                if self.logs is not None:
                    self.logs.point(sid, trial.config["group"]["group_id"], metrics)

    def on_trial_recover(self, iteration, trials, trial, **info):
        """A failed Tune trial that will be re-run from scratch: forget its reports."""
        gid = trial.config["group"]["group_id"]
        self.retries[gid] = self.retries.get(gid, 0) + 1
        self.last.pop(trial.trial_id, None)
        self.curves.pop(trial.trial_id, None)
        if self.logs is not None:
            self.logs.abandon(s["trial_id"] for s in trial.config["group"]["students"])

    def _finish(self, trial, error: str | None) -> None:
        group = trial.config["group"]
        if self.defer_lost and lost_with_node(error):
            self.on_trial_recover(None, None, trial)  # forget its reports, count the retry
            self.lost.append(group)
            self.running = max(0, self.running - len(group["students"]))
            self._show()
            return
        last = self.last.pop(trial.trial_id, {})
        if trial.last_result:
            self.body_seconds += float(trial.last_result.get("body_seconds") or 0.0)
        curves = self.curves.pop(trial.trial_id, {})
        rows, curve_parts = [], []
        for student in group["students"]:
            planned: PlannedTrial = self.students[student["trial_id"]]
            metrics = last.get(planned.trial_id, {})
            ended = bool(metrics.get("final")) or metrics.get("diverged_at_step") is not None
            if error and not ended:  # no partial metrics presented as a result
                metrics = {k: metrics[k] for k in ("n_selected", "device") if k in metrics}
            rows.append(trial_row(
                planned.spec, planned.trial_id, metrics, None if ended else error,
                self.versions, teacher_key=planned.teacher_key,
                teacher_acc=self.teacher_acc.get(planned.teacher_key),
                select_seconds=self.select_seconds.get(planned.selection.key, 0.0),
                started=_when(metrics.get("started_at")), finished=_when(
                    metrics.get("finished_at")),
                fingerprint=planned.fingerprint, selection_key=planned.selection.key,
                group_id=group["group_id"]))
            rows[-1]["retries"] = self.retries.get(group["group_id"], 0)
            if rows[-1]["beta"] is None:  # β chosen by a search (ELFS ``beta: auto``)
                rows[-1]["beta"] = self.chosen_beta.get(planned.selection.key)
            curve_parts += curve_rows(planned.spec.sweep, planned.trial_id,
                                      curves.get(planned.trial_id, []))
        self.results.write("curves", curve_parts)  # curves first: the trial row commits
        self.results.write("trials", rows)
        self.rows += rows
        if self.logs is not None:  # after the rows: a logger never holds one up
            self.logs.finish(rows)
        self.running = max(0, self.running - len(rows))
        self.failed += sum(r["status"] in ("error", "diverged") for r in rows)
        for r in rows:
            value = r.get(self.metric)
            if r["status"] == "ok" and value is not None and (self.best is None or (
                    value > self.best if self.mode == "max" else value < self.best)):
                self.best = value
        self._show()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, None)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, trial_error(trial)[-2000:])


def trial_error(trial) -> str:
    """The latest error of a Tune trial, read from its local error files (the copies in
    Tune's storage are synced later and may still hold an earlier attempt's error)."""
    import cloudpickle

    try:
        if trial.pickled_error_file and os.path.isfile(trial.pickled_error_file):
            with open(trial.pickled_error_file, "rb") as fh:
                err = cloudpickle.load(fh)
            return f"{type(err).__name__}: {str(err).strip()}"
        if trial.error_file and os.path.isfile(trial.error_file):
            return Path(trial.error_file).read_text().strip()
    except Exception as exc:  # noqa: BLE001 - the message is best effort, the row is not
        return f"error of unknown kind (its record could not be read: {exc})"
    return "error of unknown kind"


def _when(iso: str | None) -> datetime:
    return now() if not iso else datetime.fromisoformat(iso)
