"""The label-free pipeline without Ray: label-freedom under permuted ground truth, and the
β search against a brute-force grid."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from coretune.artifacts.beta_search import (
    SearchInputs,
    beta_trial,
    distinct_betas,
    search_in_process,
)
from coretune.artifacts.graph import build
from coretune.artifacts.selection import load_selection
from coretune.driver.plan import plan_sweep
from coretune.selectors import get_selector, register_selector
from coretune.selectors.base import SELECTORS

PIPELINE = {"encoder": "pca", "encoder_args": {"dim": 16}, "knn_k": 10,
            "clustering": "kmeans"}
SPEC = {
    "name": "label_free", "plugins": ["tests.plugins.permuted_digits"],
    "datasets": ["digits", "digits_permuted"], "archs": "mlp", "seeds": [0],
    "ratios": [0.1, 0.3],
    "selectors": [
        {"name": "elfs", "args": {**PIPELINE, "beta_grid": [0.0, 0.2, 0.4],
                                  "search_scheduler": "fifo"}},
        {"name": "prototypicality", "args": {"encoder": "pca", "encoder_args": {"dim": 16}}},
        {"name": "d2_label_free", "args": {**{k: PIPELINE[k] for k in (
            "encoder", "encoder_args", "knn_k")}}},
        {"name": "zcore", "args": {"encoder": "pca", "encoder_args": {"dim": 16},
                                   "n_samples": 3000, "redund_nn": 50}},
        {"name": "forgetting"},  # supervised: the positive control
    ],
    "label_modes": [{"mode": "hard"}],
    "budget": {"unit": "iterations", "value": 60, "max_reports": 3},
    "optimizer": {"lr": 0.05, "batch_size": 32},
    "dynamics": {"arch": "mlp", "seed": 0, "optimizer": {"lr": 0.05, "batch_size": 64},
                 "budget": {"value": 3}},
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("label_free")
    (root / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    plan = plan_sweep(root / "spec.yaml", root / "out", root / "cache")
    by_fp = {ds.fingerprint: ds for ds in plan.datasets.values()}
    for node in plan.nodes:
        build(node, plan.store, by_fp[node.fingerprint])
    picks = {}
    for p in plan.trials:
        idx, _ = load_selection(plan.store.load(p.selection.key))
        picks[(p.spec.dataset.name, p.spec.selector, p.spec.ratio)] = idx
    return plan, picks


@pytest.mark.parametrize("selector", ["elfs", "prototypicality", "d2_label_free", "zcore"])
def test_permuting_ground_truth_leaves_label_free_selections_identical(built, selector):
    plan, picks = built
    for ratio in (0.1, 0.3):
        a, b = picks[("digits", selector, ratio)], picks[("digits_permuted", selector, ratio)]
        assert np.array_equal(a, b), (selector, ratio)
    # and the keys differ: everything was rebuilt from the permuted data, not reused
    keys = {p.spec.dataset.name: p.selection.key for p in plan.trials
            if p.spec.selector == selector and p.spec.ratio == 0.1}
    assert keys["digits"] != keys["digits_permuted"]


def test_the_supervised_positive_control_does_change(built):
    _, picks = built
    assert not np.array_equal(picks[("digits", "forgetting", 0.1)],
                              picks[("digits_permuted", "forgetting", 0.1)])


def test_pseudo_labels_report_ground_truth_metrics_but_ignore_them(built):
    plan, _ = built
    (digits, permuted) = sorted((n for n in plan.nodes if n.kind == "pseudo_labels"),
                                key=lambda n: n.dataset.name)
    a, b = plan.store.load(digits.key), plan.store.load(permuted.key)
    assert np.array_equal(a.array("labels"), b.array("labels"))
    assert a.meta["ground_truth_metrics"]["acc"] > 0.5  # digits cluster well in PCA space
    assert b.meta["ground_truth_metrics"]["acc"] < 0.25  # against permuted labels: chance


def test_label_free_selectors_may_not_read_ground_truth_dynamics():
    for need in ("scores", "outputs", "features", "grad_embed", "labels"):
        with SELECTORS.temporary(), pytest.raises(ValueError, match="may not need"):
            register_selector("_sneaky", needs={need}, label_free=True)(
                lambda ctx, budget: np.arange(budget))
    assert get_selector("elfs").needs({}) == {"pseudo_scores", "beta_search"}
    assert get_selector("elfs").needs({"beta": 0.3}) == {"pseudo_scores"}


def _inputs(plan, ratio: float, grid: list[float], scheduler: str = "fifo") -> SearchInputs:
    node = next(n for n in plan.nodes if n.kind == "beta_search" and n.params["ratio"] == ratio
                and n.dataset.name == "digits")
    deps = dict(node.deps)
    ds = next(d for d in plan.datasets.values() if d.fingerprint == node.fingerprint)
    scores = plan.store.load(deps["scores"].key)
    params = {**node.params, "grid": grid, "scheduler": scheduler,
              "student": {**node.params["student"],
                          "budget": {"unit": "iterations", "value": 120, "max_reports": 4}}}
    return SearchInputs.build(ds, plan.store.load(deps["labels"].key).array("labels"),
                              {k: scores.array(k) for k in ("aum", "forgetting", "el2n")},
                              params)


def test_beta_search_picks_the_brute_force_beta_with_fewer_trials(built):
    plan, _ = built
    grid = [round(0.1 * i, 1) for i in range(10)]
    inputs = _inputs(plan, 0.3, grid)
    betas = distinct_betas(grid, inputs.train_pos.size, 0.3)
    brute = {b: list(beta_trial(inputs, b))[-1]["heldout_acc"] for b in betas}
    best = max(brute, key=lambda b: (brute[b], -b))
    state = search_in_process(inputs)
    assert state.best() == best
    assert len(state.results) < len(betas)  # stopped once the curve fell
    for b, r in state.results.items():  # the same trials, the same numbers
        assert r["heldout_acc"] == brute[b]
    with_asha = search_in_process(_inputs(plan, 0.3, grid, "asha"))
    assert len(with_asha.results) <= len(state.results) and with_asha.best() == best


def test_asha_rule_matches_ray_tunes_bracket():
    """The in-process ASHA rule decides as Ray Tune's own bracket does, trial by trial."""
    from types import SimpleNamespace

    from ray.tune.schedulers.async_hyperband import _Bracket

    from coretune.artifacts.beta_search import AshaRule

    rng = np.random.default_rng(0)
    for grace, rf, max_t in ((1, 3.0, 9), (1, 2.0, 8), (2, 2.0, 8)):
        ours, ray_bracket = AshaRule(grace, rf, max_t), _Bracket(grace, max_t, rf, 0)
        for trial in range(12):
            curve = np.sort(rng.random(max_t))  # each trial's metric rises over reports
            passed: set[float] = set()
            for t in range(1, max_t + 1):
                stop_ray = ray_bracket.on_result(SimpleNamespace(trial_id=str(trial)), t,
                                                 float(curve[t - 1])) == "STOP"
                stop_ours = t < max_t and ours.stop(t, float(curve[t - 1]), passed)
                assert stop_ours == (stop_ray and t < max_t), (grace, rf, trial, t)
                if stop_ours:
                    break


