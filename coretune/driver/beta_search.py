"""ELFS's β searches as Ray Tune trials: one trial per (search, β), searches in parallel.

A :class:`SequentialGrid` searcher proposes each search's β values in increasing order,
one at a time, and ends a search once its held-out (pseudo-label) accuracy falls
``patience`` times below the best (beyond ``tolerance`` standard errors);
:class:`PerSearchScheduler` runs one Tune ``ASHAScheduler`` per search (a β trial is
only ever compared with the β trials of its own search and ratio) or FIFO. The trials
train the students of :func:`coretune.artifacts.beta_search.beta_trial`; when Tune ends,
each search is committed to the store as the same artifact
:func:`~coretune.artifacts.beta_search.run_beta_search` builds in one process, and its β
curve is written as rows of the ``beta_search`` table.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from coretune.artifacts.beta_search import (
    METRIC,
    TEST,
    GridState,
    SearchInputs,
    beta_trial,
    distinct_betas,
)
from coretune.artifacts.graph import Node
from coretune.artifacts.store import ArtifactStore
from coretune.train.data import ImageDataset, stratified_split

_INPUTS: dict[str, SearchInputs] = {}  # per worker process: one search's shared inputs


def search_inputs(node: dict, dataset: ImageDataset, store_uri: str, device: str
                  ) -> SearchInputs:
    if node["key"] not in _INPUTS:
        store = ArtifactStore(store_uri)
        scores = store.load(node["deps"]["scores"])
        _INPUTS[node["key"]] = SearchInputs.build(
            dataset, store.load(node["deps"]["labels"]).array("labels"),
            {k: scores.array(k) for k in ("aum", "forgetting", "el2n")}, node["params"], device)
    return _INPUTS[node["key"]]


def beta_trainable(config: dict, datasets: dict[str, ImageDataset], store_uri: str,
                   cpus_per_trial: float = 1.0) -> None:
    """One β trial: its student's reports, ``final`` on the last."""
    import ray
    import torch

    torch.set_num_threads(max(1, int(cpus_per_trial)))
    device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
    node = config["node"]
    inputs = search_inputs(node, datasets[node["fingerprint"]], store_uri, device)
    for report in beta_trial(inputs, config["beta"]):
        tune.report({METRIC: report[METRIC], TEST: report.get(TEST),
                     "final": bool(report.get("final"))})


class SequentialGrid(Searcher):
    """Each search's β grid in order, one pending trial per search, stopped by its rule."""

    def __init__(self, searches: dict[str, tuple[dict, GridState]]):
        super().__init__(metric=METRIC, mode="max")
        self.searches = searches
        self.pending: dict[str, tuple[str, float]] = {}  # trial id → (search key, β)
        self.reports: dict[str, int] = {}

    def suggest(self, trial_id: str) -> dict | None:
        busy = {key for key, _ in self.pending.values()}
        for key, (node, state) in self.searches.items():
            beta = state.next_beta()
            if key not in busy and beta is not None:
                self.pending[trial_id] = (key, beta)
                return {"node": node, "beta": beta}
        if all(state.done for _, state in self.searches.values()):
            return Searcher.FINISHED
        return None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.reports[trial_id] = self.reports.get(trial_id, 0) + 1

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        key, beta = self.pending.pop(trial_id)
        state = self.searches[key][1]
        if error or not result:
            raise RuntimeError(f"β trial (search {key}, β = {beta}) failed")
        status = "ok" if result.get("final") else "stopped"
        # Tune passes the last result here, not to on_trial_result: it is one more report
        state.record(beta, float(result[METRIC]), result.get(TEST), status,
                     self.reports.pop(trial_id, 0) + 1)


