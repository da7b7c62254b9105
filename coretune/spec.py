"""The typed trial spec: the one definition of a trial, its recipes and their defaults.

This module is the leaf of coretune: it imports nothing from the package. The YAML layer
(:mod:`coretune.search_spaces`) parses into these models and the harness only consumes
them. :func:`content_key` is the one function that names anything content-addressed —
artifacts and trials alike — from (kind, the kind's version, spec, dependency keys, a
dataset fingerprint), never from a machine-local path.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

KEY_DIGITS = 24
#: marks a field that changes how a run executes, never what it computes (grouping,
#: fusing, smoke runs, logging): ``Field(..., json_schema_extra=EXECUTION_ONLY)``
EXECUTION_ONLY: dict[str, Any] = {"execution_only": True}


class Frozen(BaseModel):
    """Immutable, strict (no coercion of strings or booleans into numbers, no inf/NaN), no
    unknown fields: every spec model derives from it.

    **The key rule.** :meth:`key_dump` is what a content key hashes. The fields a model
    lists in ``KEYED_ALWAYS`` (those it had when its keys were first made) enter with their
    value, default or not, so those keys stay valid; a field added since enters only when
    set away from its default, and an execution-only field (``EXECUTION_ONLY``) never.
    Adding a field at its default therefore changes no trial id and no artifact key.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
    KEYED_ALWAYS: ClassVar[frozenset[str]] = frozenset()

    def key_dump(self) -> dict[str, Any]:
        """The JSON form of this model that content keys hash (see the key rule above)."""
        out: dict[str, Any] = {}
        for name, info in type(self).model_fields.items():
            extra = info.json_schema_extra
            if isinstance(extra, dict) and extra.get("execution_only"):
                continue
            value = getattr(self, name)
            if (name not in self.KEYED_ALWAYS and not info.is_required()
                    and value == info.get_default(call_default_factory=True)):
                continue
            out[name] = _plain(value)
        return out


#: seeds are unsigned 32-bit: numpy, torch and CUDA generators all accept them
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


