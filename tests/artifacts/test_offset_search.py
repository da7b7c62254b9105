"""EL2N-Best's offset search: ELFS's β search on ground-truth labels with the selector's
EL2N window. Without Ray: its params, the offset it picks against a brute-force grid
evaluation, and that it never reads the test split. With Ray (slow): a sweep runs it as
Tune trials and commits what the in-process search builds."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import yaml

from coretune.artifacts.beta_search import (
    HELDOUT_METRIC,
    SEARCH_INPUTS,
    distinct_betas,
    search_in_process,
)
from coretune.artifacts.graph import BuildContext, node_for
from coretune.artifacts.offset_search import (
    WindowSearchInputs,
    build_offset_search,
    offset_search_params,
)
from coretune.artifacts.store import ArtifactStore
from coretune.selectors import SelectionContext, select
from coretune.spec import BudgetSpec, DataSpec, DynamicsSpec, OptimizerSpec, TrialSpec
from coretune.train.data import load_dataset

GRID = [0.0, 0.3, 0.6, 0.9]
SEARCH = {"beta_grid": GRID, "search_scheduler": "fifo", "patience": len(GRID)}


def _trial(**changes) -> TrialSpec:
    fields = {"sweep": "s", "dataset": DataSpec(name="digits"), "arch": "mlp",
              "selector": "el2n_best", "selector_args": SEARCH, "ratio": 0.2, "seed": 0,
              "optimizer": OptimizerSpec(lr=0.05, batch_size=32),
              "budget": BudgetSpec(unit="iterations", value=60, max_reports=2),
              "dynamics": DynamicsSpec(arch="mlp", budget=BudgetSpec(value=2))}
    return TrialSpec(**{**fields, **changes})


class _Scores:
    """A built ``dynamics`` artifact as the search reads it: scores by name."""

    def __init__(self, el2n: np.ndarray):
        self.scores = {"el2n": el2n, "aum": -el2n, "forgetting": np.zeros_like(el2n)}

    def array(self, name: str) -> np.ndarray:
        return self.scores[name]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def inputs(digits):
    el2n = np.random.default_rng(0).random(len(digits.train_y))
    return WindowSearchInputs.from_deps(offset_search_params(_trial()),
                                        {"scores": _Scores(el2n)}, digits)


def test_params_are_the_beta_search_on_el2n_and_the_selectors_balance():
    p = offset_search_params(_trial())
    assert p["grid"] == GRID and p["score"] == "el2n" and p["class_balanced"] is True
    assert p["scheduler"] == "fifo" and p["ratio"] == 0.2 and p["fraction"] == 0.1
    assert p["student"]["arch"] == "mlp" and p["student"]["budget"]["value"] == 60
    assert offset_search_params(_trial(selector_args={**SEARCH, "class_balanced": False}))[
        "class_balanced"] is False
    node = node_for("offset_search", _trial(), "fp")
    assert [(name, dep.kind) for name, dep in node.deps] == [("scores", "dynamics")]
    assert node_for("offset_search", _trial(seed=5), "fp").key == node.key
    assert node_for("offset_search", _trial(ratio=0.3), "fp").key != node.key
    assert SEARCH_INPUTS["offset_search"] is WindowSearchInputs


def test_each_offset_trains_on_the_selectors_own_window(inputs):
    pos = inputs.train_pos
    for offset in GRID:
        ctx = SelectionContext.from_needs(pos.size, 10, inputs.params["seed"], {
            "labels": inputs.pseudo[pos], "scores": {"el2n": inputs.difficulty[pos]}})
        expected = pos[select("el2n_best", ctx, round(0.2 * pos.size), offset=offset).indices]
        assert np.array_equal(inputs.coreset(offset), expected)
    assert not np.array_equal(inputs.coreset(0.0), inputs.coreset(0.6))


def _final(inputs, offset: float) -> dict:
    from coretune.artifacts.beta_search import beta_trial

    return list(beta_trial(inputs, offset))[-1]


def test_the_search_picks_what_a_brute_force_grid_evaluation_picks(inputs, digits):
    offsets = distinct_betas(GRID, inputs.train_pos.size, 0.2)
    assert offsets == GRID  # every offset cuts differently at ratio 0.2
    brute = {off: _final(inputs, off)[HELDOUT_METRIC] for off in offsets}
    best = max(offsets, key=lambda off: (brute[off], -off))  # ties to the smaller
    grid = search_in_process(inputs)
    assert {off: r[HELDOUT_METRIC] for off, r in grid.results.items()} == brute
    assert grid.best() == best
    built = build_offset_search(BuildContext(inputs.params, {"scores": _Scores(
        inputs.difficulty)}, digits))
    assert built.meta["beta"] == best and built.arrays["betas"].tolist() == offsets
    assert np.isnan(built.arrays["test_matched_acc"]).all()  # no test score, not even beside
    import tempfile

    from coretune.artifacts.offset_search import chosen_offset
    with tempfile.TemporaryDirectory() as root:
        art, _ = ArtifactStore(root).build_once("offset-search-test", lambda: built)
        assert chosen_offset(art) == best


def test_the_search_never_touches_the_test_split(inputs, digits):
    n = len(digits.train_y)
    train, val = inputs.train_pos, inputs.val_pos
    assert np.intersect1d(train, val).size == 0
    assert np.array_equal(np.union1d(train, val), np.arange(n))  # the training split only
    assert val.size == round(0.1 * n)
    for offset in GRID:
        assert np.isin(inputs.coreset(offset), train).all()
    [heldout] = inputs.evaluators()  # the held-out 10 % and nothing else
    assert heldout.name == "heldout"
    assert np.array_equal(heldout.images.numpy(), digits.train_x[val])
    assert not any(k.startswith("test") for k in _final(inputs, 0.3))
    # with its test split replaced by noise and wrong labels, the search is unchanged
    garbage = dataclasses.replace(
        digits, test_x=np.random.default_rng(1).integers(0, 255, digits.test_x.shape,
                                                         dtype=np.uint8),
        test_y=np.zeros_like(digits.test_y))
    blind = WindowSearchInputs.from_deps(inputs.params, {"scores": _Scores(inputs.difficulty)},
                                         garbage)
    assert search_in_process(blind).results == search_in_process(inputs).results


# --------------------------------------------------------------- on Ray Tune (slow)
SPEC = {
    "name": "el2n_best_tune", "datasets": "digits", "archs": "mlp", "seeds": [0],
    "ratios": [0.1, 0.3],
    "selectors": [{"name": "el2n_best", "args": {
        "beta_grid": [0.0, 0.2, 0.5, 0.8], "search_scheduler": "asha", "grace_period": 1,
        "reduction_factor": 2.0, "patience": 2}}],
    "label_modes": [{"mode": "hard"}],
    "budget": {"unit": "iterations", "value": 120, "max_reports": 4},
    "optimizer": {"lr": 0.05, "batch_size": 32},
    "dynamics": {"arch": "mlp", "seed": 0, "optimizer": {"lr": 0.05, "batch_size": 64},
                 "budget": {"value": 3}},
}


@pytest.mark.slow
def test_offset_search_as_tune_trials_matches_the_in_process_search(ray_session, tmp_path):
    import torch

    from coretune.driver.plan import plan_sweep
    from coretune.driver.run import run_sweep

    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    summary = run_sweep(tmp_path / "spec.yaml", tmp_path / "out", cache=tmp_path / "cache",
                        quiet=True)
    assert summary.status_counts == {"ok": 2}
    plan = plan_sweep(tmp_path / "spec.yaml", tmp_path / "out2", tmp_path / "cache")
    searches = [n for n in plan.nodes if n.kind == "offset_search"]
    assert len(searches) == 2 and all(n.key in plan.cached for n in searches)
    ds = next(iter(plan.datasets.values()))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the trials (1 CPU each): the same float reductions
    try:
        for node in searches:
            deps = {name: plan.store.load(dep.key) for name, dep in node.deps}
            reference = search_in_process(WindowSearchInputs.from_deps(node.params, deps, ds))
            art = plan.store.load(node.key)
            tried = sorted(reference.results)
            assert art.meta["beta"] == reference.best()
            assert art.array("betas").tolist() == tried
            assert art.array("heldout_acc").tolist() == [
                reference.results[b][HELDOUT_METRIC] for b in tried]
            assert art.array("stopped").tolist() == [
                reference.results[b]["status"] == "stopped" for b in tried]
            assert all(math.isnan(v) for v in art.array("test_matched_acc").tolist())
    finally:
        torch.set_num_threads(threads)
