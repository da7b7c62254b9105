"""Label sources: where a student's training targets come from, as a loss per batch.

One registry, like the selectors': ``@register_label_source(name, needs=…)`` on a factory
``(config, inputs) -> LabelSource``. ``needs`` names what the planner must build first
(``teacher``, ``pseudo_labels``, or any artifact kind a plugin registers). Built in:

- ``hard`` — cross-entropy on ground truth (soft-label paper, Eq. 5);
- ``smooth`` — label smoothing ε (Eq. 2 with ``smoothing: paper``, else PyTorch's ε/K);
- ``soft`` — fixed teacher soft labels, one cached output per image (Eq. 4–6);
- ``kd`` — online distillation, the teacher's output for each augmented view (Eq. 4–6);
  both take ``args: {topk: k}``: FKD's top-k logits (:mod:`coretune.train.topk`);
- ``pseudo`` — cross-entropy on pseudo-labels (ELFS, Sec. 4).

A source registered with ``mixes=True`` takes CutMix batches (``augment.cutmix``): its
``loss`` gets the batch's :class:`~coretune.train.mixing.BatchMix` as ``mix=``. ``hard``,
``smooth`` and ``pseudo`` mix their targets by area, keep·y + (1 − keep)·y_partner; ``kd``
distils the teacher's output on the mixed image (its CE term mixed by area). ``soft`` does
not mix: its fixed label belongs to one image (Hard Truths' SL regime), so CutMix with it
is refused (:func:`check_mixing`); mixed views relabelled by the teacher are SL+KD (``kd``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from pydantic import Field, ValidationError
from torch import Tensor

from coretune.errors import PluginArgumentError, UnknownNameError
from coretune.registry import Registry, origin_of
from coretune.spec import (
    PIPELINE_SPECS,
    AugmentSpec,
    ClusteringSpec,
    EncoderSpec,
    Frozen,
    KnnSpec,
    TrialSpec,
    argument_problem,
    sub_spec,
)
from coretune.train.losses import (
    cross_entropy,
    cross_entropy_rows,
    distillation_loss,
    smoothed_targets,
)
from coretune.train.mixing import BatchMix
from coretune.train.topk import TopKLogits, as_teacher_logits, teacher_rows

#: ``view_logits(seed, epochs[E], indices[n]) -> [E, n, K]`` teacher logits of each view.
ViewLogits = Callable[[int, np.ndarray, np.ndarray], Tensor | np.ndarray]


@dataclass
class TeacherSignal:
    """Where a student's teacher logits come from: fixed per image (soft) or per view (kd)."""

    fixed_logits: Tensor | None = None
    view_logits: ViewLogits | None = None


#: the trial spec's defaults of the label fields: neutral where a label source ignores them
_NEUTRAL = {name: TrialSpec.model_fields[name].default
            for name in ("label_mode", "tau", "lam", "eps", "smoothing")}


@dataclass(frozen=True)
class LabelConfig:
    """The label settings of a trial: τ, λ, ε, the smoothing convention, extra arguments.

    A view of :class:`~coretune.spec.TrialSpec`'s label fields (:meth:`of`), which hold the
    one default and the one validation of each; the defaults here are read from there."""

    mode: str = _NEUTRAL["label_mode"]
    tau: float = _NEUTRAL["tau"]
    lam: float = _NEUTRAL["lam"]
    eps: float = _NEUTRAL["eps"]
    smoothing: str = _NEUTRAL["smoothing"]
    args: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, trial: TrialSpec) -> LabelConfig:
        """The label settings of ``trial``."""
        return cls(trial.label_mode, trial.tau, trial.lam, trial.eps, trial.smoothing,
                   dict(trial.label_args))


@dataclass
class LabelInputs:
    """What a label source may draw on: ground truth, a teacher, built artifacts by need."""

    targets: Tensor  # int64 [N] ground-truth training labels, on the device
    teacher: TeacherSignal | None = None
    artifacts: Mapping[str, Any] = field(default_factory=dict)


