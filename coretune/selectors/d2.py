"""D² pruning (Maharana, Yadav & Bansal, ICLR 2024): message passing on a k-NN graph.

"D2 Pruning: Message Passing for Balancing Diversity and Difficulty in Data Pruning",
Sec. 3: samples are nodes of a k-NN graph in an embedding space, carrying difficulty
scores (min–max normalised to [0, 1]).

1. Forward message passing: ``s_i ← s_i + Σ_{j∈N(i)} exp(−γ_f·d_ij)·s_j`` — a sample in a
   dense region of hard samples gains importance.
2. Reverse message passing, greedy: take the node with the highest score; lower each of
   its neighbours ``j`` by ``exp(−γ_r·d_ij)·s_selected``; repeat until the budget holds
   — neighbours of chosen samples are less likely to be chosen (diversity).

Like CCS, the ⌊βN⌋ hardest may be hard-pruned first (``beta``). The D² code's defaults are
k = 5–10 neighbours and γ_r = 0.1. Time O(N·k·log N) with a lazy heap, O(N·k) memory; the
k-NN graph comes from faiss. ``d2`` builds it on the proxy run's features; label-free D²
(ELFS's baseline) uses uniform scores on the encoder's k-NN graph.
"""

from __future__ import annotations

import heapq
from typing import Annotated, Literal

import numpy as np
from annotated_types import Ge, Interval

from coretune.selectors.base import DynamicsScore, Selection, SelectionContext, register_selector
from coretune.selectors.neighbors import knn_graph
from coretune.selectors.samplers import sampler_difficulty


def forward_messages(scores: np.ndarray, nbr: np.ndarray, dist: np.ndarray,
                     gamma_forward: float) -> np.ndarray:
    """``s_i + Σ_{j∈N(i)} exp(−γ_f·d_ij)·s_j`` (neighbours marked −1 are absent)."""
    valid = nbr >= 0
    w = np.where(valid, np.exp(-gamma_forward * np.where(valid, dist, 0.0)), 0.0)
    return scores + (w * scores[np.maximum(nbr, 0)]).sum(axis=1)


def reverse_greedy(scores: np.ndarray, nbr: np.ndarray, dist: np.ndarray, budget: int,
                   gamma: float) -> np.ndarray:
    """Greedy selection by score; each pick lowers its neighbours by ``exp(−γ·d)·s_pick``.

    A max-heap holds (score, node); every change pushes a fresh entry and stale ones are
    skipped, so each pick costs O(k log N). Ties go to the lowest index.
    """
    cur = np.asarray(scores, dtype=np.float64).copy()
    valid = nbr >= 0
    weight = np.where(valid, np.exp(-gamma * np.where(valid, dist, 0.0)), 0.0)
    heap = [(-v, i) for i, v in enumerate(cur.tolist())]
    heapq.heapify(heap)
    taken = np.zeros(cur.size, dtype=bool)
    chosen = np.empty(budget, dtype=np.int64)
    count = 0
    while count < budget:
        neg, i = heapq.heappop(heap)
        if taken[i] or -neg != cur[i]:
            continue  # stale entry
        taken[i] = True
        chosen[count] = i
        count += 1
        s_i = cur[i]
        for j, w in zip(nbr[i].tolist(), weight[i].tolist(), strict=True):
            if j >= 0 and not taken[j] and w != 0.0:
                cur[j] -= w * s_i
                heapq.heappush(heap, (-cur[j], j))
    return chosen


def d2_select(scores: np.ndarray, nbr: np.ndarray, dist: np.ndarray, budget: int,
              gamma_forward: float, gamma: float, beta: float, normalize: bool = True
              ) -> np.ndarray:
    """D² on given scores (min–max normalised unless ``normalize`` is off) and k-NN graph,
    after hard-pruning the ⌊βN⌋ hardest; the graph keeps only edges between the rest."""
    n = scores.size
    s = np.asarray(scores, dtype=np.float64)
    span = s.max() - s.min()
    if normalize:
        s = (s - s.min()) / span if span > 0 else np.ones(n)
    n_hard = min(int(np.floor(beta * n)), n - budget)
    pool = np.sort(np.argsort(-s, kind="stable")[n_hard:])
    if n_hard:
        new_id = np.full(n, -1, dtype=np.int64)
        new_id[pool] = np.arange(pool.size)
        nbr = np.where(nbr[pool] >= 0, new_id[np.maximum(nbr[pool], 0)], -1)
        dist = np.where(nbr >= 0, dist[pool], np.inf)
        s = s[pool]
    return pool[reverse_greedy(forward_messages(s, nbr, dist, gamma_forward), nbr, dist,
                               budget, gamma)]


@register_selector("d2", needs=lambda a: {"features", "external_scores" if a.get("score_file")
                                          else "scores"},
                   paper="Maharana, Yadav & Bansal, D2 Pruning: Message Passing for Balancing "
                         "Diversity and Difficulty in Data Pruning, ICLR 2024")
def d2(ctx: SelectionContext, budget: int, score: DynamicsScore = "forgetting",
       score_file: str | None = None, k: Annotated[int, Ge(1)] = 10,
       gamma: Annotated[float, Interval(ge=0.0, le=1e3)] = 0.1,
       gamma_forward: Annotated[float, Interval(ge=0.0, le=1e3)] = 1.0,
       beta: Annotated[float, Interval(ge=0.0, lt=1.0)] = 0.0,
       metric: Literal["cosine", "euclidean"] = "cosine") -> Selection:
    """D² on the proxy model's feature k-NN graph with a difficulty score."""
    scores = sampler_difficulty(ctx, score, score_file)
    if ctx.num_samples == 1:
        return Selection(np.zeros(1, dtype=np.int64))
    nbr, dist = knn_graph(ctx.artifact("features"), min(k, ctx.num_samples - 1), metric,
                          seed=ctx.seed)
    return Selection(d2_select(scores, nbr, dist.astype(np.float64), budget, gamma_forward,
                               gamma, beta))
