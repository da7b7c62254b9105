"""``--log tensorboard|mlflow|wandb``: each student its own run, read back offline.

Without Ray: the names and refusals, each logger writing two grouped students as two runs
(TensorBoard event files parsed here, an MLflow file store through ``MlflowClient``, W&B
offline run files parsed here), a re-run Tune trial, a failing and a hanging logger. With
Ray: a real sweep of grouped students through the CLI, every logger at once, each run held
against the Parquet rows and curves the sweep wrote.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import coretune.driver.loggers as loggers
import coretune.driver.student_logs as student_logs
from coretune.cli import main
from coretune.driver.loggers import (
    LOGGERS,
    ExperimentLogger,
    log_dir,
    logger_names,
    register_logger,
)
from coretune.driver.plan import plan_sweep
from coretune.driver.results_writer import ResultWriter
from coretune.driver.student_logs import StudentLogs
from coretune.errors import PathError, UnknownNameError, UsageError
from coretune.reports.results import ResultsStore

SPEC = """
name: logged
datasets: digits
archs: mlp
seeds: [0, 1]
ratios: [0.1]
selectors: [{name: random}]
label_modes: [{mode: hard}]
budget: {unit: iterations, value: 2, max_reports: 2}
students_per_trial: 2
"""
REAL = ("tensorboard", "mlflow", "wandb")


# ------------------------------------------------------------------ reading runs back
def tensorboard_runs(root: Path) -> dict[str, dict]:
    """Each run directory's scalars {tag: {step: value}}, texts, hparams and end status,
    read from the TFRecord event files (length, its CRC, the Event, its CRC)."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    runs = {}
    for run_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        run = {"scalars": {}, "texts": {}, "hparams": {}, "status": None}
        for path in sorted(run_dir.glob("events.out.tfevents.*")):
            data, pos = path.read_bytes(), 0
            while pos < len(data):
                (n,) = struct.unpack("<Q", data[pos:pos + 8])
                event = Event.FromString(data[pos + 12:pos + 12 + n])
                pos += 12 + n + 4
                for v in event.summary.value:
                    plugin = v.metadata.plugin_data.plugin_name
                    if v.WhichOneof("value") == "simple_value":
                        run["scalars"].setdefault(v.tag, {})[event.step] = v.simple_value
                    elif plugin == "text":
                        run["texts"][v.tag.split("/")[0]] = v.tensor.string_val[0].decode()
                    elif plugin == "hparams":
                        content = HParamsPluginData.FromString(v.metadata.plugin_data.content)
                        for k, hp in content.session_start_info.hparams.items():
                            run["hparams"][k] = getattr(hp, hp.WhichOneof("kind"))
                        if content.HasField("session_end_info"):
                            run["status"] = content.session_end_info.status
            assert pos == len(data), path  # the framing read to the end exactly
        runs[run_dir.name] = run
    return runs


def mlflow_runs(store: Path, sweep: str) -> dict[str, dict]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store.as_uri())
    exp = client.get_experiment_by_name(sweep)
    out = {}
    for r in client.search_runs([exp.experiment_id]):
        history = {key: {m.step: m.value for m in client.get_metric_history(r.info.run_id, key)}
                   for key in r.data.metrics}
        out[r.info.run_name] = {"params": r.data.params, "tags": r.data.tags,
                                "metrics": history, "status": r.info.status}
    return out


def _wandb_records(path: Path):
    """The protobuf records of a W&B run file: a 7-byte header (":W&B", magic, version),
    then LevelDB log blocks of 32 KiB holding (CRC, length, type) framed chunks."""
    data, pos, buf = path.read_bytes(), 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header: padding
            pos += 32768 - pos % 32768
            continue
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + n], pos + 7 + n
        if kind == 0:
            break
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            yield buf


def wandb_runs(root: Path) -> dict[str, dict]:
    from wandb.proto import wandb_internal_pb2 as pb

    out = {}
    for path in sorted(root.glob("wandb/offline-run-*/run-*.wandb")):
        run = {"history": {}, "summary": {}, "exit": None}
        for data in _wandb_records(path):
            rec = pb.Record.FromString(data)
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                run.update(name=rec.run.display_name, group=rec.run.run_group,
                           config={u.key: json.loads(u.value_json)
                                   for u in rec.run.config.update})
            elif kind == "history":
                row = {"/".join(i.nested_key) or i.key: json.loads(i.value_json)
                       for i in rec.history.item}
                run["history"][row["_step"]] = row
            elif kind == "summary":
                for u in rec.summary.update:
                    run["summary"]["/".join(u.nested_key) or u.key] = json.loads(u.value_json)
            elif kind == "exit":
                run["exit"] = rec.exit.exit_code
        out[run["name"]] = run
    return out


