"""The embeddings kind: an encoder's features of the training images (ELFS, Sec. 4.1).

Label-free: only the images enter (see :mod:`coretune.train.encoders`). The settings of
the label-free pipeline are typed sub-specs (:class:`~coretune.spec.EncoderSpec`,
``KnnSpec``, ``ClusteringSpec``): :func:`pipeline_settings` builds each from the
arguments of the label source (``pseudo``'s ``args``) and then of the selector, each only
where it declares that sub-spec (``register_selector(uses=…)``, a label source's ``args``
model), over the model's defaults. An encoder's arguments are checked against the encoder
when the trial is planned; its weights file enters the key by its SHA-256, never its path.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coretune.artifacts.external_scores import file_digest
from coretune.artifacts.graph import BuildContext, Node, register_artifact
from coretune.artifacts.store import Built
from coretune.selectors import get_selector
from coretune.spec import PIPELINE_SPECS, ClusteringSpec, EncoderSpec, Frozen, KnnSpec, TrialSpec
from coretune.train.data import ImageDataset
from coretune.train.encoders import EncoderArgumentError, encode, get_encoder, lite0_weights_path
from coretune.train.labels import get_label_source


def trial_sub_spec(trial: TrialSpec, name: str) -> Frozen:
    """Sub-spec ``name`` of a trial: the model's defaults, then the settings of the label
    source's args if its model declares the sub-spec, then the selector's if it uses it
    (a setting the selector does not declare — ``prototypicality``'s own ``clusters`` —
    never reaches the pipeline)."""
    model = PIPELINE_SPECS[name]
    merged: dict[str, Any] = {}
    for declared in (get_label_source(trial.label_mode).sub_spec(name, trial.label_args),
                     get_selector(trial.selector).sub_spec(name, trial.selector_args)):
        if declared is not None:
            merged |= {k: v for k, v in declared if k in declared.model_fields_set}
    return model.model_validate(merged)


@dataclass(frozen=True)
class PipelineSettings:
    """The label-free pipeline of one trial, one typed sub-spec per stage."""

    encoder: EncoderSpec
    knn: KnnSpec
    clustering: ClusteringSpec


def pipeline_settings(trial: TrialSpec) -> PipelineSettings:
    """Encoder, k-NN and clustering settings of a trial's label-free pipeline."""
    return PipelineSettings(*(trial_sub_spec(trial, n) for n in ("encoder", "knn",
                                                                  "clustering")))


def weights_file(encoder: EncoderSpec) -> str | None:
    if encoder.encoder == "efficientnet_lite0":
        return str(lite0_weights_path())
    return encoder.encoder_weights


def embedding_params(trial: TrialSpec) -> Mapping[str, Any]:
    s = pipeline_settings(trial).encoder
    try:
        get_encoder(s.encoder).validate_args(s.encoder_args)
    except EncoderArgumentError as err:
        raise EncoderArgumentError(f"selector {trial.selector!r} / label mode "
                                   f"{trial.label_mode!r}: encoder_args: {err}") from None
    weights = weights_file(s)
    return {"encoder": s.encoder, "args": dict(s.encoder_args),
            "weights_sha256": None if weights is None else file_digest(weights,
                                                                       "encoder_weights")}


def embedding_local(trial: TrialSpec) -> Mapping[str, Any]:
    weights = weights_file(pipeline_settings(trial).encoder)
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