class LabelSource:
    """A loss over batches. ``bind`` once per coreset, ``begin_segment`` per report segment.

    ``idx`` are dataset indices of the batch, ``pos`` their positions in the coreset;
    ``mix`` (given only to a source registered with ``mixes=True``, and only for a CutMix
    batch) says how the batch was mixed.
    """

    def bind(self, indices: Tensor, seed: int) -> None:
        """Called with the coreset's dataset indices before training."""

    def begin_segment(self, seed: int, epochs: np.ndarray, indices: np.ndarray) -> None:
        """Called before the epochs of each report segment."""

    def loss(self, logits: Tensor, idx: Tensor, pos: Tensor, epoch: int,
             weights: Tensor | None, mix: BatchMix | None = None) -> Tensor:
        raise NotImplementedError


class HardLabels(LabelSource):
    """Cross-entropy on integer targets (ground truth or pseudo-labels); on a CutMix batch,
    keep·CE(y) + (1 − keep)·CE(y_partner)."""

    def __init__(self, targets: Tensor):
        self.targets = targets

    def hard_targets(self, logits: Tensor, idx: Tensor, mix: BatchMix | None) -> Tensor:
        """The batch's class targets, or their mixed one-hot rows on a CutMix batch."""
        y = self.targets[idx]
        return y if mix is None else mix.targets(y, logits.shape[-1])

    def loss(self, logits, idx, pos, epoch, weights, mix=None):
        return cross_entropy(logits, self.hard_targets(logits, idx, mix), weights)


class SmoothLabels(HardLabels):
    """Cross-entropy on label-smoothed targets (Eq. 2 or PyTorch's convention)."""

    def __init__(self, targets: Tensor, eps: float, convention: str):
        super().__init__(targets)
        self.eps, self.convention = eps, convention

    def loss(self, logits, idx, pos, epoch, weights, mix=None):
        probs = smoothed_targets(self.targets[idx], logits.shape[-1], self.eps, self.convention)
        return cross_entropy(logits, probs if mix is None else mix.mix_rows(probs), weights)


class FixedTeacherLabels(HardLabels):
    """(1−λ)·CE + λ·τ²·KL against the teacher's output on the un-augmented image
    (its top ``topk`` logits only, compressed per coreset, if given)."""

    def __init__(self, targets: Tensor, logits: Tensor, tau: float, lam: float,
                 topk: int | None = None):
        super().__init__(targets)
        self.all_logits, self.tau, self.lam, self.topk = logits, tau, lam, topk

    def bind(self, indices, seed):
        rows = self.all_logits.to(indices.device)[indices]
        self.coreset_logits = rows if self.topk is None else TopKLogits.compress(rows, self.topk)

    def loss(self, logits, idx, pos, epoch, weights, mix=None):
        if mix is not None:
            raise ValueError("fixed soft labels belong to one image each: no CutMix (kd "
                             "relabels each mixed view)")
        return distillation_loss(logits, self.targets[idx], teacher_rows(self.coreset_logits, pos),
                                 self.tau, self.lam, weights)


class ViewTeacherLabels(HardLabels):
    """Online KD: the teacher's output for each (seed, epoch, index) view the student sees
    (its top ``topk`` logits only, if given: compressed here unless they came compressed);
    on CutMix batches the view is the mixed image and the CE term is mixed by area."""

    def __init__(self, targets: Tensor, view_logits: ViewLogits, tau: float, lam: float,
                 topk: int | None = None):
        super().__init__(targets)
        self.view_logits, self.tau, self.lam, self.topk = view_logits, tau, lam, topk
        self.segment: dict[int, Tensor | TopKLogits] = {}

    def begin_segment(self, seed, epochs, indices):
        got = as_teacher_logits(self.view_logits(seed, epochs, indices), self.topk,
                                self.targets.device)
        self.segment = {int(e): got[i] for i, e in enumerate(epochs)}

    def loss(self, logits, idx, pos, epoch, weights, mix=None):
        return distillation_loss(logits, self.hard_targets(logits, idx, mix),
                                 teacher_rows(self.segment[epoch], pos),
                                 self.tau, self.lam, weights)