class OptimizerSpec(Frozen):
    """SGD (optionally Nesterov) or AdamW; cosine, constant or step schedule (the LR times
    ``decay_factor`` from ``decay_at`` of the steps on: Hard Truths' HL protocol, StepLR at
    epoch 151 of 300) with linear warm-up."""

    KEYED_ALWAYS = frozenset({
        'name', 'lr', 'momentum', 'nesterov', 'weight_decay', 'decay_norm_and_bias', 'batch_size',
        'schedule', 'warmup_steps'})

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True  # only with momentum > 0
    weight_decay: float = Field(5e-4, ge=0)
    decay_norm_and_bias: bool = False  # weight decay on 1-d parameters (norms, biases)
    batch_size: int = Field(128, ge=1)
    schedule: Literal["cosine", "constant", "step"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    decay_at: float = Field(0.5, gt=0, lt=1)  # step schedule: share of the steps
    decay_factor: float = Field(0.1, gt=0, lt=1)  # step schedule: the LR's factor after


class BudgetSpec(Frozen):
    """Training length: ``value`` passes over the set trained on (``epochs``), optimiser
    steps (``iterations``), training images seen (``images``) or multiples of the full
    training split's size in images seen (``full_epochs``, may be fractional).

    The last two align compute across arms (Hard Truths, Dey et al. 2026): any subset size
    trains on the same number of images, its batch clamped to the subset and its step count
    following (:func:`coretune.train.loop.plan_steps`)."""

    KEYED_ALWAYS = frozenset({'unit', 'value', 'max_reports'})

    unit: Literal["epochs", "iterations", "images", "full_epochs"] = "epochs"
    value: int | float = Field(30, gt=0)
    max_reports: int = Field(20, ge=1)

    @model_validator(mode="after")
    def _whole_unless_full_epochs(self) -> BudgetSpec:
        if self.unit != "full_epochs" and (isinstance(self.value, float)
                                           or self.value < 1):
            raise ValueError(f"value must be a whole number >= 1 for unit {self.unit!r} "
                             f"(only full_epochs may be fractional), got {self.value!r}")
        return self


class AugmentOpSpec(Frozen):
    """One registered augmentation op (:mod:`coretune.train.augment`'s ``AUGMENTATIONS``) and
    its typed arguments; names and arguments are checked against the registry."""

    KEYED_ALWAYS = frozenset({'name', 'args'})

    name: str
    args: dict[str, Any] = {}


class CutMixSpec(Frozen):
    """CutMix (Yun et al., ICCV 2019) as SRe2L/RDED/FKD evaluate distilled data: each view
    gets a box of another view of the student's own batch pasted in, of area 1 − λ with
    λ ~ Beta(``alpha``, ``alpha``), with probability ``p`` (:mod:`coretune.train.mixing`)."""

    KEYED_ALWAYS = frozenset({'alpha', 'p'})

    alpha: float = Field(1.0, gt=0)
    p: float = Field(1.0, ge=0, le=1)


class AugmentSpec(Frozen):
    """Batched on-device augmentation: random crop after zero ``pad``, h-flip, then the
    registered ``ops`` in order (e.g. cutout), then ``cutmix`` within the student's batch,
    then Gaussian noise.

    ``noise_std`` is added to the normalised input (standard deviations of each channel).
    """

    KEYED_ALWAYS = frozenset({'pad', 'flip', 'noise_std'})

    pad: int = Field(0, ge=0)
    flip: bool = False
    noise_std: float = Field(0.0, ge=0)
    ops: list[AugmentOpSpec] = []
    cutmix: CutMixSpec | None = None

    @property
    def active(self) -> bool:
        return bool(self.pad or self.flip or self.noise_std or self.ops or self.cutmix)


class LabelNoiseSpec(Frozen):
    """Injected training-label noise: ``symmetric`` flips a ``rate`` share of the labels to
    another class uniformly; ``pairwise`` flips them to the next class (c → c + 1 mod K)."""

    KEYED_ALWAYS = frozenset({'kind', 'rate', 'seed'})

    kind: Literal["symmetric", "pairwise"] = "symmetric"
    rate: float = Field(gt=0, lt=1)
    seed: Seed = 0


class DataSpec(Frozen):
    """A dataset and how it is split.

    ``test_fraction`` splits datasets without a canonical test split (digits: 0.2, stratified,
    seeded by ``split_seed``); ``val_fraction`` holds a stratified validation split out of the
    training split (0: none). ``image_size`` resizes folder datasets (ImageFolder layouts:
    Tiny ImageNet, ImageNet) when they are decoded; ``label_noise`` corrupts the training
    labels (the test split stays clean).
    """

    KEYED_ALWAYS = frozenset({
        'name', 'test_fraction', 'val_fraction', 'split_seed', 'image_size', 'label_noise'})

    name: str
    test_fraction: float | None = Field(None, gt=0, lt=1)
    val_fraction: float = Field(0.0, ge=0, lt=1)
    split_seed: Seed = 0
    image_size: int | None = Field(None, ge=8, le=1024)
    label_noise: LabelNoiseSpec | None = None


class RecipeSpec(Frozen):
    """A full-data training run (teacher or training dynamics) with hard ground-truth labels.

    ``augment`` None means the dataset's default augmentation (resolved on expansion).
    """

    KEYED_ALWAYS = frozenset({'arch', 'arch_args', 'seed', 'optimizer', 'budget', 'augment'})

    arch: str = "small_cnn"
    arch_args: dict[str, Any] = {}
    seed: Seed = 0
    optimizer: OptimizerSpec = OptimizerSpec()
    budget: BudgetSpec = BudgetSpec()
    augment: AugmentSpec | None = None


class DynamicsSpec(RecipeSpec):
    """Recorded proxy runs whose training dynamics score the data (AUM, forgetting, EL2N,
    GraNd, uncertainty) and whose outputs, features and gradients feed the selectors.

    ``label_source`` is ``ground_truth`` or the name of an artifact kind that provides
    per-sample integer labels (e.g. pseudo-labels). ``runs`` proxy runs (seeds ``seed``,
    ``seed + 1``, …) are averaged, as EL2N and GraNd average over initialisations (Paul et
    al. 2021 use 10). ``el2n_epoch`` is when EL2N and GraNd are taken (None: 10 % of
    training). ``outputs`` says where the per-epoch outputs come from: each sample's
    training forward pass (free) or an extra eval-mode pass over the training split per
    epoch.
    """

    KEYED_ALWAYS = frozenset({
        'arch', 'arch_args', 'seed', 'optimizer', 'budget', 'augment', 'label_source', 'el2n_epoch',
        'runs', 'outputs'})

    label_source: str = "ground_truth"
    el2n_epoch: int | None = Field(None, ge=1)
    runs: int = Field(1, ge=1, le=100)
    outputs: Literal["train_pass", "eval"] = "train_pass"


LABEL_METRICS = ("acc", "top5", "nll", "ece")


class TrialSpec(Frozen):
    """One student: (dataset, selector, ratio, label mode, τ, λ, ε, β, arch, seed) + recipes.

    ``teacher`` is set only when the label mode needs a teacher and ``dynamics`` only when the
    selector needs training-dynamics scores, so neither enters the key of a trial without it.
    ``metric`` is what the sweep optimises (``<split>_<acc|top5|nll|ece>``).
    """

    KEYED_ALWAYS = frozenset({
        'sweep', 'dataset', 'arch', 'arch_args', 'selector', 'selector_args', 'ratio', 'label_mode',
        'label_args', 'tau', 'lam', 'eps', 'smoothing', 'seed', 'budget', 'optimizer', 'augment',
        'teacher', 'dynamics', 'metric'})

    sweep: str
    dataset: DataSpec
    arch: str
    arch_args: dict[str, Any] = {}
    selector: str
    selector_args: dict[str, Any] = {}
    selector_proxy: dict[str, Any] = {}  # override of the selector's own proxy recipe
    ratio: float = Field(gt=0, le=1)
    #: images per class (Hard Truths): ``ratio`` is then IPC × classes / training images
    ipc: int | None = Field(None, ge=1)
    label_mode: str = "hard"
    label_args: dict[str, Any] = {}
    tau: float = Field(1.0, gt=0)  # softmax temperature of the teacher (Eq. 4)
    lam: float = Field(0.0, ge=0, le=1)  # weight of the distillation term (Eq. 6)
    eps: float = Field(0.0, ge=0, lt=1)  # label smoothing ε (Eq. 2)
    smoothing: Literal["uniform", "paper"] = "uniform"
    seed: Seed = 0
    budget: BudgetSpec = BudgetSpec()
    optimizer: OptimizerSpec = OptimizerSpec()
    augment: AugmentSpec = AugmentSpec()
    teacher: RecipeSpec | None = None
    dynamics: DynamicsSpec | None = None
    metric: str = "test_acc"
    #: a student of a smoke run (``coretune sweep --smoke``): its row says so; never in a key
    smoke: bool = Field(False, json_schema_extra=EXECUTION_ONLY)

    @property
    def beta(self) -> float | None:
        """The selector's hard-pruning rate β, if it takes a number (``auto``: β* is chosen
        by a search and recorded with the coreset)."""
        b = self.selector_args.get("beta")
        return float(b) if isinstance(b, int | float) and not isinstance(b, bool) else None

    def science(self) -> dict[str, Any]:
        """Everything that determines the student's result (the sweep name does not), as
        its key hashes it (see :class:`Frozen`'s key rule)."""
        return {k: v for k, v in self.key_dump().items() if k != "sweep"}

    def trial_id(self, data_fingerprint: str) -> str:
        """Stable id of this student: a content key of its science and the data."""
        return content_key("trial", 1, self.science(), None, data_fingerprint).split("-", 1)[1][:12]


def merge_fields(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override``'s values, nested mappings merged key by key (a recipe's
    ``optimizer: {lr: 0.05}`` overrides the learning rate and keeps the rest)."""
    out = dict(base)
    for key, value in override.items():
        inner = out.get(key)
        out[key] = (merge_fields(inner, value) if isinstance(inner, Mapping)
                    and isinstance(value, Mapping) else value)
    return out


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no whitespace) used for content addressing."""
    return json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"), default=str)


def _plain(obj: Any) -> Any:
    if isinstance(obj, Frozen):
        return obj.key_dump()
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def content_key(kind: str, version: int, spec: Any, dep_keys: Mapping[str, str] | None = None,
                data_fingerprint: str | None = None) -> str:
    """``<kind>-<hash>`` of (kind, version, spec, dependency keys, dataset fingerprint).

    Equal inputs give equal keys on every machine; a bumped ``version`` or a changed
    dependency key gives a new key, so everything downstream of a change is rebuilt.
    """
    payload = {"kind": kind, "version": int(version), "spec": _plain(spec),
               "deps": dict(sorted((dep_keys or {}).items())), "data": data_fingerprint}
    digest = hashlib.sha256(canonical_json(payload).encode()).hexdigest()
    return f"{kind}-{digest[:KEY_DIGITS]}"


# ---------------------------------------------------------------------------------------
# Typed sub-specs of the label-free pipeline (ELFS) and of its β search. A selector declares
# the ones it reads through artifacts (``register_selector(uses=…)``), a label source by its
# ``args`` model deriving from them; the YAML surface stays flat (``args: {encoder: pca,
# knn_k: 10, …}``) and the arguments enter keys exactly as written, never with defaults.

#: the pseudo-label training-dynamics scores ELFS ranks by (AUM, forgetting, EL2N)
PseudoScore = Literal["aum", "forgetting", "el2n"]
#: ELFS's hard-pruning rate β: the share of the hardest samples dropped first
Beta = Annotated[float, Field(ge=0.0, lt=1.0)]


class EncoderSpec(Frozen):
    """The encoder of the unlabelled images (ELFS, Zheng, Tsai et al., ICLR 2025, Sec. 4.1).

    ``encoder`` is a registered encoder or ``timm/<model>``; ``encoder_args`` its typed
    keyword arguments (checked against the encoder when the trial is planned);
    ``encoder_weights`` a local weights file, whose SHA-256 enters keys, never its path.
    """

    encoder: str = "pixels"
    encoder_args: dict[str, Any] = {}
    encoder_weights: str | None = None


class KnnSpec(Frozen):
    """The k-NN graph of the embeddings (ELFS and TEMI use k = 50; self excluded)."""

    knn_k: int = Field(50, ge=1)
    knn_metric: Literal["cosine", "euclidean"] = "cosine"


class ClusteringSpec(Frozen):
    """The clustering that turns embeddings into pseudo-labels (ELFS, Sec. 4.1): TEMI
    (Adaloglou et al., BMVC 2023), SCAN (Van Gansbeke et al., ECCV 2020) or k-means, into
    ``clusters`` groups (None: the dataset's number of classes)."""

    clustering: Literal["temi", "scan", "kmeans"] = "temi"
    clusters: int | None = Field(None, ge=2)
    clustering_args: dict[str, Any] = {}
    clustering_seed: int = Field(0, ge=0)


class BetaSearchSpec(Frozen):
    """ELFS's search for β (Sec. 4.3, App. B): the grid, tried in increasing order on a
    ``search_fraction`` held-out split of the pseudo-labelled data (seeded by
    ``search_seed``); a grid stops after ``patience`` falls of more than ``stop_tolerance``
    standard errors below the best; ``search_scheduler: asha`` stops weak β trials early by
    ASHA's rule (Li et al., MLSys 2020; ``grace_period``, ``reduction_factor``); ``score``
    is the pseudo-label difficulty that double-end pruning ranks by."""

    beta_grid: list[Beta] = Field(default_factory=lambda: [round(0.1 * i, 1)
                                                           for i in range(10)], min_length=1)
    search_scheduler: Literal["fifo", "asha"] = "asha"
    patience: int = Field(1, ge=1)
    stop_tolerance: float = Field(1.0, ge=0.0, le=100.0)
    search_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    search_seed: int = Field(0, ge=0)
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(3.0, gt=1.0, le=100.0)
    score: PseudoScore = "aum"


#: the sub-specs a plugin may declare it uses, by the name it declares them with
PIPELINE_SPECS: dict[str, type[Frozen]] = {
    "encoder": EncoderSpec, "knn": KnnSpec, "clustering": ClusteringSpec,
    "beta_search": BetaSearchSpec}


def sub_spec(model: type[Frozen], args: Mapping[str, Any]) -> Frozen:
    """``model`` from the flat ``args`` that name its fields (the others are ignored)."""
    return model.model_validate({k: v for k, v in args.items() if k in model.model_fields})


def argument_problem(what: str, err: ValidationError) -> str:
    """One line for flat plugin arguments that failed a strict model: the plugin, the first
    argument at fault (with its list positions), what is wrong, and the value given."""
    first = err.errors()[0]
    loc = first["loc"]
    where = ".".join([str(loc[0]), *(str(p) for p in loc[1:] if isinstance(p, int))])
    msg = first["msg"].replace("Input should", "should")
    return f"{what}: argument {where!r} {msg} (got {first.get('input')!r})"
