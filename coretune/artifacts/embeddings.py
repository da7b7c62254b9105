"""The embeddings kind: an encoder's features of the training images (ELFS, Sec. 4.1).

Label-free: only the images enter (see :mod:`coretune.train.encoders`). The settings of
the label-free pipeline — encoder, k-NN, clustering — come from the arguments of a
label-free selector (``elfs``, ``prototypicality``, ``d2_label_free``, ``zcore``), else from
the ``pseudo`` label mode's ``args``; :func:`pipeline_settings` merges them over defaults.
An encoder's weights file enters the key by its SHA-256, never by its path.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from coretune.artifacts.external_scores import file_digest
from coretune.artifacts.graph import BuildContext, Node, register_artifact
from coretune.artifacts.store import Built
from coretune.selectors import get_selector
from coretune.spec import TrialSpec
from coretune.train.data import ImageDataset
from coretune.train.encoders import encode, get_encoder, lite0_weights_path

PIPELINE_DEFAULTS: dict[str, Any] = {
    "encoder": "pixels", "encoder_args": {}, "encoder_weights": None,
    "knn_k": 50, "knn_metric": "cosine",
    "clustering": "temi", "clusters": None, "clustering_args": {}, "clustering_seed": 0,
}


def pipeline_settings(trial: TrialSpec) -> dict[str, Any]:
    """Encoder, k-NN and clustering settings of a trial's label-free pipeline."""
    out = dict(PIPELINE_DEFAULTS)
    if trial.label_mode == "pseudo":
        out.update({k: v for k, v in trial.label_args.items() if k in PIPELINE_DEFAULTS})
    if get_selector(trial.selector).label_free:
        out.update({k: v for k, v in trial.selector_args.items() if k in PIPELINE_DEFAULTS})
    return out


def weights_file(settings: Mapping[str, Any]) -> str | None:
    if settings["encoder"] == "efficientnet_lite0":
        return str(lite0_weights_path())
    return settings["encoder_weights"]


def embedding_params(trial: TrialSpec) -> Mapping[str, Any]:
    s = pipeline_settings(trial)
    weights = weights_file(s)
    return {"encoder": s["encoder"], "args": dict(s["encoder_args"]),
            "weights_sha256": None if weights is None else file_digest(weights,
                                                                       "encoder_weights")}


def embedding_local(trial: TrialSpec) -> Mapping[str, Any]:
    weights = weights_file(pipeline_settings(trial))
    return {} if weights is None else {"weights": weights}


def check_encoder(node: Node, dataset: ImageDataset) -> None:
    info = get_encoder(node.params["encoder"])
    if info.needs_weights and "weights" not in node.local:
        raise ValueError(f"encoder {info.name!r} needs encoder_weights: a local weights file")


@register_artifact("embeddings", version=1, params=embedding_params, local=embedding_local,
                   provides={"embeddings": lambda art: art.array("embeddings")}, gpu=True,
                   check=check_encoder)
def build_embeddings(ctx: BuildContext) -> Built:
    """Encode the training images (no labels are read)."""
    p = ctx.params
    started = time.perf_counter()
    emb = encode(p["encoder"], ctx.dataset, p["args"], ctx.local.get("weights"), ctx.device)
    return Built({"embeddings": emb}, {"encoder": p["encoder"], "dim": int(emb.shape[1]),
                                       "seconds": time.perf_counter() - started})