class PerSearchScheduler(FIFOScheduler):
    """One ASHA (or FIFO) per search: β trials compete only within their own search."""

    def __init__(self, settings: dict[str, dict]):
        super().__init__()
        self.settings = settings
        self.by_search: dict[str, TrialScheduler] = {}
        self._goal = (METRIC, "max")

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        self._goal = (metric or self._goal[0], mode or self._goal[1])
        return True

    def _of(self, trial) -> TrialScheduler:
        key = trial.config["node"]["key"]
        if key not in self.by_search:
            p = self.settings[key]
            sched = (ASHAScheduler(time_attr="training_iteration", max_t=p["max_t"],
                                   grace_period=p["grace_period"],
                                   reduction_factor=p["reduction_factor"])
                     if p["scheduler"] == "asha" else FIFOScheduler())
            sched.set_search_properties(*self._goal)
            self.by_search[key] = sched
        return self.by_search[key]

    def on_trial_add(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)


def run_beta_searches(nodes: list[Node], datasets: dict[str, ImageDataset],
                      store: ArtifactStore, resources, tune_storage: str | None = None
                      ) -> dict[str, GridState]:
    """Run every search of ``nodes`` as Tune trials; commit each as its artifact."""
    by_fp = {ds.fingerprint: ds for ds in datasets.values()}
    searches: dict[str, tuple[dict, GridState]] = {}
    settings: dict[str, dict] = {}
    for node in nodes:
        p = dict(node.params)
        deps = {name: dep.key for name, dep in node.deps}
        pseudo = store.load(deps["labels"]).array("labels")
        train_pos, val_pos = stratified_split(pseudo, p["fraction"], p["seed"])
        payload = {"key": node.key, "params": p, "deps": deps, "fingerprint": node.fingerprint}
        searches[node.key] = (payload, GridState(
            distinct_betas(p["grid"], train_pos.size, p["ratio"]), p["patience"],
            val_pos.size, p["tolerance"]))
        settings[node.key] = {"scheduler": p["scheduler"], "grace_period": p["grace_period"],
                              "reduction_factor": p["reduction_factor"],
                              "max_t": p["student"]["budget"]["max_reports"]}
    trainable = tune.with_resources(
        tune.with_parameters(beta_trainable, datasets=by_fp, store_uri=store.uri,
                             cpus_per_trial=resources.cpu),
        {"cpu": resources.cpu, "gpu": resources.gpu})
    total = sum(len(state.betas) for _, state in searches.values())
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=SequentialGrid(searches),
                                    scheduler=PerSearchScheduler(settings), metric=METRIC,
                                    mode="max", num_samples=total, reuse_actors=True),
        run_config=tune.RunConfig(
            name=f"beta-search-{int(time.time())}",
            storage_path=tune_storage or os.path.join(tempfile.gettempdir(), "coretune-tune"),
            verbose=0))
    tuner.fit()
    for node in nodes:
        payload, state = searches[node.key]
        if not state.done:
            raise RuntimeError(f"β search {node.key} ended before its grid was decided")
        store.build_once(node.key, lambda s=state, p=payload: s.built(p["params"]))
    return {key: state for key, (_, state) in searches.items()}


def beta_search_rows(sweep: str, store: ArtifactStore, nodes: list[Node]) -> list[dict[str, Any]]:
    """Rows of the ``beta_search`` table for committed search artifacts."""
    rows = []
    for node in nodes:
        art = store.load(node.key)
        chosen = art.meta["beta"]
        stopped = art.array("stopped")
        for i, beta in enumerate(art.array("betas").tolist()):
            test = float(art.array(TEST)[i])
            rows.append({"sweep": sweep, "search_key": node.key, "dataset": node.dataset.name,
                         "ratio": float(art.meta["ratio"]), "beta": beta,
                         "heldout_acc": float(art.array("heldout_acc")[i]),
                         TEST: None if test != test else test,
                         "status": "stopped" if stopped[i] else "ok",
                         "reports": int(art.array("epochs")[i]), "chosen": beta == chosen,
                         "trials_run": int(art.meta["trials_run"]),
                         "grid_size": int(art.meta["grid_size"]),
                         "scheduler": str(art.meta["scheduler"])})
    return rows
