"""Real sweeps through Ray Tune on CPU, read back from the part-file results and checked."""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from coretune.driver.plan import plan_sweep
from coretune.driver.run import run_sweep
from coretune.reports.results import ResultsStore
from coretune.search_spaces.schema import expand, load_spec
from coretune.selectors import budget_for
from coretune.train.data import load_dataset
from tests.conftest import TINY_SPEC


@pytest.fixture(scope="module")
def swept(tmp_path_factory, ray_session):
    root = tmp_path_factory.mktemp("sweep")
    spec = root / "tiny.yaml"
    spec.write_text(TINY_SPEC.format(name="tiny"))
    summary = run_sweep(spec, root / "out", cache=root / "cache")
    return spec, root, summary


def _results(path) -> ResultsStore:
    return ResultsStore(str(path))


def test_every_trial_lands_ok_in_parquet(swept):
    spec, root, summary = swept
    trials = _results(root / "out").read("trials")
    expected = expand(load_spec(spec))
    assert len(trials) == len(expected) == 16 and summary.trials_run == 16
    assert (trials["status"] == "ok").all() and not trials["stopped_early"].any()
    n = len(load_dataset("digits").train_y)
    assert (trials["n_selected"] == trials["ratio"].map(lambda r: budget_for(n, r))).all()
    assert trials["test_acc"].between(0.1, 1.0).all()
    soft = trials["label_mode"].isin(["soft", "kd"])
    assert trials.loc[soft, "teacher_test_acc"].gt(0.8).all()
    assert trials.loc[~soft, "teacher_test_acc"].isna().all()
    smooth = trials[trials["label_mode"] == "smooth"]
    assert len(smooth) == 4 and smooth["eps"].eq(0.1).all() and smooth["test_acc"].gt(0.1).all()
    assert smooth["smoothing"].eq("paper").all()
    assert trials["device"].eq("cpu").all() and trials["train_seconds"].gt(0).all()
    assert json.loads(trials["budget"].iloc[0]) == {"unit": "iterations", "value": 30,
                                                    "max_reports": 3}
    assert 0.0 <= summary.ray_overhead_share < 1.0 and summary.artifacts_built == 6
    # kd: the teacher service computed each (seed, epoch, index) view once, shared by trials
    (service,) = summary.teacher_service.values()
    assert service["placement"] == "node"  # 4 kd students replay seed 0's views: a replica
    assert 0 < service["views_computed"] <= service["views_served"]


def test_curves_and_selections_are_consistent(swept):
    _, root, _ = swept
    results = _results(root / "out")
    trials, curves = results.read("trials"), results.read("curves")
    epochs = curves.sort_values("epoch").groupby("trial_id")["epoch"].apply(list).to_dict()
    assert epochs == {t: [1, 2, 3] for t in trials["trial_id"]}
    last = curves.sort_values("epoch").groupby("trial_id")["test_acc"].last()
    assert np.allclose(last[trials["trial_id"]].to_numpy(), trials["test_acc"].to_numpy())
    sel = results.read("selections")
    sizes = sel.groupby("selection_key")["index"].nunique()
    assert len(sizes) == 4  # 2 selectors × 2 ratios, shared by the four label modes
    assert sorted(sizes.tolist()) == sorted(
        [budget_for(1437, 0.05), budget_for(1437, 0.2)] * 2)
    assert set(trials["selection_key"]) == set(sizes.index)
    # the stored random coreset is exactly what the selector gives for that seed
    from coretune.selectors import SelectionContext, select

    rnd = sel[(sel["selector"] == "random") & (sel["ratio"] == 0.05)]
    again = select("random", SelectionContext(1437, 10, 0), budget_for(1437, 0.05))
    assert np.array_equal(np.sort(rnd["index"].to_numpy()), again.indices)


