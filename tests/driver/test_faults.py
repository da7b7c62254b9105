"""A sweep killed with SIGKILL keeps every row it wrote; the re-run completes exactly the rest."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from coretune.driver.run import run_sweep
from coretune.reports.results import ResultsStore
from tests.conftest import wait_until

KILL_SPEC = """
name: killed
datasets: digits
archs: mlp
seeds: [0, 1, 2, 3]
ratios: [0.05, 0.1, 0.2]
selectors: [{name: random}, {name: random, args: {class_balanced: true}}]
label_modes: [{mode: hard}, {mode: smooth, eps: 0.1}]
budget: {unit: iterations, value: 60, max_reports: 2}
optimizer: {lr: 0.05, batch_size: 32}
"""


TOTAL = 4 * 3 * 2 * 2
COMPARED = ["status", "n_selected", "test_acc", "test_nll", "test_ece", "epochs_run"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, ray_session):
    """The same sweep, never interrupted: its trial rows, and its artifact cache."""
    root = tmp_path_factory.mktemp("reference")
    spec = root / "killed.yaml"
    spec.write_text(KILL_SPEC)
    run_sweep(spec, root / "out", cache=root / "cache")
    return (ResultsStore(str(root / "out")).read("trials").set_index("trial_id")[COMPARED],
            root / "cache")


def _interrupt(tmp_path, sig: int, cache) -> tuple[int, str]:
    """Start the sweep's CLI, send ``sig`` once 4 trials have rows; (exit code, stderr).

    The sweep starts from a copy of the reference's artifact cache: its artifacts are all
    built before any trial row exists, so building them again would only delay the signal.
    """
    spec = tmp_path / "killed.yaml"
    spec.write_text(KILL_SPEC)
    shutil.copytree(cache, tmp_path / "cache")
    results = ResultsStore(str(tmp_path / "out"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "coretune.cli", "sweep", str(spec), "--out",
         str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), "--no-report"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def four_rows() -> bool:
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        return len(results.parts("trials")) >= 4

    try:
        wait_until(four_rows, 240, "4 trial rows")
        if sig == signal.SIGKILL:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
        else:
            os.kill(proc.pid, sig)  # the driver alone, as Ctrl-C would
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    return proc.returncode, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_interrupted_sweep_resumes_to_the_uninterrupted_result(tmp_path, ray_session, reference,
                                                                sig):
    reference, cache = reference
    code, err = _interrupt(tmp_path, sig, cache)
    results = ResultsStore(str(tmp_path / "out"))
    before = results.read("trials")  # readable right after the interruption
    assert 4 <= len(before) < TOTAL and (before["status"] == "ok").all()
    if sig == signal.SIGINT:
        assert code == 130 and "run the same command again" in err
    else:
        assert code == -signal.SIGKILL

    summary = run_sweep(tmp_path / "killed.yaml", tmp_path / "out", cache=tmp_path / "cache")
    after = results.read("trials")
    assert summary.trials_skipped == len(before)
    assert summary.trials_run == summary.trials_finished == TOTAL - len(before)
    assert len(after) == TOTAL and after["trial_id"].is_unique
    raw = pd.concat([pd.read_parquet(tmp_path / "out" / p) for p in results.parts("trials")])
    assert not raw[raw["status"] == "ok"]["trial_id"].duplicated().any()  # no ok row twice
    kept = after.set_index("trial_id").loc[before["trial_id"], "finished_at"]
    assert (kept.to_numpy() == before["finished_at"].to_numpy()).all()  # untouched rows
    pd.testing.assert_frame_equal(after.set_index("trial_id")[COMPARED].sort_index(),
                                  reference.sort_index())
    curves = results.read("curves")
    assert curves.groupby("trial_id").size().eq(2).all() and curves["trial_id"].nunique() == TOTAL


TWO_SPEC = """
name: two_{n}
datasets: digits
archs: mlp
seeds: [0]
ratios: [0.1, 0.2]
selectors: [{{name: random}}, {{name: aum}}]
label_modes: [{{mode: hard}}, {{mode: soft, tau: 2.0}}]
budget: {{unit: iterations, value: 20, max_reports: 1}}
optimizer: {{lr: 0.05, batch_size: 32}}
teacher: {{arch: mlp, optimizer: {{lr: 0.05, batch_size: 64}}, budget: {{value: 3}}}}
dynamics: {{arch: mlp, optimizer: {{lr: 0.05, batch_size: 64}}, budget: {{value: 3}}}}
"""


def test_two_drivers_on_one_store_build_each_artifact_once(tmp_path):
    """Two sweeps, each with its own driver and Ray, at once on one cache: the teacher, the
    dynamics run and the 4 coresets they share are each built by exactly one driver."""
    import json

    cache = tmp_path / "cache"
    procs = []
    for n in (1, 2):
        spec = tmp_path / f"two_{n}.yaml"
        spec.write_text(TWO_SPEC.format(n=n))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "coretune.cli", "sweep", str(spec), "--out",
             str(tmp_path / f"out{n}"), "--cache", str(cache), "--no-report"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
    try:
        codes = [p.wait(300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    assert codes == [0, 0]
    built = [json.loads((tmp_path / f"out{n}" / "sweep_summary.json").read_text())
             ["artifacts_built"] for n in (1, 2)]
    committed = sorted(p.parent.name.split("-")[0] for p in cache.rglob("_COMMIT.json"))
    assert committed == ["dynamics", "selection", "selection", "selection", "selection",
                         "teacher"]
    assert sum(built) == len(committed)  # nothing built twice
    for n in (1, 2):
        trials = ResultsStore(str(tmp_path / f"out{n}")).read("trials")
        assert len(trials) == 8 and (trials["status"] == "ok").all()


FAULTY_SPEC = """
name: faulty
plugins: [tests.plugins.faulty]
datasets: digits
archs: mlp
seeds: [0]
ratios: [0.2]
selectors: [{{name: random}}]
label_modes:
  - {{mode: hard}}
  - {{mode: nan_after, args: {{at: 25}}}}
  - {{mode: flaky, args: {{fail_times: 1, marker: "{tmp}/flaky_once"}}}}
  - {{mode: flaky, args: {{fail_times: 5, marker: "{tmp}/flaky_always"}}}}
