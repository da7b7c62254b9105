"""Self-supervised prototypicality (Sorscher et al., NeurIPS 2022, Sec. 5): label-free.

"Beyond neural scaling laws: beating power law scaling via data pruning": k-means in a
self-supervised embedding space; a sample's difficulty is its distance to its nearest
centroid. With abundant data keep the hardest (far from every prototype), with scarce
data the easiest. ELFS compares against it (Table 1). O(N·k·D) per k-means iteration.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from annotated_types import Ge

from coretune.selectors.base import Selection, SelectionContext, register_selector
from coretune.selectors.neighbors import kmeans
from coretune.selectors.samplers import Keep, rank_by_difficulty


def prototype_distances(embeddings: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    """Cosine distance of each (normalised) embedding to its nearest k-means centroid."""
    x = np.asarray(embeddings, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    labels, centroids, _ = kmeans(x, clusters, seed)
    c = np.asarray(centroids, dtype=np.float64)
    c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    return 1.0 - (x * c[labels]).sum(axis=1)


@register_selector("prototypicality", needs={"embeddings"}, label_free=True,
                   uses=("encoder",),
                   paper="Sorscher et al., Beyond neural scaling laws: beating power law "
                         "scaling via data pruning, NeurIPS 2022")
def prototypicality(ctx: SelectionContext, budget: int, keep: Keep = "hardest",
                    clusters: Annotated[int, Ge(1)] | None = None) -> Selection:
    """Keep the samples farthest from (or nearest to) their k-means prototype (Sorscher et
    al. 2022, Sec. 5); ``clusters`` prototypes (default: the number of classes) — its own
    k-means, not the pseudo-label clustering of a ``pseudo`` label mode."""
    k = min(clusters or ctx.num_classes, ctx.num_samples)
    dist = prototype_distances(ctx.embeddings, k, ctx.seed)
    return Selection(rank_by_difficulty(dist, budget, keep, ctx.rng()))