def test_rerun_skips_finished_trials_and_keeps_rows(swept, ray_session):
    spec, root, _ = swept
    before = _results(root / "out").read("trials")
    plan = plan_sweep(spec, root / "out", root / "cache")
    assert plan.trials == [] and plan.skipped == 16 and not plan.missing
    summary = run_sweep(spec, root / "out", cache=root / "cache")
    assert summary.trials_run == 0
    pd.testing.assert_frame_equal(before, _results(root / "out").read("trials"))


def test_asha_stops_some_trials_early(swept, ray_session, tmp_path):
    spec, root, _ = swept
    summary = run_sweep(spec, tmp_path / "asha", cache=root / "cache", scheduler="asha")
    trials = _results(tmp_path / "asha").read("trials")
    assert summary.artifacts_built == 0  # teacher, dynamics and coresets came from the cache
    assert set(trials["status"]) <= {"ok", "stopped"} and trials["stopped_early"].any()
    stopped = trials[trials["stopped_early"]]
    assert (stopped["epochs_run"] < trials["epochs_run"].max()).all()


def test_a_trial_with_three_students_writes_three_rows(swept, ray_session, tmp_path, write_spec):
    _, root, _ = swept
    spec = write_spec("three", replace={
        "seeds: [0]": "seeds: [0, 1, 2]\nstudents_per_trial: 3",
        "ratios: [0.05, 0.2]": "ratios: [0.05]",
        "  - name: ccs\n    args: {score: aum, beta: 0.1}\n": "",
        "  - {mode: smooth, eps: 0.1, smoothing: paper}\n": "",
        "  - {mode: soft, tau: 4.0, lam: 1.0}\n": "",
        "  - {mode: kd, tau: 4.0, lam: 0.9}\n": ""})
    summary = run_sweep(spec, tmp_path / "three", cache=root / "cache")
    trials = _results(tmp_path / "three").read("trials")
    assert summary.tune_trials == 1 and len(trials) == 3
    assert sorted(trials["seed"]) == [0, 1, 2] and trials["group_id"].nunique() == 1
    assert (trials["status"] == "ok").all() and trials["train_seconds"].nunique() == 3
    # each student is the one it would have been alone: seed 0 equals the tiny sweep's row
    tiny = _results(root / "out").read("trials")
    alone = tiny[(tiny["selector"] == "random") & (tiny["ratio"] == 0.05)
                 & (tiny["label_mode"] == "hard")]
    grouped = trials[trials["seed"] == 0]
    assert grouped["trial_id"].item() == alone["trial_id"].item()
    assert grouped["test_nll"].item() == alone["test_nll"].item()
    curves = _results(tmp_path / "three").read("curves")
    assert len(curves) == 9 and curves.groupby("trial_id").size().eq(3).all()


def test_fused_students_write_the_rows_they_would_alone(swept, ray_session, tmp_path,
                                                       write_spec):
    _, root, _ = swept
    edits = {"ratios: [0.05, 0.2]": "ratios: [0.2]",
             "  - name: ccs\n    args: {score: aum, beta: 0.1}\n": "",
             "  - {mode: smooth, eps: 0.1, smoothing: paper}\n": "",
             "  - {mode: soft, tau: 4.0, lam: 1.0}\n": ""}
    alone = write_spec("alone", replace={"seeds: [0]": "seeds: [0, 1, 2]\nstudents_per_trial: 3",
                                         **edits}).rename(tmp_path / "reference.yaml")
    fused = write_spec("alone", replace={"seeds: [0]": "seeds: [0, 1, 2]\nfuse: 3", **edits})
    assert plan_sweep(fused, tmp_path / "dry", root / "cache").trials[0].trial_id == \
        plan_sweep(alone, tmp_path / "dry", root / "cache").trials[0].trial_id  # not keyed
    run_sweep(alone, tmp_path / "alone", cache=root / "cache")
    summary = run_sweep(fused, tmp_path / "fused", cache=root / "cache")
    a = _results(tmp_path / "alone").read("trials").sort_values("trial_id")
    f = _results(tmp_path / "fused").read("trials").sort_values("trial_id")
    assert summary.tune_trials == 2 and len(f) == 6 and list(f.columns) == list(a.columns)
    assert (f["status"] == "ok").all() and f.groupby("label_mode").size().eq(3).all()
    assert list(f["trial_id"]) == list(a["trial_id"])
    # hard labels and online KD (each student its own teacher views), as if trained alone
    assert np.allclose(f["test_nll"], a["test_nll"], rtol=1e-4)
    assert f["test_acc"].tolist() == pytest.approx(a["test_acc"].tolist(), abs=1e-9)
    curves = _results(tmp_path / "fused").read("curves")
    assert curves.groupby("trial_id").size().eq(3).all() and len(curves) == 18


