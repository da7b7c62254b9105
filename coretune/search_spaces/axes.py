"""The axes of a sweep's grid: architectures, selectors (with their argument grids) and
label modes (with their τ, λ, ε grids and their own training), validated in two passes
(structure first; names against the registries once plugins are imported)."""

from __future__ import annotations

import itertools
from typing import Any, Literal

from pydantic import ValidationInfo, field_validator, model_validator

from coretune.selectors import SELECTORS, get_selector
from coretune.spec import AugmentSpec, Frozen, OptimizerSpec, TrialSpec, merge_fields

# Validation runs twice: first the structure (types, ranges, grids, selector arguments)
# without importing torch or Ray, so a malformed spec is refused at once; then, with the
# registries of datasets, models and label sources imported, the names.
REGISTRIES = "registries"


def registries_checked(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get(REGISTRIES))


def as_list(v: Any) -> list:
    return v if isinstance(v, list) else [v]


class ArchSpec(Frozen):
    """A student architecture and its builder's arguments (e.g. ``mlp`` hidden sizes)."""

    name: str
    args: dict[str, Any] = {}

    @model_validator(mode="after")
    def _known(self, info: ValidationInfo) -> ArchSpec:
        if registries_checked(info):
            from coretune.train.models import check_model_name

            check_model_name(self.name, self.args)
        return self


class SelectorSpec(Frozen):
    """A selector, its arguments (``grid``: one trial per combination) and ``proxy``, an
    override of the recipe of the selector's own proxy run (fields merged onto what the
    selector declares; only for selectors that declare one, e.g. NFG)."""

    name: str
    args: dict[str, Any] = {}
    grid: dict[str, list[Any]] = {}
    proxy: dict[str, Any] = {}

    @model_validator(mode="after")
    def _known(self, info: ValidationInfo) -> SelectorSpec:
        if self.name not in SELECTORS and not registries_checked(info):
            return self  # maybe a plugin's: checked once the spec's plugins are imported
        selector = get_selector(self.name)
        clash = set(self.args) & set(self.grid)
        if clash:
            raise ValueError(f"selector {self.name!r}: {sorted(clash)} in both args and grid")
        empty = sorted(k for k, v in self.grid.items() if not v)
        if empty:
            raise ValueError(f"selector {self.name!r}: grid {empty} has no values")
        for combo in self.expand():
            selector.validate_args(combo)
        if self.proxy and selector.proxy is None:
            raise ValueError(f"selector {self.name!r} runs no proxy of its own (its training "
                             "dynamics come from the sweep's dynamics:); drop its proxy:")
        return self

    def expand(self) -> list[dict[str, Any]]:
        keys = sorted(self.grid)
        return [{**self.args, **dict(zip(keys, vals, strict=True))}
                for vals in itertools.product(*(self.grid[k] for k in keys))]


_LABEL_BOUNDS = {
    "tau": (lambda x: x > 0, "> 0"),
    "lam": (lambda x: 0 <= x <= 1, "in [0, 1]"),
    "eps": (lambda x: 0 <= x < 1, "in [0, 1)"),
}
#: what a label source that ignores a knob gets for it: the trial spec's one default
_NEUTRAL = {k: TrialSpec.model_fields[k].default for k in ("tau", "lam", "eps", "smoothing")}


class LabelModeSpec(Frozen):
    """A label regime (a registered label source); τ, λ, ε may each be a list (grid);
    ``args`` are the source's own typed arguments (``pseudo``: encoder, k-NN, clustering)."""

    mode: str
    tau: float | list[float] = 4.0
    lam: float | list[float] = 1.0
    eps: float | list[float] = 0.1
    smoothing: Literal["uniform", "paper"] = "uniform"
    args: dict[str, Any] = {}
    #: the regime's own training (Hard Truths' protocol: HL SGD with a step decay, SL AdamW
    #: with cosine): fields merged onto the sweep's ``optimizer``; ``augment`` replaces the
    #: sweep's augmentation for this mode's students
    optimizer: dict[str, Any] = {}
    augment: AugmentSpec | None = None

    @field_validator("optimizer")
    @classmethod
    def _optimizer(cls, v: dict[str, Any]) -> dict[str, Any]:
        """Only fields an optimizer has, each of its type and range."""
        OptimizerSpec.model_validate(merge_fields(OptimizerSpec().model_dump(), v))
        return v

    @field_validator("augment")
    @classmethod
    def _augment(cls, v: AugmentSpec | None, info: ValidationInfo) -> AugmentSpec | None:
        if registries_checked(info) and v is not None:
            from coretune.train.augment import check_augment

            check_augment(v, "augment.ops")
        return v

    def training(self, optimizer: OptimizerSpec) -> OptimizerSpec:
        """The sweep's ``optimizer`` with this mode's overrides."""
        if not self.optimizer:
            return optimizer
        return OptimizerSpec.model_validate(merge_fields(optimizer.model_dump(),
                                                         self.optimizer))

    @field_validator("mode")
    @classmethod
    def _mode(cls, v: str, info: ValidationInfo) -> str:
        if registries_checked(info):
            from coretune.train.labels import get_label_source

            get_label_source(v)
        return v

    @field_validator("args")
    @classmethod
    def _args(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """``args`` strictly against the label source's typed model (unknown names, types
        and bounds), once the registries are imported; kept as written (keys hash them)."""
        if registries_checked(info) and "mode" in info.data:
            from coretune.train.labels import get_label_source

            get_label_source(info.data["mode"]).validate_args(v)
        return v

    @field_validator("tau", "lam", "eps")
    @classmethod
    def _in_range(cls, v: Any, info: Any) -> Any:
        """τ > 0, λ ∈ [0, 1], ε ∈ [0, 1), for a value or every value of a grid."""
        ok, bounds = _LABEL_BOUNDS[info.field_name]
        if isinstance(v, list) and not v:
            raise ValueError(f"{info.field_name} grid has no values")
        for x in as_list(v):
            if not ok(x):
                raise ValueError(f"{info.field_name} must be {bounds}, got {x}")
        return v

    def expand(self) -> list[dict[str, Any]]:
        """Concrete label settings; the knobs this source does not use are neutral."""
        from coretune.train.labels import get_label_source

        uses = get_label_source(self.mode).uses
        grid = {k: [float(x) for x in as_list(getattr(self, k))] if k in uses else [_NEUTRAL[k]]
                for k in ("tau", "lam", "eps")}
        smoothing = self.smoothing if "smoothing" in uses else _NEUTRAL["smoothing"]
        return [{"label_mode": self.mode, "tau": t, "lam": lam, "eps": e,
                 "smoothing": smoothing, "label_args": self.args}
                for t, lam, e in itertools.product(grid["tau"], grid["lam"], grid["eps"])]
