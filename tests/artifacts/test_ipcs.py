"""Images per class (Hard Truths): ``ipcs:`` beside ``ratios:``. A selector that may see
labels keeps exactly IPC images of every class; a label-free one keeps IPC × classes in
total, blind to labels; a class with fewer images than the IPC is refused before Ray."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from coretune.artifacts.graph import build
from coretune.artifacts.selection import load_selection
from coretune.artifacts.store import ArtifactStore
from coretune.driver.plan import plan_sweep
from coretune.errors import SpecError
from coretune.search_spaces.schema import expand, load_spec

IPC_SPEC = {
    "ratios: [0.05, 0.2]": "ratios: []\nipcs: [1, 7]",
    "  - name: ccs\n    args: {score: aum, beta: 0.1}\n":
        "  - name: prototypicality\n    args: {encoder: pixels}\n",
    "  - {mode: smooth, eps: 0.1, smoothing: paper}\n": "",
    "  - {mode: soft, tau: 4.0, lam: 1.0}\n": "", "  - {mode: kd, tau: 4.0, lam: 0.9}\n": "",
}


def _built(plan, trial):
    store: ArtifactStore = plan.store
    for node in trial.selection.walk():  # dependencies first
        build(node, store, plan.datasets[trial.data_key], "cpu")
    return load_selection(store.load(trial.selection.key), len(
        plan.datasets[trial.data_key].train_y))[0]


def test_ipc_counts_are_exact_per_class_and_label_free_budgets_blind(write_spec, tmp_path):
    plan = plan_sweep(write_spec("ipc", replace=IPC_SPEC), tmp_path / "o", tmp_path / "c")
    labels = plan.datasets[plan.trials[0].data_key].train_y
    n, classes = len(labels), int(labels.max()) + 1
    assert {t.spec.ipc for t in plan.trials} == {1, 7}
    for t in plan.trials:
        assert t.spec.ratio == pytest.approx(t.spec.ipc * classes / n)
        idx = _built(plan, t)
        assert idx.size == t.spec.ipc * classes
        counts = np.bincount(labels[idx], minlength=classes)
        if t.spec.selector == "random":  # may see labels: exact per-class counts
            assert (counts == t.spec.ipc).all(), counts
    # label-free: the same total budget; not per-class counts (its coreset at IPC 7 is
    # not balanced; the next test checks it never reads the labels)
    free = next(t for t in plan.trials if t.spec.selector == "prototypicality"
                and t.spec.ipc == 7)
    assert not (np.bincount(labels[_built(plan, free)], minlength=classes) == 7).all()


def test_a_label_free_ipc_coreset_does_not_depend_on_the_labels(write_spec, tmp_path):
    plan = plan_sweep(write_spec("ipc", replace=IPC_SPEC), tmp_path / "o", tmp_path / "c")
    trial = next(t for t in plan.trials if t.spec.selector == "prototypicality"
                 and t.spec.ipc == 7)
    chosen = _built(plan, trial)
    ds = plan.datasets[trial.data_key]
    relabelled = dataclasses.replace(
        ds, train_y=np.random.default_rng(0).permutation(ds.train_y))
    store = ArtifactStore(str(tmp_path / "other_cache"))
    for node in trial.selection.walk():
        build(node, store, relabelled, "cpu")
    again = load_selection(store.load(trial.selection.key), len(ds.train_y))[0]
    assert np.array_equal(again, chosen)


def test_an_ipc_above_a_class_size_is_refused_before_ray(write_spec, tmp_path):
    # digits' training split: 1,437 images, the smallest class (8) has 139
    spec = write_spec("big", replace={**IPC_SPEC, "ipcs: [1, 7]": "ipcs: [1, 140]"})
    with pytest.raises(SpecError, match=r"'ipcs': 140 .*class 8 of digits.* has 139$"):
        plan_sweep(spec, tmp_path / "o", tmp_path / "c")
    spec = write_spec("bigger", replace={**IPC_SPEC, "ipcs: [1, 7]": "ipcs: [150]"})
    with pytest.raises(SpecError, match=r"'ipcs': 150 .* 1,500 images, but .* has 1,437"):
        plan_sweep(spec, tmp_path / "o", tmp_path / "c")


def test_ratios_or_ipcs_are_needed_and_ipcs_are_positive(write_spec):
    with pytest.raises(SpecError, match="ratios or ipcs"):
        load_spec(write_spec("none", replace={"ratios: [0.05, 0.2]": "ratios: []"}))
    with pytest.raises(SpecError, match="ipcs"):
        load_spec(write_spec("zero", replace={"ratios: [0.05, 0.2]": "ipcs: [0]"}))


def test_ratio_trials_keep_their_ids_when_ipcs_exist(write_spec):
    """The new field stays out of every ratio trial's key (the key rule)."""
    spec = load_spec(write_spec("both", replace={"ratios: [0.05, 0.2]":
                                                 "ratios: [0.05, 0.2]\nipcs: [3]"}))
    trials = expand(spec, {d: 1437 for d in spec.datasets})
    plain = expand(load_spec(write_spec("plain")))
    assert [t.trial_id("fp") for t in trials if t.ipc is None] == \
        [t.trial_id("fp") for t in plain]
    assert len(trials) == len(plain) * 3 // 2


def test_the_full_data_arm_is_one_per_compute_level_mode_and_seed(write_spec):
    spec = load_spec(write_spec("full", replace={
        **IPC_SPEC, "ipcs: [1, 7]": "ipcs: [1, 7]\nfull_data: true",
        "budget: {unit: iterations, value: 30, max_reports: 3}":
            "budget: {unit: full_epochs, value: [1, 2], max_reports: 3}"}))
    trials = expand(spec, {d: 1437 for d in spec.datasets})
    full = [t for t in trials if t.ratio == 1.0]
    assert len(full) == 2  # compute levels x one label mode x one seed
    assert all(t.selector == "random" and t.ipc is None for t in full)
    assert len(trials) == 2 * 2 * 2 + 2  # selectors x ipcs x compute + the full-data arms
    # the grid listing random at ratio 1 already: the same arm, not a second one
    both = load_spec(write_spec("both", replace={
        **IPC_SPEC, "ipcs: [1, 7]": "ipcs: [1, 7]\nfull_data: true",
        "ratios: []": "ratios: [1.0]",
    }))
    ids = [t.trial_id("fp") for t in expand(both, {d: 1437 for d in both.datasets})]
    assert len(ids) == len(set(ids))