@pytest.mark.slow  # torch.compile's first compilation: seconds of CPU
def test_a_compiled_student_writes_the_row_it_would_uncompiled(swept, ray_session, tmp_path,
                                                               write_spec):
    _, root, _ = swept
    spec = write_spec("tiny", replace={
        "seeds: [0]": "seeds: [0]\ncompile: default",
        "ratios: [0.05, 0.2]": "ratios: [0.05]",
        "  - name: ccs\n    args: {score: aum, beta: 0.1}\n": "",
        "  - {mode: smooth, eps: 0.1, smoothing: paper}\n": "",
        "  - {mode: soft, tau: 4.0, lam: 1.0}\n": "",
        "  - {mode: kd, tau: 4.0, lam: 0.9}\n": ""})
    run_sweep(spec, tmp_path / "compiled", cache=root / "cache")
    row = _results(tmp_path / "compiled").read("trials")
    tiny = _results(root / "out").read("trials")
    alone = tiny[(tiny["selector"] == "random") & (tiny["ratio"] == 0.05)
                 & (tiny["label_mode"] == "hard")]
    assert row["trial_id"].item() == alone["trial_id"].item()  # compile is not keyed
    assert row["status"].item() == "ok"
    assert row["test_nll"].item() == pytest.approx(alone["test_nll"].item(), rel=1e-4)


def test_plugin_artifact_kind_and_label_source_in_a_sweep(swept, ray_session, tmp_path,
                                                          write_spec):
    _, root, _ = swept
    spec = write_spec("plugin", replace={
        "seeds: [0]": "seeds: [0]\nplugins: [tests.plugins.noisy_source]",
        "  - name: ccs\n    args: {score: aum, beta: 0.1}\n": "",
        "  - {mode: smooth, eps: 0.1, smoothing: paper}\n": "",
        "  - {mode: soft, tau: 4.0, lam: 1.0}\n": "",
        "  - {mode: kd, tau: 4.0, lam: 0.9}\n": "  - {mode: noisy, args: {rate: 0.9}}\n"})
    plan = plan_sweep(spec, tmp_path / "p", root / "cache")
    noisy = [n for n in plan.nodes if n.kind == "noisy_labels"]
    assert len(noisy) == 1 and noisy[0].key not in plan.cached
    summary = run_sweep(spec, tmp_path / "p", cache=root / "cache")
    trials = _results(tmp_path / "p").read("trials")
    assert summary.artifacts_built == 1 and (trials["status"] == "ok").all()
    acc = trials.set_index(["label_mode", "ratio"])["test_acc"].sort_index()
    # 90 % of the labels flipped: the noisy students learn far less than the clean ones
    assert (acc.loc["noisy"] < acc.loc["hard"] - 0.3).all()


def test_version_bump_rebuilds_exactly_that_kind_and_dependants(swept, monkeypatch):
    spec, root, _ = swept
    before = plan_sweep(spec, root / "out2", root / "cache")
    assert not before.missing
    from coretune.artifacts import graph

    bumped = graph.get_kind("dynamics")
    with graph.KINDS.temporary():
        graph.KINDS.add("dynamics", replace(bumped, version=bumped.version + 1),
                        origin="test", replace=True)
        after = plan_sweep(spec, root / "out2", root / "cache")
    missing = {n.kind: 0 for n in after.missing}
    for n in after.missing:
        missing[n.kind] += 1
    # the dynamics run and the two ccs coresets built on it; teacher and random coresets kept
    assert missing == {"dynamics": 1, "selection": 2}
    assert all(dict(n.deps).get("scores") is not None for n in after.missing
               if n.kind == "selection")
    assert {n.key for n in after.nodes if n.kind == "teacher"} <= after.cached


