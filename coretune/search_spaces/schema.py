"""Search spaces: a YAML file, validated by pydantic, expanded into :class:`TrialSpec` s.

A sweep is the grid dataset × arch × selector (× its ``grid`` args) × ratio × label mode
(× τ, λ, ε) × seed. The recipes and their defaults are :mod:`coretune.spec`'s; this layer
only adds the grid and the checks of names against the registries (datasets, archs,
selectors, label modes, artifact kinds). Validation happens before Ray starts; every error
names the field and the bad value.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from coretune.errors import SpecError
from coretune.plugins import import_plugins
from coretune.search_spaces.files import apply_overrides, read_with_includes, resolve_spec_path
from coretune.search_spaces.settings import BudgetAxisSpec, ResourcesSpec, SchedulerSpec
from coretune.selectors import SELECTORS, get_selector
from coretune.selectors.base import proxy_recipe
from coretune.spec import (
    AugmentSpec,
    DataSpec,
    DynamicsSpec,
    Frozen,
    OptimizerSpec,
    RecipeSpec,
    Seed,
    TrialSpec,
)

# Validation runs twice: first the structure (types, ranges, grids, selector arguments)
# without importing torch or Ray, so a malformed spec is refused at once; then, with the
# registries of datasets, models and label sources imported, the names.
_REGISTRIES = "registries"


def _registries(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get(_REGISTRIES))

METRIC_PATTERN = re.compile(r"^(test|val)_(acc|top5|nll|ece)$")


def _as_list(v: Any) -> list:
    return v if isinstance(v, list) else [v]


class ArchSpec(Frozen):
    """A student architecture and its builder's arguments (e.g. ``mlp`` hidden sizes)."""

    name: str
    args: dict[str, Any] = {}

    @model_validator(mode="after")
    def _known(self, info: ValidationInfo) -> ArchSpec:
        if _registries(info):
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
        if self.name not in SELECTORS and not _registries(info):
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

    @field_validator("mode")
    @classmethod
    def _mode(cls, v: str, info: ValidationInfo) -> str:
        if _registries(info):
            from coretune.train.labels import get_label_source

            get_label_source(v)
        return v

    @field_validator("args")
    @classmethod
    def _args(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """``args`` strictly against the label source's typed model (unknown names, types
        and bounds), once the registries are imported; kept as written (keys hash them)."""
        if _registries(info) and "mode" in info.data:
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
        for x in _as_list(v):
            if not ok(x):
                raise ValueError(f"{info.field_name} must be {bounds}, got {x}")
        return v

    def expand(self) -> list[dict[str, Any]]:
        """Concrete label settings; the knobs this source does not use are neutral."""
        from coretune.train.labels import get_label_source

        uses = get_label_source(self.mode).uses
        grid = {k: [float(x) for x in _as_list(getattr(self, k))] if k in uses else [_NEUTRAL[k]]
                for k in ("tau", "lam", "eps")}
        smoothing = self.smoothing if "smoothing" in uses else _NEUTRAL["smoothing"]
        return [{"label_mode": self.mode, "tau": t, "lam": lam, "eps": e,
                 "smoothing": smoothing, "label_args": self.args}
                for t, lam, e in itertools.product(grid["tau"], grid["lam"], grid["eps"])]


class SweepSpec(Frozen):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    plugins: list[str] = []
    datasets: list[DataSpec] = Field(min_length=1)
    data_root: str | None = None
    archs: list[ArchSpec] = Field(min_length=1)
    selectors: list[SelectorSpec] = Field(min_length=1)
    ratios: list[float] = Field(min_length=1)
    label_modes: list[LabelModeSpec] = Field(min_length=1)
    seeds: list[Seed] = Field([0], min_length=1)
    budget: BudgetAxisSpec = BudgetAxisSpec()
    optimizer: OptimizerSpec = OptimizerSpec()
    augment: AugmentSpec | None = None
    teacher: RecipeSpec = RecipeSpec()
    dynamics: DynamicsSpec = DynamicsSpec()
    metric: str = "test_acc"
    students_per_trial: int = Field(1, ge=1)
    #: train up to this many students that differ only by seed as one fused model
    #: (coretune.train.fused); execution only, never in a key; groups hold at least this many
    fuse: int = Field(1, ge=1)
    #: torch.compile each student trained alone with this mode (fused students are not);
    #: execution only, never in a key (bench/train_throughput.py measures what it buys)
    compile: Literal["default", "reduce-overhead", "max-autotune"] | None = None
    retries: int = Field(1, ge=0)  # a Tune trial that raises is re-run this many times
    resources: ResourcesSpec = ResourcesSpec()
    scheduler: SchedulerSpec = SchedulerSpec()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if set(v) == {"."}:
            raise ValueError(f"name must not be only dots, got {v!r}")
        return v

    @field_validator("datasets", "archs", "seeds", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return _as_list(v)

    @field_validator("datasets", mode="before")
    @classmethod
    def _dataset_names(cls, v: Any) -> Any:
        return [{"name": d} if isinstance(d, str) else d for d in _as_list(v)]

    @field_validator("archs", mode="before")
    @classmethod
    def _arch_names(cls, v: Any) -> Any:
        return [{"name": a} if isinstance(a, str) else a for a in _as_list(v)]

    @field_validator("datasets")
    @classmethod
    def _datasets(cls, v: list[DataSpec], info: ValidationInfo) -> list[DataSpec]:
        if not _registries(info):
            return v
        from coretune.train.data import available_datasets, check_data_spec

        for d in v:
            if d.name not in available_datasets():
                raise ValueError(f"unknown dataset {d.name!r}; available: "
                                 f"{', '.join(available_datasets())}")
            check_data_spec(d)
        return v

    @field_validator("teacher", "dynamics")
    @classmethod
    def _recipe_arch(cls, v: RecipeSpec, info: ValidationInfo) -> RecipeSpec:
        if _registries(info):
            from coretune.train.models import check_model_name

            check_model_name(v.arch, v.arch_args)
        return v

    @field_validator("augment", "teacher", "dynamics")
    @classmethod
    def _augment_ops(cls, v: Any, info: ValidationInfo) -> Any:
        """Augmentation op names and arguments, against the registry (plugins imported)."""
        if _registries(info):
            from coretune.train.augment import check_augment

            recipe = isinstance(v, RecipeSpec)
            check_augment(v.augment if recipe else v, "augment.ops" if recipe else "ops")
        return v

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, v: list[float]) -> list[float]:
        for r in v:
            if not 0 < r <= 1:
                raise ValueError(f"ratio must be in (0, 1], got {r}")
        return v

    @model_validator(mode="after")
    def _validation_split(self) -> SweepSpec:
        """Selectors that read validation signals (CLD) need a held-out split."""
        for i, sel in enumerate(self.selectors):
            if sel.name in SELECTORS and get_selector(sel.name).needs_validation:
                bad = [d.name for d in self.datasets if d.val_fraction <= 0]
                if bad:
                    raise ValueError(f"selectors.{i}: {sel.name!r} needs a validation split; "
                                     f"set val_fraction > 0 for dataset(s) {bad}")
        return self

    @model_validator(mode="after")
    def _metric(self) -> SweepSpec:
        if not METRIC_PATTERN.match(self.metric):
            raise ValueError(f"metric must be <test|val>_<acc|top5|nll|ece>, got {self.metric!r}")
        if self.metric.startswith("val_"):
            bad = [d.name for d in self.datasets if d.val_fraction <= 0]
            if bad:
                raise ValueError(f"metric {self.metric!r} needs a validation split: set "
                                 f"val_fraction > 0 for dataset(s) {bad}")
        return self

    @property
    def metric_mode(self) -> str:
        """Whether the sweep maximises or minimises its metric."""
        return "max" if self.metric.endswith(("_acc", "_top5")) else "min"


def _format_error(err: ValidationError, source: str) -> str:
    """One line: every failing field with its message and the value it got."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"field '{loc}': {msg} (got {e.get('input')!r})")
    return f"invalid search space {source}: " + "; ".join(parts)


def parse_spec(data: Any, source: str = "<spec>") -> SweepSpec:
    """Validate a search space given as a mapping; raises :class:`SpecError`."""
    if not isinstance(data, dict):
        raise SpecError(f"invalid search space {source}: expected a mapping at top level")
    try:
        SweepSpec.model_validate(data)  # the structure first: no torch, no Ray
    except ValidationError as err:
        raise SpecError(_format_error(err, source)) from None
    import_plugins(data.get("plugins"))
    try:
        return SweepSpec.model_validate(data, context={_REGISTRIES: True})
    except ValidationError as err:
        raise SpecError(_format_error(err, source)) from None


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> SweepSpec:
    """Read and validate a YAML search space (a path or a packaged space's name), with its
    ``include:`` files and ``--set`` overrides (see :mod:`coretune.search_spaces.files`)."""
    path = resolve_spec_path(path)
    data = apply_overrides(read_with_includes(path), overrides)
    return parse_spec(data, str(path))


def _with_recipes(trial: TrialSpec) -> TrialSpec:
    """Keep each optional recipe of the trial (a field that defaults to None: teacher,
    dynamics) only if some kind of its artifact graph declares that it reads it
    (``register_artifact(recipes=...)``): a recipe nothing reads stays out of the trial, so
    it cannot change the trial's id, and no kind is named here."""
    from coretune.artifacts.graph import UnknownKindError, get_kind, need_nodes
    from coretune.train.labels import get_label_source

    needs = set(get_selector(trial.selector).needs(trial.selector_args))
    needs |= get_label_source(trial.label_mode).needs
    try:
        kinds = {n.kind for node in need_nodes(needs, trial, "").values() for n in node.walk()}
    except UnknownKindError as err:
        raise SpecError(f"search space {trial.sweep}: selector {trial.selector!r} / label "
                        f"mode {trial.label_mode!r}: {err}") from None
    read = {r for kind in kinds for r in get_kind(kind).recipes}
    optional = [name for name, f in TrialSpec.model_fields.items() if f.default is None]
    return trial.model_copy(update={r: getattr(trial, r) if r in read else None
                                    for r in optional})


def _check_proxy(trial: TrialSpec) -> None:
    """The selector's own proxy recipe, with the spec's ``proxy:`` override, must be valid."""
    if not trial.selector_proxy:
        return
    try:
        proxy_recipe(trial)
    except ValidationError as err:
        first = err.errors()[0]
        raise SpecError(f"search space {trial.sweep}: selector {trial.selector!r} proxy."
                        f"{'.'.join(map(str, first['loc']))}: {first['msg']} (got "
                        f"{first.get('input')!r})") from None


def expand(spec: SweepSpec) -> list[TrialSpec]:
    """All students of a sweep, in a fixed order."""
    from coretune.train.data import dataset_info

    trials, seen = [], set()
    for data, arch, sel, ratio, budget, lm, seed in itertools.product(
            spec.datasets, spec.archs, spec.selectors, spec.ratios, spec.budget.expand(),
            spec.label_modes, spec.seeds):
        default_aug = dataset_info(data.name).augment_for(data)

        def resolve(a: AugmentSpec | None, default: AugmentSpec = default_aug) -> AugmentSpec:
            return default if a is None else a

        for args, labels in itertools.product(sel.expand(), lm.expand()):
            trial = _with_recipes(TrialSpec(
                sweep=spec.name, dataset=data, arch=arch.name, arch_args=arch.args,
                selector=sel.name, selector_args=args, selector_proxy=sel.proxy,
                ratio=float(ratio), seed=int(seed),
                **labels, budget=budget, optimizer=spec.optimizer,
                augment=resolve(spec.augment),
                teacher=spec.teacher.model_copy(update={"augment": resolve(spec.teacher.augment)}),
                dynamics=spec.dynamics.model_copy(
                    update={"augment": resolve(spec.dynamics.augment)}),
                metric=spec.metric))
            _check_proxy(trial)
            science = repr(trial.science())
            if science in seen:
                raise SpecError(f"search space {spec.name}: it lists the same trial more "
                                "than once")
            seen.add(science)
            trials.append(trial)
    return trials
