"""Experiment loggers: ``coretune sweep --log tensorboard|mlflow|wandb``, a run per student.

A logger is one class with ``@register_logger`` (the registry idiom of every plugin family):
it opens a run for a student (:class:`StudentRun`: a readable name, the sweep, its Tune
trial's group id, the spec's fields), logs that student's report points against its
training step, and ends the run with the student's results row.
:class:`coretune.driver.student_logs.StudentLogs` feeds them from the driver's results
callback, off Tune's loop. Nothing here is a required dependency: a logger's package is
imported only when it logs, and :func:`logger_names` refuses one that is not installed,
before Ray starts.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from coretune.errors import PathError, UnknownNameError, UsageError
from coretune.registry import Registry, origin_of
from coretune.reports.rows import CURVE_COLUMNS, METRIC_COLUMNS

#: what a report point logs (numbers only); the x axis is the student's training ``step``
POINT_KEYS = tuple(k for k in CURVE_COLUMNS if k not in ("step", "epoch"))
#: the row's numbers a run ends with (its last metrics are its curve's last point)
ROW_KEYS = ("n_selected", "epochs_run", "train_seconds", "select_seconds",
            "teacher_test_acc", "peak_memory_bytes", "diverged_at_step", "retries")


class UnknownLoggerError(UnknownNameError):
    """A ``--log`` name no logger is registered under."""


@dataclass(frozen=True)
class StudentRun:
    """What a logger is told about one student's run."""

    trial_id: str
    name: str  # readable: selector-size-label_mode-arch-seed-trial_id
    sweep: str
    group_id: str  # its Tune trial (students of one group share it)
    spec: dict[str, Any]  # the TrialSpec as JSON (nested)
    params: dict[str, Any]  # the spec's fields flattened ("optimizer.lr"), with the ids