def test_a_bumped_version_reruns_exactly_the_students_it_touches(swept, monkeypatch):
    """Into the same output: a dynamics bump re-plans the 8 ccs students (their coresets
    change), a selector bump the 8 random ones, a teacher bump the 8 soft and kd ones."""
    from coretune.artifacts import graph
    from coretune.selectors.base import SELECTORS

    spec, root, _ = swept
    assert plan_sweep(spec, root / "out", root / "cache").trials == []

    def bump_kind(m: ExitStack, kind: str) -> None:
        m.enter_context(graph.KINDS.temporary())
        old = graph.get_kind(kind)
        graph.KINDS.add(kind, replace(old, version=old.version + 1), origin="test",
                        replace=True)

    def replanned() -> tuple[set[tuple[str, str]], int]:
        plan = plan_sweep(spec, root / "out", root / "cache")
        return {(p.spec.selector, p.spec.label_mode) for p in plan.trials}, len(plan.trials)

    with ExitStack() as m:
        m.enter_context(SELECTORS.temporary())
        SELECTORS.add("random", replace(SELECTORS.get("random"), version=2), origin="test",
                      replace=True)
        assert replanned() == ({("random", mode) for mode in MODES}, 8)
    with ExitStack() as m:
        bump_kind(m, "dynamics")
        assert replanned() == ({("ccs", mode) for mode in MODES}, 8)
    with ExitStack() as m:
        bump_kind(m, "teacher")
        assert replanned() == ({(s, mode) for s in ("random", "ccs") for mode in ("soft", "kd")},
                              8)
    assert plan_sweep(spec, root / "out", root / "cache").trials == []


MODES = ("hard", "smooth", "soft", "kd")


def test_keys_do_not_depend_on_where_the_data_lives(tmp_path, write_spec):
    import shutil

    from coretune.train.datasets.fake import write_fake, write_idx

    first = tmp_path / "a" / "fmnist"
    write_fake("fashion_mnist", first, per_class=20, test_per_class=5)
    spec = write_spec(replace={"datasets: digits": "datasets: fashion_mnist"})
    a = plan_sweep(spec, tmp_path / "o", tmp_path / "c", data_root=str(first))
    moved = tmp_path / "elsewhere" / "data"
    moved.parent.mkdir()
    shutil.move(first, moved)
    b = plan_sweep(spec, tmp_path / "o", tmp_path / "c", data_root=str(moved))
    assert [t.trial_id for t in a.trials] == [t.trial_id for t in b.trials]
    assert [n.key for n in a.nodes] == [n.key for n in b.nodes]
    write_idx(moved / "t10k-labels-idx1-ubyte.gz", (np.arange(50) + 1) % 10)  # changed data
    c = plan_sweep(spec, tmp_path / "o", tmp_path / "c", data_root=str(moved))
    assert not {n.key for n in c.nodes} & {n.key for n in a.nodes}


