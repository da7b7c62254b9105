"""The pseudo_labels kind: clusters of the embeddings as labels (ELFS, Sec. 4.1; TEMI).

``clustering: temi`` (default; Adaloglou et al. 2023), ``scan`` or ``kmeans`` on the
embeddings and their k-NN pairs (:mod:`coretune.train.clustering`), into ``clusters``
groups (default: the dataset's number of classes) — the trial's
:class:`~coretune.spec.ClusteringSpec`. The labels never depend on ground
truth; where it exists, the Hungarian-matched accuracy, NMI and ARI of the pseudo-labels
are computed afterwards and stored in the metadata for reports only — nothing chooses on
them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, get_args

from coretune.artifacts.embeddings import pipeline_settings
from coretune.artifacts.graph import BuildContext, register_artifact
from coretune.artifacts.store import Built
from coretune.spec import ClusteringSpec, TrialSpec
from coretune.train.clustering import clustering_metrics, kmeans, scan, temi

METHODS = get_args(ClusteringSpec.model_fields["clustering"].annotation)


def pseudo_label_params(trial: TrialSpec) -> Mapping[str, Any]:
    s = pipeline_settings(trial).clustering
    return {"method": s.clustering, "clusters": s.clusters, "args": dict(s.clustering_args),
            "seed": int(s.clustering_seed)}


def cluster(method: str, embeddings, knn, clusters: int, seed: int, args: Mapping[str, Any],
            device: str = "cpu"):
    """(labels, record) of one clustering method."""
    if method == "kmeans":
        labels, _, record = kmeans(embeddings, clusters, seed, **dict(args))
        return labels, record
    fn = temi if method == "temi" else scan
    return fn(embeddings, knn, clusters, seed=seed, device=device, **dict(args))


@register_artifact("pseudo_labels", version=1, params=pseudo_label_params,
                   deps=lambda trial: {"embeddings": "embeddings", "knn": "knn"},
                   provides={"pseudo_labels": lambda art: art.array("labels")}, gpu=True)
def build_pseudo_labels(ctx: BuildContext) -> Built:
    """Cluster the embeddings (TEMI, SCAN or k-means) into pseudo-labels; their accuracy,
    NMI and ARI against ground truth go into the metadata, for reports only."""
    p = ctx.params
    emb = ctx.deps["embeddings"].array("embeddings")
    knn = ctx.deps["knn"].array("indices")
    clusters = int(p["clusters"] or ctx.dataset.num_classes)
    started = time.perf_counter()
    labels, record = cluster(p["method"], emb, knn, clusters, p["seed"], p["args"], ctx.device)
    meta = {"method": p["method"], "clusters": clusters, "record": record,
            "seconds": time.perf_counter() - started,
            # reported only: ground truth is read after the labels are fixed
            "ground_truth_metrics": clustering_metrics(ctx.dataset.train_y, labels)}
    return Built({"labels": labels.astype("int64")}, meta)
