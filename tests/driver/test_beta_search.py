"""The β search's two executors agree: one rule, run in process and on Ray Tune.

First without a Ray cluster: Tune's protocol (searcher suggests, scheduler decides at each
report, searcher hears of each ended trial) is driven by hand over synthetic β curves, with
several searches interleaved, and must stop the same trials and end each grid at the same
β as :func:`search_in_process`. Then ELFS end to end through Ray Tune (ratios in parallel,
the rule's ASHA per search): the same β curves, reports, stopped trials and β* as the
in-process search, rows written, and students trained on the ELFS coresets."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from coretune.artifacts import beta_search as bs
from coretune.artifacts.beta_search import (
    HELDOUT_METRIC,
    TEST,
    SearchInputs,
    SearchRule,
    search_in_process,
)
from coretune.driver.beta_search_tune import RuleScheduler, SequentialGrid
from coretune.driver.plan import plan_sweep
from coretune.driver.run import run_sweep
from coretune.reports.results import ResultsStore

SPEC = {
    "name": "elfs_tune", "datasets": "digits", "archs": "mlp", "seeds": [0],
    "ratios": [0.1, 0.3],
    "selectors": [{"name": "elfs", "args": {
        "encoder": "pca", "encoder_args": {"dim": 16}, "knn_k": 10, "clustering": "kmeans",
        "beta_grid": [0.0, 0.1, 0.2, 0.9], "search_scheduler": "asha",
        "grace_period": 1, "reduction_factor": 2.0, "patience": 2}}],
    "label_modes": [{"mode": "hard"}, {"mode": "soft", "tau": 4.0, "lam": 1.0}],
    "budget": {"unit": "iterations", "value": 120, "max_reports": 4},
    "optimizer": {"lr": 0.05, "batch_size": 32},
    "teacher": {"arch": "mlp", "seed": 0, "optimizer": {"lr": 0.05, "batch_size": 64},
                "budget": {"value": 4}},
    "dynamics": {"arch": "mlp", "seed": 0, "optimizer": {"lr": 0.05, "batch_size": 64},
                 "budget": {"value": 3}},
}

# ------------------------------------------------------------- the protocol, by hand
MAX_REPORTS = 6


def _params(scheduler: str, seed: int) -> dict:
    return {"grid": [round(0.1 * i, 1) for i in range(10)], "ratio": 0.2, "patience": 2,
            "tolerance": 1.0, "scheduler": scheduler, "grace_period": 1,
            "reduction_factor": 2.0, "seed": seed,
            "student": {"budget": {"max_reports": MAX_REPORTS}}}


def _curves(seed: int) -> dict[float, list[float]]:
    """Per β a rising held-out curve over the reports, β's final level unimodal in β
    (with noise), so that ASHA stops some trials and the grid ends before its last β."""
    rng = np.random.default_rng(seed)
    peak = rng.uniform(0.2, 0.7)
    out = {}
    for beta in _params("fifo", seed)["grid"]:
        level = 0.9 - 0.8 * abs(beta - peak) + rng.normal(0, 0.03)
        out[beta] = [float(level * (1 - 0.5 ** (t + rng.uniform(0, 1))))
                     for t in range(1, MAX_REPORTS + 1)]
    return out


def _reports(curve: list[float]):
    for t, value in enumerate(curve, start=1):
        yield {HELDOUT_METRIC: value, TEST: value / 2, "final": t == len(curve)}


def _in_process(monkeypatch, params: dict, curves: dict) -> bs.GridState:
    inputs = SimpleNamespace(params=params, train_pos=np.arange(1000), val_pos=np.arange(100))
    monkeypatch.setattr(bs, "beta_trial", lambda _inputs, beta: _reports(curves[beta]))
    return search_in_process(inputs)


def _on_tune_protocol(searches: dict[str, tuple[dict, dict]]) -> dict[str, bs.GridState]:
    """The calls Tune makes of the executor's searcher and scheduler, with the searches'
    trials running side by side, one report each in turn."""
    rules = {key: SearchRule.for_search(p, 1000, 100) for key, (p, _) in searches.items()}
    grid = SequentialGrid({key: ({"key": key}, rule) for key, rule in rules.items()})
    scheduler = RuleScheduler(rules)
    running: dict[str, tuple[SimpleNamespace, object, int]] = {}
    count = 0
    while True:
        while (config := grid.suggest(f"t{count}")) not in (None, Searcher.FINISHED):
            trial = SimpleNamespace(trial_id=f"t{count}", config=config)
            curve = searches[config["node"]["key"]][1][config["beta"]]
            running[trial.trial_id] = (trial, _reports(curve), 0)
            count += 1
        if config == Searcher.FINISHED:
            assert not running
            return {key: rule.grid for key, rule in rules.items()}
        assert running, "the searcher waits on no trial"
        for tid, (trial, reports, it) in list(running.items()):
            result = {**next(reports), "training_iteration": it + 1}
            decision = scheduler.on_trial_result(None, trial, result)
            if decision == TrialScheduler.STOP or result["final"]:
                grid.on_trial_complete(tid, result)
                del running[tid]
            else:
                running[tid] = (trial, reports, it + 1)


@pytest.mark.parametrize("scheduler", ["asha", "fifo"])
def test_tune_executor_follows_the_same_rule_as_the_in_process_search(monkeypatch, scheduler):
    searches = {f"s{seed}": (_params(scheduler, seed), _curves(seed)) for seed in range(6)}
    on_tune = _on_tune_protocol(searches)
    stopped = early = 0
    for key, (params, curves) in searches.items():
        reference = _in_process(monkeypatch, params, curves)
        assert on_tune[key].results == reference.results, key  # β, accuracies, status, reports
        assert on_tune[key].best() == reference.best() and on_tune[key].done
        early += len(reference.results) < len(reference.betas)
        stopped += sum(r["status"] == "stopped" for r in reference.results.values())
    assert early > 0  # some grids ended before their last β
    assert (stopped > 0) == (scheduler == "asha")  # ASHA stopped trials, FIFO none


# ------------------------------------------------------------- ELFS through Ray Tune
def test_beta_search_as_tune_trials_matches_the_in_process_search(ray_session, tmp_path):
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    summary = run_sweep(tmp_path / "spec.yaml", tmp_path / "out", cache=tmp_path / "cache",
                        quiet=True)
    assert summary.status_counts == {"ok": 4}
    rows = ResultsStore(str(tmp_path / "out")).read("beta_search")
    assert set(rows["ratio"]) == {0.1, 0.3} and rows.groupby("ratio")["chosen"].sum().eq(1).all()
    assert (rows["status"] == "stopped").any()  # the rule's ASHA pruned weak β trials
    trials = ResultsStore(str(tmp_path / "out")).read("trials")
    chosen = rows[rows["chosen"]].set_index("ratio")["beta"]
    assert (trials["beta"] == trials["ratio"].map(chosen)).all()  # the rows carry β*
    plan = plan_sweep(tmp_path / "spec.yaml", tmp_path / "out2", tmp_path / "cache")
    searches = [n for n in plan.nodes if n.kind == "beta_search"]
    assert len(searches) == 2 and all(n.key in plan.cached for n in searches)
    ds = next(iter(plan.datasets.values()))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the trials (1 CPU each): the same float reductions
    try:
        _compare(plan, searches, ds, rows)
    finally:
        torch.set_num_threads(threads)


def _compare(plan, searches, ds, rows) -> None:
    for node in searches:
        deps = dict(node.deps)
        scores = plan.store.load(deps["scores"].key)
        reference = search_in_process(SearchInputs.build(
            ds, plan.store.load(deps["labels"].key).array("labels"),
            {k: scores.array(k) for k in ("aum", "forgetting", "el2n")}, node.params))
        tried = sorted(reference.results)
        ref = [reference.results[b] for b in tried]
        art = plan.store.load(node.key)
        assert art.meta["beta"] == reference.best()
        assert art.array("betas").tolist() == tried  # the same β curve ...
        assert art.array("heldout_acc").tolist() == [r["heldout_acc"] for r in ref]
        assert [None if math.isnan(v) else v for v in art.array(TEST).tolist()] == [
            r[TEST] for r in ref]
        assert art.array("stopped").tolist() == [r["status"] == "stopped" for r in ref]
        assert art.array("epochs").tolist() == [r["epochs"] for r in ref]  # ... same stops
        mine = rows[rows["search_key"] == node.key].sort_values("beta")
        assert mine["beta"].tolist() == tried
        assert mine["status"].tolist() == [r["status"] for r in ref]
        assert mine["reports"].tolist() == [r["epochs"] for r in ref]
        assert mine.loc[mine["chosen"], "beta"].item() == reference.best()
        assert (mine["trials_run"] <= mine["grid_size"]).all()
