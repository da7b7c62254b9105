"""A real sweep through Ray Tune on CPU, read back from Parquet and checked."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from coretune.harness.data import load_dataset
from coretune.harness.runner import run_sweep
from coretune.reports.schema import CURVES, SELECTIONS, TRIALS, read_table
from coretune.search_spaces.schema import expand, load_spec
from coretune.selectors import budget_for


@pytest.fixture(scope="module")
def swept(tmp_path_factory, ray_session):
    root = tmp_path_factory.mktemp("sweep")
    from tests.conftest import TINY_SPEC

    spec = root / "tiny.yaml"
    spec.write_text(TINY_SPEC.format(name="tiny"))
    summary = run_sweep(spec, root / "out", cache_dir=root / "cache")
    return spec, root, summary


def test_every_trial_lands_ok_in_parquet(swept):
    spec, root, summary = swept
    trials = read_table(root / "out" / "trials.parquet", TRIALS)
    expected = expand(load_spec(spec))
    assert len(trials) == len(expected) == 16 and summary.trials_run == 16
    assert set(trials["trial_id"]) == {t["trial_id"] for t in expected}
    assert (trials["status"] == "ok").all() and not trials["stopped_early"].any()
    n = len(load_dataset("digits").train_y)
    assert (trials["n_selected"] == trials["ratio"].map(lambda r: budget_for(n, r))).all()
    assert trials["test_acc"].between(0.1, 1.0).all()
    soft = trials["label_mode"].isin(["soft", "kd"])
    assert trials.loc[soft, "teacher_test_acc"].gt(0.8).all()
    assert trials.loc[~soft, "teacher_test_acc"].isna().all()
    smooth = trials[trials["label_mode"] == "smooth"]
    assert len(smooth) == 4 and smooth["eps"].eq(0.1).all() and smooth["test_acc"].gt(0.1).all()
    assert trials["device"].eq("cpu").all() and trials["train_seconds"].gt(0).all()
    assert json.loads(trials["budget"].iloc[0]) == {"unit": "iterations", "value": 30,
                                                    "max_reports": 3}
    assert 0.0 <= summary.ray_overhead_share < 1.0
    # kd: the teacher service computed each (seed, epoch, index) view once, shared by trials
    (service,) = summary.teacher_service.values()
    assert 0 < service["views_computed"] <= service["views_served"]


def test_curves_and_selections_are_consistent(swept):
    _, root, _ = swept
    trials = read_table(root / "out" / "trials.parquet", TRIALS)
    curves = read_table(root / "out" / "curves.parquet", CURVES)
    epochs = curves.sort_values("epoch").groupby("trial_id")["epoch"].apply(list).to_dict()
    assert epochs == {t: [1, 2, 3] for t in trials["trial_id"]}
    last = curves.sort_values("epoch").groupby("trial_id")["test_acc"].last()
    assert np.allclose(last[trials["trial_id"]].to_numpy(), trials["test_acc"].to_numpy())
    sel = read_table(root / "out" / "selections.parquet", SELECTIONS)
    sizes = sel.groupby("selection_key")["index"].nunique()
    assert len(sizes) == 4  # 2 selectors × 2 ratios, shared by the four label modes
    assert sorted(sizes.tolist()) == sorted(
        [budget_for(1437, 0.05), budget_for(1437, 0.2)] * 2)
    # the stored random coreset is exactly what the selector gives for that seed
    from coretune.selectors import SelectionContext, select

    rnd = sel[(sel["selector"] == "random") & (sel["ratio"] == 0.05)]
    again = select("random", SelectionContext(1437, 10, 0), budget_for(1437, 0.05))
    assert np.array_equal(np.sort(rnd["index"].to_numpy()), again.indices)


def test_rerun_skips_finished_trials_and_keeps_rows(swept, ray_session):
    spec, root, _ = swept
    before = read_table(root / "out" / "trials.parquet", TRIALS)
    from coretune.harness.sweep import plan_sweep

    plan = plan_sweep(spec, root / "out", root / "cache")
    assert plan.trials == [] and plan.skipped == 16
    after = read_table(root / "out" / "trials.parquet", TRIALS)
    pd.testing.assert_frame_equal(before, after)


def test_asha_stops_some_trials_early(swept, ray_session, tmp_path):
    spec, root, _ = swept
    summary = run_sweep(spec, tmp_path / "asha", cache_dir=root / "cache", scheduler="asha")
    trials = read_table(tmp_path / "asha" / "trials.parquet", TRIALS)
    assert summary.artifact_seconds < 5  # teacher and dynamics came from the cache
    assert set(trials["status"]) <= {"ok", "stopped"} and trials["stopped_early"].any()
    stopped = trials[trials["stopped_early"]]
    assert (stopped["epochs_run"] < trials["epochs_run"].max()).all()