def test_distinct_betas_drop_cuts_beyond_the_budget():
    # 100 samples at ratio 0.5: β ≥ 0.5 all cut 50 samples, only the first is kept
    assert distinct_betas([0.0, 0.2, 0.5, 0.6, 0.9], 100, 0.5) == [0.0, 0.2, 0.5]


def test_grid_stops_on_a_fall_beyond_the_noise_of_the_held_out_split():
    from coretune.artifacts.beta_search import GridState

    def run(curve: dict[float, float], **kw) -> GridState:
        state = GridState(sorted(curve), **kw)
        while (beta := state.next_beta()) is not None:
            state.record(beta, curve[beta], None, "ok", 3)
        return state

    # a rising curve with a dip of 3 points at β = 0.2, then a real fall after 0.5
    curve = {0.0: 0.60, 0.1: 0.66, 0.2: 0.63, 0.3: 0.70, 0.4: 0.74, 0.5: 0.80,
             0.6: 0.60, 0.7: 0.55, 0.8: 0.50}
    strict = run(curve, patience=1)  # any fall stops: ends on the dip, β* on the slope
    assert strict.best() == 0.1 and sorted(strict.results) == [0.0, 0.1, 0.2]
    # 144 held-out samples: one standard error at 0.66 is √(0.66·0.34/144) = 3.9 points
    noisy = run(curve, patience=1, val_size=144, tolerance=1.0)
    assert noisy.best() == 0.5 and sorted(noisy.results) == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5,
                                                              0.6]
    # 5,000 held-out samples: 0.7 points; the 3-point dip is a real fall
    assert run(curve, patience=1, val_size=5000, tolerance=1.0).best() == 0.1
    assert run(curve, patience=2).best() == 0.5  # patience also rides out one dip


# ------------------------------------------------------------- typed pipeline settings
PSEUDO_SPEC = """
name: pseudo_leak
datasets: digits
archs: mlp
ratios: [0.2]
selectors:
{selectors}
label_modes:
  - {label}
budget: {{unit: iterations, value: 30, max_reports: 3}}
dynamics: {{arch: mlp, budget: {{value: 2}}}}
"""