def stacked_losses(sources: list[LabelSource], logits: Tensor, idx: Tensor, pos: Tensor,
                   epoch: int, weights: Tensor | None, mix: BatchMix | None = None) -> Tensor:
    """``[K]`` losses of K students' label sources on their rows of a fused batch
    (``[K, B, C]`` logits, ``[K, B]`` indices, positions and ``mix``): one batched
    cross-entropy when all are plain hard labels on the same targets, else each source's
    own loss."""
    first = sources[0]
    if weights is None and mix is None and all(
            type(s) is HardLabels and s.targets is first.targets for s in sources):
        return cross_entropy_rows(logits, first.targets[idx])
    losses = []
    for j, s in enumerate(sources):
        w = None if weights is None else weights[j]
        losses.append(s.loss(logits[j], idx[j], pos[j], epoch, w) if mix is None else
                      s.loss(logits[j], idx[j], pos[j], epoch, w, mix=mix.row(j)))
    return torch.stack(losses)


LabelFactory = Callable[[LabelConfig, LabelInputs], LabelSource]


class NoArguments(Frozen):
    """The arguments of a label source that takes none."""


@dataclass(frozen=True)
class LabelSourceInfo:
    """A registered label source. ``args`` is the typed model of its ``args:`` mapping (one
    default per setting, unknown names refused); deriving from a sub-spec of
    :data:`coretune.spec.PIPELINE_SPECS` declares that the source's artifacts read it."""

    name: str
    factory: LabelFactory
    needs: frozenset[str]
    uses: frozenset[str]  # which of tau, lam, eps, smoothing the source reads
    paper: str = ""
    args: type[Frozen] = NoArguments
    mixes: bool = False  # its loss takes CutMix batches (``mix=``)

    def sub_spec(self, name: str, args: Mapping[str, Any]) -> Frozen | None:
        """Sub-spec ``name`` from ``args`` (None if the source's args do not declare it)."""
        model = PIPELINE_SPECS[name]
        return sub_spec(model, args) if issubclass(self.args, model) else None

    def validate_args(self, args: Mapping[str, Any]) -> None:
        """Check ``args`` strictly against the source's model: one line naming the label
        mode, the argument and the value (or the unknown names and the accepted ones)."""
        what = f"label mode {self.name!r}"
        if not isinstance(args, Mapping):
            raise PluginArgumentError(f"{what}: args must be a mapping, got {args!r}")
        accepted = sorted(self.args.model_fields)
        unknown = sorted(set(args) - set(accepted))
        if unknown:
            raise PluginArgumentError(f"{what} takes no argument(s) {unknown}; it accepts "
                                      f"{accepted or 'none'}")
        try:
            self.args.model_validate(dict(args))
        except ValidationError as err:
            raise PluginArgumentError(argument_problem(what, err)) from None


class UnknownLabelSourceError(UnknownNameError):
    """A label mode that is not registered."""


LABEL_SOURCES: Registry[LabelSourceInfo] = Registry("label mode", UnknownLabelSourceError)


def register_label_source(name: str, *, needs: Iterable[str] = (), uses: Iterable[str] = (),
                          paper: str = "", args: type[Frozen] = NoArguments,
                          mixes: bool = False, replace: bool = False
                          ) -> Callable[[LabelFactory], LabelFactory]:
    """Register ``factory(config, inputs) -> LabelSource`` as label mode ``name``; ``args``
    is the strict model of its ``args:`` (validated before Ray starts; default: none);
    ``mixes``: its sources' ``loss`` takes CutMix batches (``mix=``)."""

    def decorate(fn: LabelFactory) -> LabelFactory:
        info = LabelSourceInfo(name, fn, frozenset(needs), frozenset(uses), paper, args,
                               mixes)
        LABEL_SOURCES.add(name, info, origin=origin_of(fn), replace=replace)
        return fn

    return decorate


def get_label_source(name: str) -> LabelSourceInfo:
    return LABEL_SOURCES.get(name)


def available_label_sources() -> list[str]:
    return LABEL_SOURCES.names()


