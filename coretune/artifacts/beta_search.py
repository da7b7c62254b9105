"""The beta_search kind: ELFS's hard-pruning rate β, chosen without a ground-truth label.

ELFS (Zheng, Tsai et al., ICLR 2025, Sec. 4.3 and App. B) grid-searches β. Here, per
(label-free pipeline, ratio):

1. split the pseudo-labelled training set 90/10 (seeded, stratified by pseudo-label);
2. for β = β₀ < β₁ < … select on the 90 % by double-end pruning of the pseudo-label
   difficulty, train a student on the pseudo-labels, score it on the 10 % against their
   pseudo-labels (the held-out evaluator) — the test split's accuracy is recorded beside,
   for reports only;
3. stop the grid once the held-out accuracy has fallen ``patience`` times in a row below
   the best (the β curve is unimodal in the paper) — by more than ``tolerance`` standard
   errors of the best, ``√(a(1 − a)/m)`` on the m held-out samples, so that sampling
   noise on a small split does not end the search on its rising slope (``tolerance: 0``
   stops at the first fall of any size) — and with ``scheduler: asha`` stop weak β trials
   early by ASHA's rule (Li et al., MLSys 2020: at rung ``grace·η^k`` a trial below the
   (1 − 1/η) quantile of the rung stops);
4. β* is the best completed β (ties to the smaller).

One rule, two executors. :class:`SearchRule` is the whole rule of one search — the
sequential grid (:class:`GridState`: which β next, when the grid stops, β*) and the ASHA
milestone rule (:class:`AshaRule`) — and both executors ask it every decision:
:func:`search_in_process` runs a search in this process, one β trial after the other,
without Ray (the kind's ``compute``: tests, the GPU machine, a single build);
:func:`coretune.driver.beta_search_tune.search_on_tune`, the kind's declared Tune executor,
runs the sweep's searches as Ray Tune trials, searches in parallel, and commits the same
artifacts. Only pseudo-labels are used.

A search's labels, coreset rule and evaluators are those of its kind's
:class:`SearchInputs` class (:data:`SEARCH_INPUTS`), so the same rule and executors serve
other searches of a pruning parameter: EL2N-Best's offset search
(:mod:`coretune.artifacts.offset_search`) runs on ground-truth labels with the selector's
EL2N window as its coreset rule.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from coretune.artifacts.graph import BuildContext, Node, register_artifact
from coretune.artifacts.store import Artifact, Built
from coretune.selectors import budget_for
from coretune.selectors.base import oriented_difficulty
from coretune.selectors.samplers import double_end_prune
from coretune.spec import TrialSpec
from coretune.train.data import DeviceData, ImageDataset, stratified_split, to_device
from coretune.train.evaluate import Evaluator, MatchedEvaluator, held_out_evaluator
from coretune.train.labels import HardLabels
from coretune.train.loop import init_model, train_steps

DEFAULT_GRID = tuple(round(0.1 * i, 1) for i in range(10))
HELDOUT_METRIC = "heldout_acc"
TEST = "test_matched_acc"  # reported beside, never chosen on


def search_settings(trial: TrialSpec) -> dict[str, Any]:
    """The trial's :class:`~coretune.spec.BetaSearchSpec` (from the selector's arguments,
    if it declares ``uses=("beta_search",)``; else the defaults) as the search reads it."""
    from coretune.artifacts.embeddings import trial_sub_spec

    s = trial_sub_spec(trial, "beta_search")
    return {"grid": [float(b) for b in s.beta_grid], "patience": int(s.patience),
            "tolerance": float(s.stop_tolerance), "fraction": float(s.search_fraction),
            "scheduler": s.search_scheduler, "score": s.score,
            "grace_period": int(s.grace_period),
            "reduction_factor": float(s.reduction_factor), "seed": int(s.search_seed)}


def beta_search_params(trial: TrialSpec) -> Mapping[str, Any]:
    """The search settings (ELFS Sec. 4.3, App. B), the ratio and the student recipe
    (arch, budget, optimizer, augmentation)."""
    return {**search_settings(trial), "ratio": trial.ratio,
            "student": {"arch": trial.arch, "arch_args": trial.arch_args,
                        "budget": trial.budget.key_dump(),
                        "optimizer": trial.optimizer.key_dump(),
                        "augment": trial.augment.key_dump()}}


def pseudo_difficulty(scores: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    return oriented_difficulty(name, scores[name])


def distinct_betas(grid: Sequence[float], n: int, ratio: float) -> list[float]:
    """The grid in increasing order, one β per distinct cut: once ⌊βn⌋ ≥ n − budget every
    larger β prunes the same samples, so only the first of those is kept."""
    budget = budget_for(n, ratio)
    out, cuts = [], set()
    for beta in sorted(set(grid)):
        cut = min(int(np.floor(beta * n)), n - budget)
        if cut not in cuts:
            cuts.add(cut)
            out.append(float(beta))
    return out


@dataclass
class SearchInputs:
    """What every β trial of one search shares."""

    data: DeviceData
    pseudo: np.ndarray
    difficulty: np.ndarray
    train_pos: np.ndarray
    val_pos: np.ndarray
    params: Mapping[str, Any]

    @classmethod
    def build(cls, dataset, pseudo: np.ndarray, scores: Mapping[str, np.ndarray],
              params: Mapping[str, Any], device: str = "cpu") -> SearchInputs:
        train_pos, val_pos = stratified_split(pseudo, params["fraction"], params["seed"])
        return cls(to_device(dataset, device), np.asarray(pseudo, dtype=np.int64),
                   pseudo_difficulty(scores, params["score"]), train_pos, val_pos, params)

    @classmethod
    def from_deps(cls, params: Mapping[str, Any], deps: Mapping[str, Artifact],
                  dataset: ImageDataset, device: str = "cpu") -> SearchInputs:
        """The inputs of a search from its built dependencies: the ``labels`` dependency's
        labels (or the dataset's own, :func:`search_labels`) and the ``scores`` one's."""
        return cls.build(dataset, search_labels(dataset, deps.get("labels")),
                         {k: deps["scores"].array(k) for k in SEARCH_SCORES}, params, device)

    def coreset(self, beta: float) -> np.ndarray:
        """Dataset indices double-end-pruned from the 90 % at this β."""
        budget = budget_for(self.train_pos.size, self.params["ratio"])
        rng = np.random.default_rng([self.params["seed"], 0xBE7A])
        chosen = double_end_prune(self.difficulty[self.train_pos], budget, beta, rng)
        return self.train_pos[chosen]

    def evaluators(self) -> list[Evaluator]:
        """What each report scores: the held-out 10 % against its (pseudo-)labels — the
        metric the search chooses on — and, for reports only, the test split's accuracy
        once the clusters are matched to the classes."""
        return [held_out_evaluator(self.data, self.val_pos, self.pseudo[self.val_pos]),
                MatchedEvaluator("test", self.data.test_x, self.data.test_y)]


#: the scores a search's ``scores`` dependency is read for
SEARCH_SCORES = ("aum", "forgetting", "el2n")
#: the inputs of each kind of search (its coreset rule, its evaluators), by kind: both
#: executors build a node's inputs with its kind's class
SEARCH_INPUTS: dict[str, type[SearchInputs]] = {"beta_search": SearchInputs}


def search_labels(dataset: ImageDataset, labels: Artifact | None) -> np.ndarray:
    """The labels a search trains and scores its students on: its ``labels`` dependency's
    (ELFS's pseudo-labels), else — a search with no such dependency — the dataset's
    training labels."""
    return dataset.train_y if labels is None else labels.array("labels")


def beta_trial(inputs: SearchInputs, beta: float) -> Iterator[dict]:
    """Train one β trial's student on the search's labels (pseudo-labels for ELFS) on the
    β coreset; yield each report of ``inputs.evaluators()``: ``heldout_acc`` on the held-out
    10 %, and for ELFS ``test_matched_acc``, its test accuracy once its clusters are matched
    to the classes (ground truth, for reports only)."""
    from coretune.spec import AugmentSpec, BudgetSpec, OptimizerSpec

    s, data = inputs.params["student"], inputs.data
    seed = inputs.params["seed"]
    model = init_model(s["arch"], s["arch_args"], tuple(data.train_x.shape[1:]),
                       data.num_classes, seed, data.device)
    targets = torch.as_tensor(inputs.pseudo, device=data.device)
    yield from train_steps(model, data, inputs.coreset(beta), HardLabels(targets),
                           inputs.evaluators(),
                           BudgetSpec(**s["budget"]), OptimizerSpec(**s["optimizer"]), seed,
                           AugmentSpec(**s["augment"]))


@dataclass
class AshaRule:
    """ASHA's stopping rule as Ray Tune applies it (one bracket): at each milestone
    ``grace·η^k`` a trial whose metric is below the (1 − 1/η) percentile of the values
    recorded there so far is stopped; its value is recorded either way."""

    grace_period: int
    reduction_factor: float
    max_t: int
    rungs: dict[float, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        count = int(np.log(self.max_t / self.grace_period) / np.log(self.reduction_factor) + 1)
        self.rungs = {self.grace_period * self.reduction_factor ** k: [] for k in range(count)}

    def stop(self, iteration: int, value: float, passed: set[float]) -> bool:
        for milestone in sorted(self.rungs, reverse=True):
            if iteration < milestone or milestone in passed:
                continue
            recorded = self.rungs[milestone]
            cutoff = (np.nanpercentile(recorded, (1 - 1 / self.reduction_factor) * 100)
                      if recorded else None)
            recorded.append(value)
            passed.add(milestone)
            return cutoff is not None and value < cutoff
        return False


@dataclass
class GridState:
    """The sequential grid of one search: which β comes next, when to stop, β*."""

    betas: list[float]
    patience: int
    val_size: int = 0  # held-out samples m: a fall counts beyond tolerance·√(a(1 − a)/m)
    tolerance: float = 0.0
    results: dict[float, dict] = field(default_factory=dict)  # β → {metric, test, status}
    fails: int = 0
    done: bool = False

    def next_beta(self) -> float | None:
        if self.done:
            return None
        pending = [b for b in self.betas if b not in self.results]
        return pending[0] if pending else None

    def record(self, beta: float, heldout: float, test: float | None, status: str,
               epochs: int) -> None:
        best = self.best()
        self.results[beta] = {"heldout_acc": heldout, TEST: test, "status": status,
                              "epochs": epochs}
        if best is not None and (status != "ok" or heldout < self._floor(best)):
            self.fails += 1  # consecutive falls below the best
            self.done = self.fails >= self.patience
        else:
            self.fails = 0
        if self.next_beta() is None:
            self.done = True

    def _floor(self, best: float) -> float:
        """The held-out accuracy below which a β counts as a fall from ``best``."""
        a = self.results[best][HELDOUT_METRIC]
        se = np.sqrt(a * (1.0 - a) / self.val_size) if self.val_size else 0.0
        return a - self.tolerance * se

    def best(self) -> float | None:
        ok = [b for b, r in self.results.items() if r["status"] == "ok"]
        return max(ok, key=lambda b: (self.results[b][HELDOUT_METRIC], -b)) if ok else None

    def built(self, params: Mapping[str, Any]) -> Built:
        """The artifact: the β curve (every β tried, in order) and β*."""
        tried = sorted(self.results)
        rows = [self.results[b] for b in tried]
        arrays = {"betas": np.array(tried, dtype=np.float64),
                  "heldout_acc": np.array([r[HELDOUT_METRIC] for r in rows], dtype=np.float64),
                  TEST: np.array([np.nan if r[TEST] is None else r[TEST]
                                        for r in rows], dtype=np.float64),
                  "stopped": np.array([r["status"] != "ok" for r in rows]),
                  "epochs": np.array([r["epochs"] for r in rows], dtype=np.int64)}
        meta = {"beta": self.best(), "ratio": params["ratio"], "grid": self.betas,
                "trials_run": len(tried), "grid_size": len(self.betas),
                "scheduler": params["scheduler"]}
        return Built(arrays, meta)


@dataclass
class SearchRule:
    """The whole stopping and pruning rule of one β search, shared by both executors.

    An executor asks it three things and decides nothing itself: :meth:`next_beta` (the
    β trial to run next, None once the grid is decided), :meth:`stop_trial` at each report
    of that trial (ASHA's rule with ``scheduler: asha``; never on the final report), and
    :meth:`complete` once the trial has ended. So the in-process search and the Tune
    experiment stop the same trials and end the grid at the same β.
    """

    grid: GridState
    asha: AshaRule | None
    passed: dict[float, set[float]] = field(default_factory=dict)  # β → milestones seen
    stopped: set[float] = field(default_factory=set)  # β trials this rule stopped

    @classmethod
    def for_search(cls, params: Mapping[str, Any], n_train: int, n_val: int) -> SearchRule:
        """The rule of a search with ``params`` (the kind's) on an ``n_train``/``n_val``
        split of the pseudo-labelled data."""
        grid = GridState(distinct_betas(params["grid"], n_train, params["ratio"]),
                         params["patience"], n_val, params["tolerance"])
        asha = (AshaRule(params["grace_period"], params["reduction_factor"],
                         params["student"]["budget"]["max_reports"])
                if params["scheduler"] == "asha" else None)
        return cls(grid, asha)

    @property
    def done(self) -> bool:
        return self.grid.done

    def next_beta(self) -> float | None:
        return self.grid.next_beta()

    def stop_trial(self, beta: float, iteration: int, report: Mapping[str, Any]) -> bool:
        """Whether β's trial stops now, after its ``iteration``-th ``report``. Asking twice
        about one report is harmless: each milestone counts once per trial."""
        if self.asha is None or report.get("final"):
            return False
        if self.asha.stop(iteration, float(report[HELDOUT_METRIC]),
                          self.passed.setdefault(beta, set())):
            self.stopped.add(beta)
            return True
        return False

    def complete(self, beta: float, last: Mapping[str, Any], reports: int) -> None:
        """Record β's trial, ended after ``reports`` reports, ``last`` the last of them."""
        self.grid.record(beta, last[HELDOUT_METRIC], last.get(TEST),
                         "stopped" if beta in self.stopped else "ok", reports)


def search_in_process(inputs: SearchInputs) -> GridState:
    """The whole search in this process, one β trial after the other, no Ray."""
    rule = SearchRule.for_search(inputs.params, inputs.train_pos.size, inputs.val_pos.size)
    while (beta := rule.next_beta()) is not None:
        last, reports = {}, 0
        for reports, last in enumerate(beta_trial(inputs, beta), start=1):
            if rule.stop_trial(beta, reports, last):
                break
        rule.complete(beta, last, reports)
    return rule.grid


def beta_search_rows(sweep: str, node: Node, art: Artifact) -> list[dict[str, Any]]:
    """Rows of the ``beta_search`` result table for one committed search (its β curve)."""
    chosen = art.meta["beta"]
    stopped = art.array("stopped")
    rows = []
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


@register_artifact("beta_search", version=2, params=beta_search_params,
                   deps=lambda trial: {"scores": "pseudo_dynamics", "labels": "pseudo_labels"},
                   provides={"beta_search": lambda art: float(art.meta["beta"])}, gpu=True,
                   executor="tune",
                   tune_executor="coretune.driver.beta_search_tune:search_on_tune",
                   results_table="beta_search", results_key="search_key",
                   results_rows=beta_search_rows)
def build_beta_search(ctx: BuildContext) -> Built:
    """The β search in this process (a sweep runs it on Tune, its declared executor)."""
    inputs = SearchInputs.from_deps(ctx.params, ctx.deps, ctx.dataset, ctx.device)
    return search_in_process(inputs).built(ctx.params)
