"""ELFS's β search on Ray Tune: one trial per (search, β), the sweep's searches in parallel.

The Tune executor of the ``beta_search`` kind (its declared ``tune_executor``) and of the
other searches built on its rule (EL2N-Best's ``offset_search``: each node's inputs come
from its kind's :data:`~coretune.artifacts.beta_search.SEARCH_INPUTS` class); the other
is :func:`coretune.artifacts.beta_search.search_in_process`, the same search in one
process. Neither decides anything itself: each search has one
:class:`~coretune.artifacts.beta_search.SearchRule`, and here :class:`SequentialGrid` (a
Tune searcher) asks it for each search's next β and records each ended β trial in it,
while :class:`RuleScheduler` (a Tune scheduler) asks it at every report whether that β
trial stops — a β trial is only ever compared with the β trials of its own search, by the
very code the in-process search runs. The trials train the students of
:func:`~coretune.artifacts.beta_search.beta_trial`; when Tune ends, each search is
committed to the store as the artifact the in-process search builds.
"""

from __future__ import annotations

import os
import tempfile
import time

from ray import tune
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from coretune.artifacts.beta_search import (
    HELDOUT_METRIC,
    SEARCH_INPUTS,
    TEST,
    GridState,
    SearchInputs,
    SearchRule,
    beta_trial,
    search_labels,
)
from coretune.artifacts.graph import Node
from coretune.artifacts.store import ArtifactStore
from coretune.driver.worker import enter_worker
from coretune.train.data import ImageDataset, stratified_split

_INPUTS: dict[str, SearchInputs] = {}  # per worker process: one search's shared inputs


def search_inputs(node: dict, dataset: ImageDataset, store_uri: str, device: str
                  ) -> SearchInputs:
    """The inputs every β trial of the search ``node`` shares, loaded once per process (by
    its kind's :class:`SearchInputs` class)."""
    if node["key"] not in _INPUTS:
        store = ArtifactStore(store_uri)
        deps = {name: store.load(key) for name, key in node["deps"].items()}
        _INPUTS[node["key"]] = SEARCH_INPUTS[node["kind"]].from_deps(
            node["params"], deps, dataset, device)
    return _INPUTS[node["key"]]


def beta_trainable(config: dict, datasets: dict[str, ImageDataset], store_uri: str,
                   plugins: list[str] | None = None, cpus_per_trial: float = 1.0) -> None:
    """One β trial (a Tune function trainable): its student's reports, ``final`` on the
    last. The student's arch may be a plugin's model, so the plugins come first."""
    import ray
    import torch

    enter_worker(plugins, cpus_per_trial)
    device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
    node = config["node"]
    inputs = search_inputs(node, datasets[node["fingerprint"]], store_uri, device)
    for report in beta_trial(inputs, config["beta"]):
        test = {} if report.get(TEST) is None else {TEST: report[TEST]}  # none: not scored
        tune.report({HELDOUT_METRIC: report[HELDOUT_METRIC], **test,
                     "final": bool(report.get("final"))})


class SequentialGrid(Searcher):
    """Each search's β grid in its rule's order, one pending trial per search."""

    def __init__(self, searches: dict[str, tuple[dict, SearchRule]]):
        super().__init__(metric=HELDOUT_METRIC, mode="max")
        self.searches = searches
        self.pending: dict[str, tuple[str, float]] = {}  # trial id → (search key, β)

    def suggest(self, trial_id: str) -> dict | None:
        busy = {key for key, _ in self.pending.values()}
        for key, (node, rule) in self.searches.items():
            beta = rule.next_beta()
            if key not in busy and beta is not None:
                self.pending[trial_id] = (key, beta)
                return {"node": node, "beta": beta}
        if all(rule.done for _, rule in self.searches.values()):
            return Searcher.FINISHED
        return None

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        """Record the ended trial in its search's rule (Tune hands over its last report)."""
        key, beta = self.pending.pop(trial_id)
        rule = self.searches[key][1]
        if error or not result:
            raise RuntimeError(f"β trial (search {key}, β = {beta}) failed")
        if not result.get("final") and beta not in rule.stopped:
            raise RuntimeError(f"β trial (search {key}, β = {beta}) ended before its final "
                               "report, and its search's rule did not stop it")
        rule.complete(beta, {HELDOUT_METRIC: float(result[HELDOUT_METRIC]), TEST: result.get(TEST)},
                      int(result["training_iteration"]))


class RuleScheduler(FIFOScheduler):
    """Stops a β trial exactly when its search's :class:`SearchRule` says so (ASHA within
    the search, or never with ``scheduler: fifo``); trials run in FIFO order."""

    def __init__(self, rules: dict[str, SearchRule]):
        super().__init__()
        self.rules = rules

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        rule = self.rules[trial.config["node"]["key"]]
        stop = rule.stop_trial(trial.config["beta"], int(result["training_iteration"]),
                               result)
        return TrialScheduler.STOP if stop else TrialScheduler.CONTINUE


def search_on_tune(nodes: list[Node], datasets: dict[str, ImageDataset],
                   store: ArtifactStore, resources, plugins: list[str] | tuple[str, ...] = (),
                   tune_storage: str | None = None) -> dict[str, GridState]:
    """Run every search of ``nodes`` as Tune trials; commit each as its artifact. The
    trials import ``plugins`` (the spec's) first. Returns each search's grid by key."""
    by_fp = {ds.fingerprint: ds for ds in datasets.values()}
    searches: dict[str, tuple[dict, SearchRule]] = {}
    for node in nodes:
        p = dict(node.params)
        deps = {name: dep.key for name, dep in node.deps}
        labels = search_labels(by_fp[node.fingerprint],
                               store.load(deps["labels"]) if "labels" in deps else None)
        train_pos, val_pos = stratified_split(labels, p["fraction"], p["seed"])
        payload = {"key": node.key, "kind": node.kind, "params": p, "deps": deps,
                   "fingerprint": node.fingerprint}
        searches[node.key] = (payload, SearchRule.for_search(p, train_pos.size, val_pos.size))
    trainable = tune.with_resources(
        tune.with_parameters(beta_trainable, datasets=by_fp, store_uri=store.uri,
                             plugins=list(plugins), cpus_per_trial=resources.cpu),
        {"cpu": resources.cpu, "gpu": resources.gpu})
    total = sum(len(rule.grid.betas) for _, rule in searches.values())
    scheduler = RuleScheduler({key: rule for key, (_, rule) in searches.items()})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=SequentialGrid(searches), scheduler=scheduler,
                                    metric=HELDOUT_METRIC, mode="max", num_samples=total,
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            name=f"{nodes[0].kind.replace('_', '-')}-{int(time.time())}",
            storage_path=tune_storage or os.path.join(tempfile.gettempdir(), "coretune-tune"),
            verbose=0))
    tuner.fit()
    for node in nodes:
        payload, rule = searches[node.key]
        if not rule.done:
            raise RuntimeError(f"β search {node.key} ended before its grid was decided")
        store.build_once(node.key, lambda r=rule, p=payload: r.grid.built(p["params"]))
    return {key: rule.grid for key, (_, rule) in searches.items()}
