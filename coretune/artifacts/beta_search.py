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

:func:`run_beta_search` is the whole search as a plain function, one trial after the
other; the sweep driver runs the same trials as Ray Tune trials (ratios in parallel,
Tune's ASHA per ratio) and commits the same artifact. Only pseudo-labels are used.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from coretune.artifacts.graph import BuildContext, register_artifact
from coretune.artifacts.store import Built
from coretune.selectors import budget_for
from coretune.selectors.base import HIGHER_IS_HARDER
from coretune.selectors.scores import double_end_prune
from coretune.spec import TrialSpec
from coretune.train.data import DeviceData, stratified_split, to_device
from coretune.train.evaluate import MatchedEvaluator, held_out_evaluator
from coretune.train.labels import HardLabels
from coretune.train.loop import init_model, train_steps

DEFAULT_GRID = tuple(round(0.1 * i, 1) for i in range(10))
METRIC = "heldout_acc"
TEST = "test_matched_acc"  # reported beside, never chosen on


def search_settings(trial: TrialSpec) -> dict[str, Any]:
    a = trial.selector_args
    return {"grid": [float(b) for b in a.get("beta_grid") or DEFAULT_GRID],
            "patience": int(a.get("patience", 1)),
            "tolerance": float(a.get("stop_tolerance", 1.0)),
            "fraction": float(a.get("search_fraction", 0.1)),
            "scheduler": a.get("search_scheduler", "asha"), "score": a.get("score", "aum"),
            "grace_period": int(a.get("grace_period", 1)),
            "reduction_factor": float(a.get("reduction_factor", 3.0)),
            "seed": int(a.get("search_seed", 0))}


def beta_search_params(trial: TrialSpec) -> Mapping[str, Any]:
    """The search settings, the ratio and the student recipe (arch, budget, optimizer)."""
    return {**search_settings(trial), "ratio": trial.ratio,
            "student": {"arch": trial.arch, "arch_args": trial.arch_args,
                        "budget": trial.budget.key_dump(),
                        "optimizer": trial.optimizer.key_dump(),
                        "augment": trial.augment.key_dump()}}


def pseudo_difficulty(scores: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    raw = np.asarray(scores[name], dtype=np.float64)
    return raw if HIGHER_IS_HARDER[name] else -raw


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

    def coreset(self, beta: float) -> np.ndarray:
        """Dataset indices double-end-pruned from the 90 % at this β."""
        budget = budget_for(self.train_pos.size, self.params["ratio"])
        rng = np.random.default_rng([self.params["seed"], 0xBE7A])
        chosen = double_end_prune(self.difficulty[self.train_pos], budget, beta, rng)
        return self.train_pos[chosen]


def beta_trial(inputs: SearchInputs, beta: float) -> Iterator[dict]:
    """Train one β trial's student on pseudo-labels; yield each report: ``heldout_acc`` on
    the pseudo-labelled 10 %, and ``test_matched_acc``, its test accuracy once its clusters
    are matched to the classes (ground truth, for reports only)."""
    from coretune.spec import AugmentSpec, BudgetSpec, OptimizerSpec

    s, data = inputs.params["student"], inputs.data
    seed = inputs.params["seed"]
    model = init_model(s["arch"], s["arch_args"], tuple(data.train_x.shape[1:]),
                       data.num_classes, seed, data.device)
    targets = torch.as_tensor(inputs.pseudo, device=data.device)
    evaluators = [held_out_evaluator(data, inputs.val_pos, inputs.pseudo[inputs.val_pos]),
                  MatchedEvaluator("test", data.test_x, data.test_y)]
    yield from train_steps(model, data, inputs.coreset(beta), HardLabels(targets), evaluators,
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
        a = self.results[best][METRIC]
        se = np.sqrt(a * (1.0 - a) / self.val_size) if self.val_size else 0.0
        return a - self.tolerance * se

    def best(self) -> float | None:
        ok = [b for b, r in self.results.items() if r["status"] == "ok"]
        return max(ok, key=lambda b: (self.results[b][METRIC], -b)) if ok else None

    def built(self, params: Mapping[str, Any]) -> Built:
        """The artifact: the β curve (every β tried, in order) and β*."""
        tried = sorted(self.results)
        rows = [self.results[b] for b in tried]
        arrays = {"betas": np.array(tried, dtype=np.float64),
                  "heldout_acc": np.array([r[METRIC] for r in rows], dtype=np.float64),
                  TEST: np.array([np.nan if r[TEST] is None else r[TEST]
                                        for r in rows], dtype=np.float64),
                  "stopped": np.array([r["status"] != "ok" for r in rows]),
                  "epochs": np.array([r["epochs"] for r in rows], dtype=np.int64)}
        meta = {"beta": self.best(), "ratio": params["ratio"], "grid": self.betas,
                "trials_run": len(tried), "grid_size": len(self.betas),
                "scheduler": params["scheduler"]}
        return Built(arrays, meta)


def run_beta_search(inputs: SearchInputs) -> GridState:
    """The whole search, one trial after the other (the reference the Tune path matches)."""
    p = inputs.params
    state = GridState(distinct_betas(p["grid"], inputs.train_pos.size, p["ratio"]),
                      p["patience"], inputs.val_pos.size, p["tolerance"])
    rule = (AshaRule(p["grace_period"], p["reduction_factor"], p["student"]["budget"][
        "max_reports"]) if p["scheduler"] == "asha" else None)
    while (beta := state.next_beta()) is not None:
        passed: set[float] = set()
        last, status, reports = {}, "ok", 0
        for reports, last in enumerate(beta_trial(inputs, beta), start=1):
            if rule is not None and not last.get("final") and rule.stop(
                    reports, last[METRIC], passed):
                status = "stopped"
                break
        state.record(beta, last[METRIC], last.get(TEST), status, reports)
    return state


@register_artifact("beta_search", version=2, params=beta_search_params,
                   deps=lambda trial: {"scores": "pseudo_dynamics", "labels": "pseudo_labels"},
                   provides={"beta_search": lambda art: float(art.meta["beta"])}, gpu=True)
def build_beta_search(ctx: BuildContext) -> Built:
    """The β search in this process (the sweep driver runs it as Tune trials instead)."""
    inputs = SearchInputs.build(ctx.dataset, ctx.deps["labels"].array("labels"),
                                {k: ctx.deps["scores"].array(k)
                                 for k in ("aum", "forgetting", "el2n")},
                                ctx.params, ctx.device)
    return run_beta_search(inputs).built(ctx.params)
