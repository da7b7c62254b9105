"""k-nearest-neighbour graphs with faiss (exact below a size threshold, IVF above), k-means.

``knn_graph(x, k)`` returns each row's ``k`` nearest other rows (self excluded) and their
distances, Euclidean or cosine (1 − cos). Exact search (``IndexFlat``) costs O(N²·D) time
and O(N·k) memory beyond the input; above ``exact_max`` rows an inverted-file index
(``IndexIVFFlat``, √N·4 lists trained on a seeded sample, ``nprobe`` lists searched) costs
about O(N·(nlist + nprobe·N/nlist)·D). Queries run in chunks, so memory stays O(N·k).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Metric = Literal["euclidean", "cosine"]


def _prepared(x: np.ndarray, metric: Metric) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.maximum(norms, 1e-12)
    return x


def _index(x: np.ndarray, metric: Metric, exact_max: int, nprobe: int, seed: int):
    import faiss

    n, d = x.shape
    inner = metric == "cosine"
    if n <= exact_max:
        index = faiss.IndexFlatIP(d) if inner else faiss.IndexFlatL2(d)
    else:
        nlist = int(min(max(16, 4 * np.sqrt(n)), n // 39))
        quantizer = faiss.IndexFlatIP(d) if inner else faiss.IndexFlatL2(d)
        kind = faiss.METRIC_INNER_PRODUCT if inner else faiss.METRIC_L2
        index = faiss.IndexIVFFlat(quantizer, d, nlist, kind)
        rng = np.random.default_rng([seed, 0x1F])
        sample = x[rng.choice(n, min(n, 64 * nlist), replace=False)]
        index.train(sample)
        index.nprobe = nprobe
    index.add(x)
    return index


def knn_graph(x: np.ndarray, k: int, metric: Metric = "euclidean", exact_max: int = 200_000,
              nprobe: int = 16, chunk: int = 65_536, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray]:
    """(indices int64 [N, k], distances float32 [N, k]) of each row's nearest other rows,
    nearest first. Euclidean distances, or 1 − cosine similarity for ``cosine``."""
    import faiss

    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}] for {n} points, got {k}")
    xp = _prepared(x, metric)
    faiss.omp_set_num_threads(max(1, faiss.omp_get_max_threads()))
    index = _index(xp, metric, exact_max, nprobe, seed)
    idx = np.empty((n, k), dtype=np.int64)
    dist = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, chunk):
        q = xp[start:start + chunk]
        d, i = index.search(q, k + 1)
        idx[start:start + len(q)], dist[start:start + len(q)] = drop_self(i, d, k, start)
    if metric == "cosine":
        dist = np.clip(1.0 - dist, 0.0, 2.0)
    else:
        dist = np.sqrt(np.maximum(dist, 0.0))
    return idx, dist


def drop_self(found: np.ndarray, dist: np.ndarray, k: int, start: int = 0
              ) -> tuple[np.ndarray, np.ndarray]:
    """From ``k + 1`` results per query (queries are rows ``start, start + 1, …``) keep
    ``k``: the query itself is removed where it was found, else the farthest result."""
    rows = np.arange(start, start + found.shape[0])[:, None]
    keep = (found != rows) & (found >= 0)
    keep &= np.cumsum(keep, axis=1) <= k
    if (keep.sum(axis=1) < k).any():
        raise ValueError(f"k = {k} neighbours asked but some rows have fewer candidates "
                         "(raise nprobe or lower k)")
    return found[keep].reshape(-1, k), dist[keep].reshape(-1, k)


def kmeans(embeddings: np.ndarray, clusters: int, seed: int = 0, n_init: int = 10,
           normalize: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """(labels, centroids, record) of k-means on the (L2-normalised) embeddings."""
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if len(x) <= 200_000:
        from sklearn.cluster import KMeans

        km = KMeans(n_clusters=clusters, n_init=n_init, random_state=seed).fit(x)
        return km.labels_.astype(np.int64), km.cluster_centers_, {"inertia": float(km.inertia_)}
    import faiss

    km = faiss.Kmeans(x.shape[1], clusters, niter=50, nredo=max(1, n_init // 5), seed=seed)
    km.train(x)
    _, assign = km.index.search(x, 1)
    return assign[:, 0].astype(np.int64), km.centroids, {"inertia": float(km.obj[-1])}