def check_mixing(mode: str, augment: AugmentSpec | None) -> None:
    """Refuse CutMix views (``augment.cutmix``) for a label mode whose loss does not take
    them (``ValueError``, one line naming the mode)."""
    if augment is None or augment.cutmix is None or get_label_source(mode).mixes:
        return
    why = (" keeps one fixed teacher label per image (Hard Truths' SL), which a mixed image "
           "does not have; SL+KD views relabelled by the teacher are mode 'kd'"
           if mode == "soft" else " does not take mixed batches (register_label_source("
           "mixes=True) declares a loss that does)")
    raise ValueError(f"augment.cutmix mixes two images per view, and label mode {mode!r}{why}")


def make_label_source(config: LabelConfig, inputs: LabelInputs) -> LabelSource:
    """The label source of ``config.mode``, checking that its needs were supplied."""
    info = get_label_source(config.mode)
    missing = [n for n in info.needs
               if n != "teacher" and n not in inputs.artifacts]
    if "teacher" in info.needs and inputs.teacher is None:
        missing.append("teacher")
    if missing:
        raise ValueError(f"label mode {config.mode!r} needs {sorted(missing)}")
    return info.factory(config, inputs)


@register_label_source("hard", mixes=True,
                       paper="cross-entropy on ground truth (soft-label paper Eq. 5)")
def _hard(cfg: LabelConfig, inputs: LabelInputs) -> LabelSource:
    return HardLabels(inputs.targets)


@register_label_source("smooth", uses=("eps", "smoothing"), mixes=True,
                       paper="label smoothing, Szegedy et al. 2016 (soft-label paper Eq. 2)")
def _smooth(cfg: LabelConfig, inputs: LabelInputs) -> LabelSource:
    return SmoothLabels(inputs.targets, cfg.eps, cfg.smoothing)


class TeacherLabelArgs(Frozen):
    """``soft``/``kd`` args: ``topk`` keeps each target's top-k teacher logits and spreads
    the rest's mass evenly (FKD, Shen & Xing, ECCV 2022; :mod:`coretune.train.topk`)."""

    topk: int | None = Field(None, ge=1)


@register_label_source("soft", needs=("teacher",), uses=("tau", "lam"), args=TeacherLabelArgs,
                       paper="fixed teacher soft labels (soft-label paper Eq. 4-6)")
def _soft(cfg: LabelConfig, inputs: LabelInputs) -> LabelSource:
    if inputs.teacher.fixed_logits is None:
        raise ValueError("label mode 'soft' needs the teacher's fixed logits")
    return FixedTeacherLabels(inputs.targets, inputs.teacher.fixed_logits, cfg.tau, cfg.lam,
                              TeacherLabelArgs.model_validate(dict(cfg.args)).topk)


@register_label_source("kd", needs=("teacher",), uses=("tau", "lam"), args=TeacherLabelArgs,
                       mixes=True,
                       paper="online distillation, Hinton et al. 2015 (soft-label paper Eq. 4-6)")
def _kd(cfg: LabelConfig, inputs: LabelInputs) -> LabelSource:
    if inputs.teacher.view_logits is None:
        raise ValueError("label mode 'kd' needs the teacher's per-view logits")
    return ViewTeacherLabels(inputs.targets, inputs.teacher.view_logits, cfg.tau, cfg.lam,
                             TeacherLabelArgs.model_validate(dict(cfg.args)).topk)


class PseudoLabelArgs(EncoderSpec, KnnSpec, ClusteringSpec):
    """The ``pseudo`` mode's args: the encoder, k-NN and clustering that make its labels."""


@register_label_source("pseudo", needs=("pseudo_labels",), args=PseudoLabelArgs, mixes=True,
                       paper="ELFS (Zheng, Tsai et al., ICLR 2025): train on pseudo-labels")
def _pseudo(cfg: LabelConfig, inputs: LabelInputs) -> LabelSource:
    y = torch.as_tensor(np.asarray(inputs.artifacts["pseudo_labels"]), dtype=torch.int64,
                        device=inputs.targets.device)
    if y.shape != inputs.targets.shape:
        raise ValueError(f"pseudo-labels have shape {tuple(y.shape)}, expected "
                         f"{tuple(inputs.targets.shape)}")
    return HardLabels(y)
