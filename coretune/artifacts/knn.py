"""The knn kind: each training image's k nearest neighbours in embedding space (faiss).

Cosine by default, self excluded, exact below 200,000 images and IVF above, queried in
chunks (:func:`coretune.selectors.neighbors.knn_graph`). ELFS and TEMI use k = 50 (25 at
ImageNet size); the k-NN pairs train the clustering heads and carry label-free D².
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coretune.artifacts.embeddings import pipeline_settings
from coretune.artifacts.graph import BuildContext, register_artifact
from coretune.artifacts.store import Built
from coretune.selectors.neighbors import knn_graph
from coretune.spec import TrialSpec


def knn_params(trial: TrialSpec) -> Mapping[str, Any]:
    s = pipeline_settings(trial).knn
    return {"k": int(s.knn_k), "metric": s.knn_metric}


@register_artifact("knn", version=1, params=knn_params,
                   deps=lambda trial: {"embeddings": "embeddings"},
                   provides={"knn": lambda art: (art.array("indices"), art.array("distances"))})
def build_knn(ctx: BuildContext) -> Built:
    """Each sample's k nearest neighbours in the embeddings (faiss; self excluded)."""
    emb = ctx.deps["embeddings"].array("embeddings")
    k = min(int(ctx.params["k"]), len(emb) - 1)
    idx, dist = knn_graph(emb, k, ctx.params["metric"], seed=0)
    return Built({"indices": idx, "distances": dist}, {"k": k, "n": int(len(emb))})