def _plan(tmp_path, selectors: str, label: str = "{mode: pseudo}"):
    path = tmp_path / "spec.yaml"
    path.write_text(PSEUDO_SPEC.format(selectors=selectors, label=label))
    return plan_sweep(path, tmp_path / "out", tmp_path / "cache", dry_run=True)


def test_a_selectors_own_clusters_never_reach_the_pseudo_label_clustering(tmp_path):
    """prototypicality's ``clusters`` are its k-means prototypes: under ``label_mode:
    pseudo`` the pseudo-labels keep the clustering default (they took 3 before)."""
    from coretune.spec import ClusteringSpec

    plan = _plan(tmp_path, "  - {name: prototypicality, args: {clusters: 3}}")
    (trial,) = plan.trials
    assert trial.spec.selector_args == {"clusters": 3}  # enters the keys as written
    assert trial.label_nodes["pseudo_labels"].params["clusters"] is None
    assert ClusteringSpec().clusters is None
    # the pseudo mode's own args and elfs (which uses the clustering sub-spec) do set it
    plan = _plan(tmp_path, "  - {name: prototypicality, args: {clusters: 3}}",
                 "{mode: pseudo, args: {clusters: 4, clustering: kmeans}}")
    assert plan.trials[0].label_nodes["pseudo_labels"].params["clusters"] == 4
    plan = _plan(tmp_path, "  - {name: elfs, args: {clusters: 5, beta: 0.1}}",
                 "{mode: pseudo, args: {clusters: 4, clustering: kmeans}}")
    params = plan.trials[0].label_nodes["pseudo_labels"].params
    assert params["clusters"] == 5 and params["method"] == "kmeans"  # selector over source


def test_encoder_arguments_are_checked_when_the_trial_is_planned(tmp_path):
    from coretune.errors import PluginArgumentError

    with pytest.raises(PluginArgumentError, match=r"elfs.*encoder 'pca'.*\['dimm'\]"):
        _plan(tmp_path, "  - {name: elfs, args: {encoder: pca, encoder_args: {dimm: 3}}}",
              "mode: hard")
    with pytest.raises(PluginArgumentError, match="'dim'"):
        _plan(tmp_path, "  - {name: zcore, args: {encoder: pca, encoder_args: {dim: '3'}}}",
              "mode: hard")


def _trial(selector: str, **args):
    from coretune.spec import DataSpec, DynamicsSpec, TrialSpec

    return TrialSpec(sweep="s", dataset=DataSpec(name="digits"), arch="mlp", selector=selector,
                     selector_args=args, ratio=0.2, dynamics=DynamicsSpec())


def test_the_settings_used_are_the_sub_spec_defaults(monkeypatch):
    """One default per setting: the sub-spec model's default is the value a kind uses, and
    changing it changes the params (a default in a selector signature once did nothing)."""
    from pydantic import Field

    from coretune.artifacts.beta_search import beta_search_params
    from coretune.artifacts.knn import knn_params
    from coretune.spec import PIPELINE_SPECS, BetaSearchSpec, KnnSpec

    trial = _trial("d2_label_free")
    assert knn_params(trial) == {"k": KnnSpec().knn_k, "metric": KnnSpec().knn_metric}
    assert beta_search_params(_trial("elfs"))["patience"] == BetaSearchSpec().patience

    class Knn(KnnSpec):
        knn_k: int = Field(7, ge=1)

    class Search(BetaSearchSpec):
        patience: int = Field(3, ge=1)

    monkeypatch.setitem(PIPELINE_SPECS, "knn", Knn)
    monkeypatch.setitem(PIPELINE_SPECS, "beta_search", Search)
    assert knn_params(trial)["k"] == 7
    assert knn_params(_trial("d2_label_free", knn_k=9))["k"] == 9  # as written wins
    assert beta_search_params(_trial("elfs"))["patience"] == 3


def test_beta_search_params_keep_their_keys():
    from coretune.artifacts.beta_search import search_settings

    assert search_settings(_trial("elfs")) == {
        "grid": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], "patience": 1,
        "tolerance": 1.0, "fraction": 0.1, "scheduler": "asha", "score": "aum",
        "grace_period": 1, "reduction_factor": 3.0, "seed": 0}
    got = search_settings(_trial("elfs", beta_grid=[0, 0.5], stop_tolerance=2, score="el2n",
                                 search_seed=4, search_scheduler="fifo"))
    assert got["grid"] == [0.0, 0.5] and isinstance(got["tolerance"], float)
    assert (got["score"], got["seed"], got["scheduler"]) == ("el2n", 4, "fifo")