budget: {{unit: iterations, value: 60, max_reports: 3}}
optimizer: {{lr: 0.05, batch_size: 32}}
retries: 2
"""


def test_diverged_retried_and_failed_trials_each_get_their_row(tmp_path, ray_session):
    spec = tmp_path / "faulty.yaml"
    spec.write_text(FAULTY_SPEC.format(tmp=tmp_path))
    summary = run_sweep(spec, tmp_path / "out", cache=tmp_path / "cache")
    rows = ResultsStore(str(tmp_path / "out")).read("trials").set_index("label_mode")
    assert summary.status_counts == {"ok": 2, "diverged": 1, "error": 1}
    assert rows.loc["hard", "status"] == "ok" and rows.loc["hard", "retries"] == 0
    diverged = rows.loc["nan_after"]
    assert diverged["status"] == "diverged" and diverged["diverged_at_step"] == 25
    assert pd.isna(diverged["error"])
    flaky = rows[rows["status"].isin(["ok", "error"]) & (rows.index == "flaky")]
    once = flaky[flaky["trial_spec"].str.contains("flaky_once")].iloc[0]
    always = flaky[flaky["trial_spec"].str.contains("flaky_always")].iloc[0]
    assert once["status"] == "ok" and once["retries"] == 1 and once["test_acc"] > 0.5
    assert always["status"] == "error" and always["retries"] == 2
    assert "attempt 3 fails on purpose" in always["error"]
    assert pd.isna(always["test_acc"]) and pd.isna(always["test_nll"])  # nothing partial
    assert (tmp_path / "flaky_always").read_text() == "3"  # 1 try + 2 retries


def test_teacher_actor_killed_midway_is_rebuilt_and_trials_succeed(tmp_path, ray_session,
                                                                  write_spec):
    import threading

    import ray

    spec = write_spec("kd_kill", replace={
        "seeds: [0]": "seeds: [0, 1, 2]",
        "  - name: ccs\n    args: {score: aum, beta: 0.1}\n": "",
        "  - mode: hard\n": "", "  - {mode: smooth, eps: 0.1, smoothing: paper}\n": "",
        "  - {mode: soft, tau: 4.0, lam: 1.0}\n": ""})
    results = ResultsStore(str(tmp_path / "out"))
    killed, sweep_over = [], threading.Event()

    def kill_the_teacher():  # until the sweep ends: no deadline to miss on a loaded machine
        while not sweep_over.is_set() and not killed:
            names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                     if a["name"].startswith("kd_kill-") and ":teacher-" in a["name"]]
            if names and results.parts("trials"):
                ray.kill(ray.get_actor(names[0], namespace="coretune"), no_restart=False)
                killed.append(names[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_teacher, daemon=True)
    killer.start()
    try:
        summary = run_sweep(spec, tmp_path / "out", cache=tmp_path / "cache")
    finally:
        sweep_over.set()
    killer.join()
    trials = results.read("trials")
    assert killed, "the teacher actor was never killed"
    assert len(trials) == 6 and (trials["status"] == "ok").all(), trials[["status", "error"]]
    assert summary.status_counts == {"ok": 6}