class ExperimentLogger:
    """A backend: ``open`` a run, ``log`` points into it, ``end`` it; ``close`` at the end.

    Constructed on the logging thread with the sweep's log directory (``None`` when the
    output is not local and the logger declared it needs none) and the sweep's name."""

    def __init__(self, log_dir: Path | None, sweep: str):
        self.log_dir, self.sweep = log_dir, sweep

    def open(self, run: StudentRun) -> Any:
        raise NotImplementedError

    def log(self, handle: Any, metrics: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def end(self, handle: Any, status: str, row: dict | None) -> None:
        """``status``: the row's (ok, stopped, diverged, error), or ``abandoned`` (its Tune
        trial runs again) or ``interrupted`` (the sweep ended first); ``row`` if written."""
        raise NotImplementedError

    def close(self) -> None:
        """After every run has ended."""


@dataclass(frozen=True)
class LoggerInfo:
    """A registered logger: its class, the package it imports and how to install it, and
    whether it writes under the output directory (then ``--out`` must be local)."""

    name: str
    factory: type[ExperimentLogger]
    package: str | None
    install: str
    needs_dir: Callable[[], bool]


LOGGERS: Registry[LoggerInfo] = Registry("logger", UnknownLoggerError)


def register_logger(name: str, *, package: str | None, install: str = "",
                    needs_dir: Callable[[], bool] = lambda: True, replace: bool = False
                    ) -> Callable[[type[ExperimentLogger]], type[ExperimentLogger]]:
    """Register an :class:`ExperimentLogger` subclass as ``--log name``; ``package`` is
    checked for before Ray starts (``install`` says how to get it)."""

    def decorate(cls: type[ExperimentLogger]) -> type[ExperimentLogger]:
        LOGGERS.add(name, LoggerInfo(name, cls, package, install, needs_dir),
                    origin=origin_of(cls), replace=replace)
        return cls

    return decorate


def logger_names(values: Iterable[str]) -> tuple[str, ...]:
    """The ``--log`` values (repeated or comma separated) as registered names, each once;
    refuses an unknown name or a missing package with one line naming ``--log``."""
    names: list[str] = []
    for value in values:
        for name in (n.strip() for n in value.split(",")):
            if name and name not in names:
                names.append(name)
    for name in names:
        if name not in LOGGERS:
            raise UnknownLoggerError(f"--log: {LOGGERS.unknown_message(name)}")
        info = LOGGERS.get(name)
        if info.package is not None and find_spec(info.package) is None:
            raise UsageError(f"--log: {name} is not installed ({info.install})")
    return tuple(names)


def log_dir(names: Sequence[str], location: Any) -> Path | None:
    """``DIR/logs`` of a local output ``location`` (a :class:`coretune.storage.Location`);
    a logger that writes files refuses an output that is not local."""
    if location.is_local:
        return Path(location.base) / "logs"
    for name in names:
        if LOGGERS.get(name).needs_dir():
            raise PathError(f"--log {name}: writes its runs under --out, which must then be "
                            f"a local path (got {location.uri})")
    return None


def flat_params(spec: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested fields as dotted keys; lists and empty mappings as JSON text."""
    out: dict[str, Any] = {}
    for key, value in spec.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flat_params(value, name + "."))
        elif isinstance(value, Mapping | list | tuple):
            out[name] = json.dumps(value, sort_keys=True)
        else:
            out[name] = value
    return out


def student_run(trial: Any, trial_id: str, group_id: str) -> StudentRun:
    """The run of a student (``trial``: its :class:`~coretune.spec.TrialSpec`)."""
    size = f"ipc{trial.ipc}" if trial.ipc is not None else f"{trial.ratio:g}"
    name = re.sub(r"[^\w.=+-]", "_", f"{trial.selector}-{size}-{trial.label_mode}-"
                  f"{trial.arch}-seed{trial.seed}-{trial_id}")
    spec = trial.model_dump(mode="json")
    return StudentRun(trial_id, name, trial.sweep, group_id, spec,
                      {**flat_params(spec), "trial_id": trial_id, "group_id": group_id})


def point_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a report point a logger records."""
    return {k: float(v) for k in POINT_KEYS if isinstance(v := report.get(k), int | float)}


def row_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a student's results row a run ends with (:data:`ROW_KEYS`)."""
    return {k: float(v) for k in ROW_KEYS if isinstance(v := row.get(k), int | float)
            and not isinstance(v, bool) and math.isfinite(v)}


def _unique(path: Path) -> Path:
    """``path``, or ``path.2``, ``path.3``… if it exists (a re-run of the same student)."""
    n, out = 1, path
    while out.exists():
        n += 1
        out = path.with_name(f"{path.name}.{n}")
    return out


@register_logger("tensorboard", package="tensorboardX", install="pip install tensorboardX")
class TensorBoardLogger(ExperimentLogger):
    """TensorBoard: a run directory per student, ``DIR/logs/tensorboard/<run name>``: its
    curve as scalars against the training step, the spec's fields in the HParams tab (and
    as JSON text), its status at the end. ``tensorboard --logdir DIR/logs/tensorboard``.
    Cost: one event file and writer thread per open run, a flush per report point."""

    def open(self, run: StudentRun) -> Any:
        from tensorboardX import SummaryWriter
        from tensorboardX.summary import hparams

        assert self.log_dir is not None
        writer = SummaryWriter(logdir=str(_unique(self.log_dir / "tensorboard" / run.name)),
                               flush_secs=30)
        exp, ssi, _ = hparams({k: v for k, v in run.params.items() if v is not None},
                              {m: 0.0 for m in ("train_loss", *METRIC_COLUMNS)})
        writer.file_writer.add_summary(exp)
        writer.file_writer.add_summary(ssi)
        writer.add_text("spec", "```\n" + json.dumps(run.spec, indent=1, sort_keys=True)
                        + "\n```")
        return writer

    def log(self, handle: Any, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            handle.add_scalar(key, value, step)
        handle.flush()

    def end(self, handle: Any, status: str, row: dict | None) -> None:
        from tensorboardX.proto.api_pb2 import Status
        from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionEndInfo
        from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata

        row = row or {}
        handle.add_text("result", json.dumps({"status": status, **row_metrics(row), **(
            {"error": row["error"]} if row.get("error") else {})}, indent=1))
        done = "STATUS_SUCCESS" if status in ("ok", "stopped") else "STATUS_FAILURE"
        content = HParamsPluginData(session_end_info=SessionEndInfo(
            status=Status.Value(done)), version=0).SerializeToString()
        meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
            plugin_name="hparams", content=content))
        handle.file_writer.add_summary(Summary(value=[Summary.Value(
            tag="_hparams_/session_end_info", metadata=meta)]))
        handle.close()


@register_logger("mlflow", package="mlflow", install="pip install mlflow-skinny",
                 needs_dir=lambda: not os.environ.get("MLFLOW_TRACKING_URI"))
class MlflowLogger(ExperimentLogger):
    """MLflow: a run per student in the experiment named after the sweep: params = the
    spec's fields flattened (``optimizer.lr``, ``trial_id``, ``group_id``), metrics with the
    training step, tags ``coretune.*`` (status, ids). Tracking URI ``$MLFLOW_TRACKING_URI``,
    else a file store ``DIR/logs/mlruns`` (MLflow 3 wants ``MLFLOW_ALLOW_FILE_STORE``: set
    for it; ``mlflow ui --backend-store-uri DIR/logs/mlruns``). Cost: a few small files per
    report (a request to a tracking server), about 2 s to import mlflow, once."""

    def __init__(self, log_dir: Path | None, sweep: str):
        super().__init__(log_dir, sweep)
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            assert log_dir is not None
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            (log_dir / "mlruns").mkdir(parents=True, exist_ok=True)
            uri = (log_dir / "mlruns").as_uri()
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(sweep)
        if exp is not None and exp.lifecycle_stage == "deleted":
            self.client.restore_experiment(exp.experiment_id)
        self.experiment = (exp.experiment_id if exp is not None
                           else self.client.create_experiment(sweep))

    def open(self, run: StudentRun) -> Any:
        from mlflow.entities import Param

        made = self.client.create_run(self.experiment, run_name=run.name, tags={
            "coretune.trial_id": run.trial_id, "coretune.group_id": run.group_id,
            "coretune.sweep": run.sweep})
        params = [Param(re.sub(r"[^\w./ :-]", "_", k), str(v)[:6000])
                  for k, v in run.params.items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(made.info.run_id, params=params[i:i + 100])
        return made.info.run_id

    def log(self, handle: Any, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self.client.log_batch(handle, metrics=[Metric(k, v, stamp, step)
                                               for k, v in metrics.items()])

    def end(self, handle: Any, status: str, row: dict | None) -> None:
        from mlflow.entities import Metric, RunTag

        stamp, row = int(time.time() * 1000), row or {}
        tags = [RunTag("coretune.status", status)]
        if row.get("error"):
            tags.append(RunTag("coretune.error", str(row["error"])[:5000]))
        self.client.log_batch(handle, tags=tags, metrics=[
            Metric(k, v, stamp, 0) for k, v in row_metrics(row).items()])
        self.client.set_terminated(handle, "FINISHED" if status in ("ok", "stopped") else
                                   "KILLED" if status in ("abandoned", "interrupted")
                                   else "FAILED")


@register_logger("wandb", package="wandb", install="pip install wandb")
class WandbLogger(ExperimentLogger):
    """Weights & Biases: a run per student, grouped by the sweep's name, in project
    ``$WANDB_PROJECT`` (else ``coretune``): config = the spec, history = its curve against
    the training step, summary = its row. Mode ``$WANDB_MODE``, else ``offline``: runs under
    ``DIR/logs/wandb``, uploaded later by ``wandb sync DIR/logs/wandb/offline-run-*``.
    Cost: about half a second to start each run (wandb's service process), on the
    logging thread; no console capture, no system metrics."""

    def open(self, run: StudentRun) -> Any:
        import wandb

        root = self.log_dir if self.log_dir is not None else Path.cwd()
        root.mkdir(parents=True, exist_ok=True)
        wanted = {"silent": True, "console": "off", "disable_git": True, "save_code": False,
                  "x_disable_stats": True, "x_disable_meta": True,
                  "x_save_requirements": False}
        fields = getattr(wandb.Settings, "model_fields", wanted)
        return wandb.init(
            mode=os.environ.get("WANDB_MODE") or "offline", dir=str(root),
            project=os.environ.get("WANDB_PROJECT") or "coretune", group=run.sweep,
            name=run.name, reinit="create_new",
            config={**run.spec, "trial_id": run.trial_id, "group_id": run.group_id},
            settings=wandb.Settings(**{k: v for k, v in wanted.items() if k in fields}))

    def log(self, handle: Any, metrics: dict[str, float], step: int) -> None:
        handle.log(metrics, step=step)

    def end(self, handle: Any, status: str, row: dict | None) -> None:
        row = row or {}
        handle.summary.update({"status": status, **row_metrics(row),
                               **({"error": str(row["error"])} if row.get("error") else {})})
        handle.finish(exit_code=0 if status in ("ok", "stopped") else 1)

    def close(self) -> None:
        """Wait until wandb's service has written every run (``finish`` returns before an
        offline run's file is complete): tear it down, unless a run not ours is active."""
        import wandb

        if wandb.run is None:
            wandb.teardown()
