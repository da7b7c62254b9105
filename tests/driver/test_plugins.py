"""Every plugin family in one real sweep, each plugin one file listed under ``plugins:``.

On the plugin dataset ``digits_permuted`` (:mod:`tests.plugins.permuted_digits`), the plugin
selector (:mod:`tests.plugins.plugin_selector`, features from the proxy run) and ELFS with
``beta: auto`` on the plugin encoder (:mod:`tests.plugins.plugin_encoder`: embeddings →
k-NN → k-means pseudo-labels → β search as Tune trials) train students of the plugin arch
(:mod:`tests.plugins.plugin_arch`, also the teacher's and the proxy runs' arch) with the
plugin augmentation op (:mod:`tests.plugins.plugin_augment`) under hard labels, the plugin
label source ``noisy`` (built on the plugin artifact kind ``noisy_labels``) and ``kd`` from
the plugin-arch teacher. No file outside ``tests/plugins`` names any of them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from coretune.artifacts.selection import consumer_view
from coretune.driver.plan import plan_sweep
from coretune.driver.run import run_sweep
from coretune.reports.results import ResultsStore
from coretune.selectors import budget_for
from coretune.train.encoders import encode

PLUGINS = ["tests.plugins.plugin_selector", "tests.plugins.plugin_encoder",
           "tests.plugins.noisy_kind", "tests.plugins.noisy_source",
           "tests.plugins.permuted_digits", "tests.plugins.plugin_arch",
           "tests.plugins.plugin_augment"]
ENCODER_ARGS = {"dim": 16, "seed": 3}
BETA_GRID = [0.0, 0.2]
RATIO = 0.2
SPEC = {
    "name": "all_plugins", "plugins": PLUGINS, "datasets": "digits_permuted",
    "archs": [{"name": "plugin_tiny_mlp", "args": {"hidden": 24}}], "seeds": [0],
    "ratios": [RATIO],
    "selectors": [
        {"name": "class_mean_distance"},  # keep: far, class-balanced by default
        {"name": "elfs", "args": {
            "beta": "auto", "encoder": "random_projection", "encoder_args": ENCODER_ARGS,
            "knn_k": 5, "clustering": "kmeans", "beta_grid": BETA_GRID,
            "search_scheduler": "asha", "grace_period": 1, "reduction_factor": 2.0}}],
    "label_modes": [{"mode": "hard"}, {"mode": "noisy"}, {"mode": "kd", "tau": 4.0, "lam": 0.9}],
    "augment": {"pad": 1, "ops": [{"name": "invert", "args": {"share": 0.5}}]},
    "budget": {"unit": "iterations", "value": 20, "max_reports": 2},
    "optimizer": {"lr": 0.05, "batch_size": 32},
    "teacher": {"arch": "plugin_tiny_mlp", "arch_args": {"hidden": 16}, "seed": 0,
                "optimizer": {"lr": 0.05, "batch_size": 64}, "budget": {"value": 2}},
    "dynamics": {"arch": "plugin_tiny_mlp", "seed": 0,
                 "optimizer": {"lr": 0.05, "batch_size": 64}, "budget": {"value": 2}},
}


@pytest.fixture(scope="module")
def swept(tmp_path_factory, ray_session):
    root = tmp_path_factory.mktemp("plugins")
    (root / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    summary = run_sweep(root / "spec.yaml", root / "out", cache=root / "cache", quiet=True)
    plan = plan_sweep(root / "spec.yaml", root / "fresh", root / "cache")
    return root, summary, plan


def test_every_student_of_the_plugin_sweep_is_ok(swept):
    root, summary, plan = swept
    trials = ResultsStore(str(root / "out")).read("trials")
    assert summary.status_counts == {"ok": 6}
    assert len(trials) == 6 and (trials["status"] == "ok").all()
    assert set(trials["dataset"]) == {"digits_permuted"}
    assert set(trials["arch"]) == {"plugin_tiny_mlp"}
    assert sorted(zip(trials["selector"], trials["label_mode"], strict=True)) == sorted(
        (s, m) for s in ("class_mean_distance", "elfs") for m in ("hard", "noisy", "kd"))
    n = len(next(iter(plan.datasets.values())).train_y)
    assert (trials["n_selected"] == budget_for(n, RATIO)).all()
    assert trials["test_acc"].between(0.0, 1.0).all()
    for spec in trials["trial_spec"]:
        augment = json.loads(spec)["augment"]
        assert augment["pad"] == 1 and [op["name"] for op in augment["ops"]] == ["invert"]
    kd = trials[trials["label_mode"] == "kd"]
    assert kd["teacher_test_acc"].notna().all()
    (service,) = summary.teacher_service.values()  # the plugin-arch teacher served views
    assert 0 < service["views_computed"] <= service["views_served"]
    # every artifact of the sweep is in the cache: a fresh plan builds nothing
    assert plan.trials and not plan.missing


def test_plugin_artifacts_hold_what_the_plugins_compute(swept):
    root, _, plan = swept
    ds = next(iter(plan.datasets.values()))
    kinds = {n.kind for n in plan.nodes}
    assert {"noisy_labels", "embeddings", "knn", "pseudo_labels", "pseudo_dynamics",
            "beta_search", "teacher", "dynamics", "selection"} <= kinds
    # the plugin encoder's embeddings, as computed offline
    (emb_node,) = [n for n in plan.nodes if n.kind == "embeddings"]
    assert emb_node.params["encoder"] == "random_projection"
    stored = plan.store.load(emb_node.key).array("embeddings")
    assert np.allclose(stored, encode("random_projection", ds, ENCODER_ARGS), atol=1e-5)
    # the plugin kind flipped about its default share of the permuted labels
    (noisy_node,) = [n for n in plan.nodes if n.kind == "noisy_labels"]
    noisy = plan.store.load(noisy_node.key).array("labels")
    assert 0.1 < float((noisy != ds.train_y).mean()) < 0.3
    # β* of the plugin-encoder ELFS came from the grid, and its students carry it
    betas = ResultsStore(str(root / "out")).read("beta_search")
    assert set(betas["beta"]) <= set(BETA_GRID) and betas["chosen"].sum() == 1
    chosen = float(betas.loc[betas["chosen"], "beta"].item())
    trials = ResultsStore(str(root / "out")).read("trials")
    assert (trials.loc[trials["selector"] == "elfs", "beta"] == chosen).all()


def test_plugin_selector_kept_the_farthest_from_each_class_mean(swept):
    _, _, plan = swept
    ds = next(iter(plan.datasets.values()))
    (planned,) = {p.selection.key: p for p in plan.trials
                  if p.spec.selector == "class_mean_distance"}.values()
    node = planned.selection
    indices = plan.store.load(node.key).array("indices")
    assert indices.size == budget_for(len(ds.train_y), RATIO)
    counts = np.bincount(ds.train_y[indices], minlength=ds.num_classes)
    assert counts.max() - counts.min() <= 1  # class-balanced by default
    features = consumer_view("features", plan.store.load(dict(node.deps)["features"].key))
    features = np.asarray(features, dtype=np.float64).reshape(len(ds.train_y), -1)
    chosen = np.zeros(len(ds.train_y), dtype=bool)
    chosen[indices] = True
    for c in range(ds.num_classes):  # the labels the selector saw: the permuted ones
        members = ds.train_y == c
        dist = np.linalg.norm(features[members] - features[members].mean(0), axis=1)
        kept = chosen[members]
        assert dist[kept].min() >= dist[~kept].max() - 1e-9, c