def test_library_selectors_in_a_sweep_and_weights_reach_the_loss(ray_session, tmp_path,
                                                                   write_spec, monkeypatch):
    """CRAIG and GradMatch coresets carry weights through the store into the trial's
    weighted loss: the sweep's students equal offline training with those weights and
    differ from training on the same indices unweighted. The other proxy-signal selectors
    (features, per-epoch outputs, validation losses) run in the same sweep, with relative
    output and cache paths, which Ray's workers (in other directories) must find."""
    from coretune.spec import DataSpec, TrialSpec
    from coretune.train.data import to_device
    from coretune.train.evaluate import split_evaluators
    from coretune.train.labels import HardLabels
    from coretune.train.loop import train

    selectors = "".join(f"  - name: {name}\n" for name in
                        ("craig", "gradmatch", "moderate", "d2", "dual", "cld"))
    spec = write_spec("library", {
        "  - name: random\n  - name: ccs\n    args: {score: aum, beta: 0.1}\n": selectors,
        "datasets: digits": "datasets: [{name: digits, val_fraction: 0.1}]",
        "ratios: [0.05, 0.2]": "ratios: [0.05]",
        "  - {mode: smooth, eps: 0.1, smoothing: paper}\n  - {mode: soft, tau: 4.0, lam: 1.0}\n"
        "  - {mode: kd, tau: 4.0, lam: 0.9}\n": ""})
    monkeypatch.chdir(tmp_path)  # relative --out and --cache (as `make demo` passes them)
    summary = run_sweep(spec, "out", cache="cache", quiet=True)
    results = ResultsStore(str(tmp_path / "out"))
    trials = results.read("trials").set_index("selector")
    assert summary.status_counts == {"ok": 6} and len(trials) == 6
    sel = results.read("selections")
    weighted = sel[sel["weight"].notna()]
    assert set(weighted["selector"]) == {"craig", "gradmatch"}
    ds = load_dataset(DataSpec(name="digits", val_fraction=0.1))
    data = to_device(ds)
    for name in ("craig", "gradmatch"):
        row = trials.loc[name]
        t = TrialSpec.model_validate({**json.loads(row["trial_spec"]), "sweep": "library"})
        rows = weighted[weighted["selector"] == name].sort_values("index")
        idx, w = rows["index"].to_numpy(), rows["weight"].to_numpy()
        assert len(idx) == row["n_selected"] and (w >= 0).all() and w.std() > 0

        def student(t, idx, weights):
            from coretune.train.loop import init_model

            model = init_model(t.arch, t.arch_args, ds.input_shape, 10, t.seed, "cpu")
            return train(model, data, idx, HardLabels(data.train_y), split_evaluators(data),
                         t.budget, t.optimizer, t.seed, augment=t.augment,
                         weights=weights).metrics["test_nll"]

        assert student(t, idx, w) == pytest.approx(row["test_nll"], rel=1e-5)
        assert student(t, idx, None) != pytest.approx(row["test_nll"], rel=1e-3)


@pytest.mark.parametrize("name", ["soft_label_table7_digits", "soft_label_table5_digits"])
def test_noisy_label_and_cross_architecture_spaces_run_on_digits(ray_session, tmp_path, name):
    """The paper's noisy-label (T7) and cross-architecture (T5) settings, cut down."""
    spec = load_spec(name, ["seeds=[0]", "ratios=[0.2]", "budget.value=60",
                            "teacher.budget.value=3", "dynamics.budget.value=3"])
    summary = run_sweep(spec, tmp_path / "out", cache=tmp_path / "cache", quiet=True)
    trials = ResultsStore(str(tmp_path / "out")).read("trials")
    assert summary.status_counts == {"ok": len(trials)} and len(trials) == len(expand(spec))
    if name == "soft_label_table5_digits":
        assert set(trials["arch"]) == {"small_cnn", "vit_small"}
        assert (trials["trial_spec"].map(lambda s: json.loads(s)["dynamics"]) .dropna()
                .map(lambda d: d["arch"]) == "mlp").all()
    else:
        specs = trials["trial_spec"].map(json.loads)
        assert specs.map(lambda s: s["dataset"]["label_noise"]["rate"]).eq(0.2).all()


def test_difficulty_histogram_of_a_coreset_from_the_store(swept):
    from coretune.driver.figures import difficulty_figure

    _, root, _ = swept
    figs = difficulty_figure([str(root / "out")], str(root / "cache"))
    assert list(figs) == ["difficulty"] and figs["difficulty"][:8] == b"\x89PNG\r\n\x1a\n"
    assert difficulty_figure([str(root / "out")], str(root / "empty")) == {}