# ------------------------------------------------------------------ without Ray
@pytest.fixture
def planned(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    plan = plan_sweep(tmp_path / "spec.yaml", tmp_path / "out", tmp_path / "cache",
                      dry_run=True)
    [group] = plan.groups
    assert len(group) == 2
    return plan, [s.trial_id for s in group]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Every logger offline, its state under tmp_path, nothing from the environment."""
    for var in ("MLFLOW_TRACKING_URI", "WANDB_MODE", "WANDB_PROJECT", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # undone after the test
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))


def test_names_repeated_or_comma_separated_and_refusals(monkeypatch):
    assert set(REAL) <= set(LOGGERS.names())
    assert logger_names(["tensorboard", "mlflow, wandb", "tensorboard"]) == REAL
    assert logger_names([]) == ()
    with pytest.raises(UnknownNameError, match=r"^--log: unknown logger 'tensorbord'; did "
                       r"you mean 'tensorboard'\?"):
        logger_names(["tensorbord"])
    real = loggers.find_spec
    monkeypatch.setattr(loggers, "find_spec",
                        lambda name: None if name == "mlflow" else real(name))
    with pytest.raises(UsageError) as err:
        logger_names(["tensorboard,mlflow"])
    assert str(err.value) == "--log: mlflow is not installed (pip install mlflow-skinny)"


def test_the_logs_live_under_a_local_output(tmp_path, monkeypatch):
    local = SimpleNamespace(is_local=True, base=str(tmp_path / "out"), uri=str(tmp_path))
    assert log_dir(REAL, local) == tmp_path / "out" / "logs"
    remote = SimpleNamespace(is_local=False, base="bucket/out", uri="s3://bucket/out")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(PathError, match="--log mlflow: .* a local path .*s3://bucket/out"):
        log_dir(["mlflow"], remote)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert log_dir(["mlflow"], remote) is None  # a tracking server needs no local files


def test_a_missing_logger_is_exit_2_before_ray_and_writes_nothing(capsys, tmp_path,
                                                                  monkeypatch):
    import ray

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray started"))
    monkeypatch.setattr(loggers, "find_spec", lambda name: None)
    (tmp_path / "spec.yaml").write_text(SPEC)
    code = main(["sweep", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "out"),
                 "--cache", str(tmp_path / "c"), "--log", "wandb"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == "error: --log: wandb is not installed (pip install " \
        "wandb)", err
    assert not (tmp_path / "out").exists() and not (tmp_path / "c").exists()
    code = main(["sweep", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "out"),
                 "--log", "neptune", "--dry-run"])
    assert code == 2 and "--log: unknown logger 'neptune'" in capsys.readouterr().err


def _reports(tid_index: int) -> list[dict]:
    """Two report points of a student (distinct values per student)."""
    return [{"epoch": e, "step": 10 * e, "coreset_epochs": e / 2, "train_loss": 1.0 / e + tid_index,
             "test_acc": 0.1 * e + 0.01 * tid_index, "test_nll": 2.0 - e, "final": e == 2}
            for e in (1, 2)]


def _row(tid: str, status: str = "ok") -> dict:
    return {"trial_id": tid, "group_id": "g00000-x", "status": status, "error": None,
            "n_selected": 143, "train_seconds": 0.5, "epochs_run": 1.0}


@pytest.mark.parametrize("name", REAL)
def test_each_logger_writes_grouped_students_as_separate_runs(name, planned, offline,
                                                              tmp_path):
    plan, tids = planned
    logs = StudentLogs([name], tmp_path / "logs", {p.trial_id: p.spec for p in plan.trials},
                       plan.spec.name, warn=pytest.fail)
    for e in range(2):  # interleaved, as one Tune trial reports its students
        for i, tid in enumerate(tids):
            logs.point(tid, "g00000-x", _reports(i)[e])
    logs.finish([_row(tids[0]), _row(tids[1], "diverged")])
    logs.close()
    specs = {p.trial_id: p.spec for p in plan.trials}
    if name == "tensorboard":
        runs = tensorboard_runs(tmp_path / "logs" / "tensorboard")
    elif name == "mlflow":
        runs = mlflow_runs(tmp_path / "logs" / "mlruns", "logged")
    else:
        runs = wandb_runs(tmp_path / "logs")
    assert len(runs) == 2
    for i, tid in enumerate(tids):
        [run_name] = [n for n in runs if n.endswith(tid)]
        run, spec = runs[run_name], specs[tid]
        assert run_name == f"random-0.1-hard-mlp-seed{spec.seed}-{tid}"
        expected = {r["step"]: r["test_acc"] for r in _reports(i)}
        if name == "tensorboard":
            assert run["scalars"]["test_acc"] == pytest.approx(expected)
            assert set(run["scalars"]) == {"test_acc", "test_nll", "train_loss",
                                           "coreset_epochs"}
            hp = run["hparams"]
            assert (hp["trial_id"], hp["group_id"], hp["seed"]) == (tid, "g00000-x", spec.seed)
            assert hp["optimizer.lr"] == spec.optimizer.lr and hp["dataset.name"] == "digits"
            assert json.loads(run["texts"]["spec"].strip("`\n"))["seed"] == spec.seed
            assert json.loads(run["texts"]["result"])["status"] == ("ok", "diverged")[i]
            assert run["status"] == (1, 2)[i]  # STATUS_SUCCESS, STATUS_FAILURE
        elif name == "mlflow":
            assert run["metrics"]["test_acc"] == pytest.approx(expected)
            assert run["metrics"]["n_selected"] == {0: 143.0}
            p = run["params"]
            assert (p["trial_id"], p["group_id"], p["seed"]) == (tid, "g00000-x",
                                                                 str(spec.seed))
            assert p["optimizer.lr"] == str(spec.optimizer.lr) and p["ratio"] == "0.1"
            assert run["tags"]["coretune.status"] == ("ok", "diverged")[i]
            assert run["status"] == ("FINISHED", "FAILED")[i]
        else:
            assert {s: h["test_acc"] for s, h in run["history"].items()} == \
                pytest.approx(expected)
            assert run["group"] == "logged" and run["exit"] == (0, 1)[i]
            cfg = run["config"]
            assert (cfg["trial_id"], cfg["group_id"], cfg["seed"]) == (tid, "g00000-x",
                                                                       spec.seed)
            assert cfg["optimizer"]["lr"] == spec.optimizer.lr
            assert run["summary"]["status"] == ("ok", "diverged")[i]
            assert run["summary"]["n_selected"] == 143


class Recorder(ExperimentLogger):
    """Records every call (a test logger)."""

    calls: list[tuple] = []

    def open(self, run):
        Recorder.calls.append(("open", run.trial_id, run.group_id))
        return run.trial_id

    def log(self, handle, metrics, step):
        Recorder.calls.append(("log", handle, step, metrics["test_acc"]))

    def end(self, handle, status, row):
        Recorder.calls.append(("end", handle, status, None if row is None else row["status"]))


class Broken(ExperimentLogger):
    """Fails at everything (a test logger)."""

    def open(self, run):
        raise OSError("disk full")

    def log(self, handle, metrics, step):
        raise OSError("disk full")

    def end(self, handle, status, row):
        raise OSError("disk full")


def _trial(tids: list[str], tune_id: str = "tune-1") -> SimpleNamespace:
    config = {"group": {"group_id": "g00000-x", "students": [{"trial_id": t} for t in tids]}}
    return SimpleNamespace(trial_id=tune_id, config=config, last_result={},
                           pickled_error_file=None, error_file=None)


def _report(tids: list[str], e: int) -> dict:
    return {"students": {t: {**_reports(i)[e - 1], "n_selected": 143}
                         for i, t in enumerate(tids)}}


def test_a_rerun_trial_ends_its_runs_and_a_failing_logger_loses_nothing(planned, tmp_path):
    plan, tids = planned
    warnings: list[str] = []
    with LOGGERS.temporary():
        register_logger("recorder", package=None)(Recorder)
        register_logger("broken", package=None)(Broken)
        Recorder.calls = []
        logs = StudentLogs(["broken", "recorder"], None,
                           {p.trial_id: p.spec for p in plan.trials}, "logged", warnings.append)
        w = ResultWriter(plan, {}, {}, None, None, logs)
        trial = _trial(tids)
        w.on_trial_start(0, [], trial)
        w.on_trial_result(0, [], trial, _report(tids, 1))
        w.on_trial_recover(0, [], trial)  # Tune runs it again from scratch
        for e in (1, 2, 2):  # a student done keeps reporting its final point: logged once
            w.on_trial_result(0, [], trial, _report(tids, e))
        w.on_trial_complete(0, [], trial)
        logs.close()
    rows = ResultsStore(plan.results.uri).read("trials")
    assert sorted(rows["trial_id"]) == sorted(tids) and (rows["status"] == "ok").all()
    assert len(ResultsStore(plan.results.uri).read("curves")) == 4
    for tid in tids:
        mine = [c for c in Recorder.calls if c[1] == tid]
        i = tids.index(tid)
        first, second = (("log", tid, 10 * e, _reports(i)[e - 1]["test_acc"]) for e in (1, 2))
        assert mine == [("open", tid, "g00000-x"), first, ("end", tid, "abandoned", None),
                        ("open", tid, "g00000-x"), first, second, ("end", tid, "ok", "ok")]
    assert warnings[0] == ("--log broken failed (OSError: disk full); the sweep goes on and "
                           "its results are not affected; further broken errors are only "
                           "counted")
    assert len(warnings) == 2 and warnings[1].startswith("--log broken: 4 errors in all")


def test_a_hanging_logger_does_not_hold_the_sweep(planned, monkeypatch):
    plan, tids = planned

    class Slow(Recorder):
        """Sleeps in every call (a test logger)."""

        def open(self, run):
            time.sleep(2)

    warnings: list[str] = []
    monkeypatch.setattr(student_logs, "CLOSE_SECONDS", 0.2)
    with LOGGERS.temporary():
        register_logger("slow", package=None)(Slow)
        logs = StudentLogs(["slow"], None, {p.trial_id: p.spec for p in plan.trials},
                           "logged", warnings.append)
        started = time.perf_counter()
        for tid in tids:
            logs.point(tid, "g", _reports(0)[0])
        queued = time.perf_counter() - started
        logs.close()
    assert queued < 0.5 and time.perf_counter() - started < 1.5
    assert warnings == ["--log: the loggers did not finish within 0 s; some runs may be "
                        "incomplete (the results are not affected)"]


# ------------------------------------------------------------------ a real sweep
def test_grouped_students_are_separate_runs_in_each_logger(capsys, write_spec, tmp_path,
                                                           offline, ray_session):
    spec = write_spec("logged", replace={
        "seeds: [0]": "seeds: [0, 1]\nstudents_per_trial: 2",
        "  - name: ccs\n    args: {score: aum, beta: 0.1}\n": "",
        "  - {mode: smooth, eps: 0.1, smoothing: paper}\n": "",
        "  - {mode: soft, tau: 4.0, lam: 1.0}\n": "", "  - {mode: kd, tau: 4.0, lam: 0.9}\n": ""})
    out = tmp_path / "out"
    with LOGGERS.temporary():
        register_logger("broken", package=None)(Broken)
        code = main(["sweep", str(spec), "--out", str(out), "--cache", str(tmp_path / "c"),
                     "--quiet", "--no-report", "--log", "tensorboard",
                     "--log", "mlflow,wandb,broken"])
    captured = capsys.readouterr()
    assert code == 0, captured
    assert captured.err.count("--log broken failed (OSError: disk full)") == 1
    results = ResultsStore(str(out))
    rows, curves = results.read("trials"), results.read("curves")
    assert len(rows) == 4 and (rows["status"] == "ok").all()  # none lost, none twice
    assert rows.groupby("group_id").size().tolist() == [2, 2]  # two students a Tune trial
    assert len(curves) == 12 and curves.groupby("trial_id").size().eq(3).all()
    every = {"tensorboard": tensorboard_runs(out / "logs" / "tensorboard"),
             "mlflow": mlflow_runs(out / "logs" / "mlruns", "logged"),
             "wandb": wandb_runs(out / "logs")}
    for name, runs in every.items():
        assert len(runs) == 4, (name, sorted(runs))
        for row in rows.itertuples():
            [run] = [r for n, r in runs.items() if n.endswith(row.trial_id)]
            points = curves[curves["trial_id"] == row.trial_id]
            expected = dict(zip(points["step"], points["test_acc"], strict=True))
            if name == "tensorboard":
                got, params = run["scalars"]["test_acc"], run["hparams"]
            elif name == "mlflow":
                got, params = run["metrics"]["test_acc"], run["params"]
            else:
                got = {s: h["test_acc"] for s, h in run["history"].items()}
                params = {"group_id": run["config"]["group_id"],
                          "ratio": run["config"]["ratio"], "seed": run["config"]["seed"]}
            assert got == pytest.approx(expected, rel=1e-6), name
            assert str(params["group_id"]) == row.group_id
            assert float(params["ratio"]) == row.ratio and int(params["seed"]) == row.seed
