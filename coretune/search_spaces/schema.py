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
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from coretune.errors import SpecError
from coretune.plugins import import_plugins
from coretune.search_spaces.axes import (
    REGISTRIES,
    ArchSpec,
    LabelModeSpec,
    SelectorSpec,
    as_list,
    registries_checked,
)
from coretune.search_spaces.files import apply_overrides, read_with_includes, resolve_spec_path
from coretune.search_spaces.settings import BudgetAxisSpec, ResourcesSpec, SchedulerSpec
from coretune.selectors import SELECTORS, get_selector
from coretune.selectors.base import proxy_recipe
from coretune.spec import (
    EXECUTION_ONLY,
    AugmentSpec,
    DataSpec,
    DynamicsSpec,
    Frozen,
    OptimizerSpec,
    RecipeSpec,
    Seed,
    TrialSpec,
)

METRIC_PATTERN = re.compile(r"^(test|val)_(acc|top5|nll|ece)$")


class SweepSpec(Frozen):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    plugins: list[str] = []
    datasets: list[DataSpec] = Field(min_length=1)
    data_root: str | None = None
    archs: list[ArchSpec] = Field(min_length=1)
    selectors: list[SelectorSpec] = Field(min_length=1)
    ratios: list[float] = []
    #: images per class (Hard Truths), beside or instead of ratios
    ipcs: list[Annotated[int, Field(ge=1)]] = []
    #: teachers as a sweep axis (Hard Truths Fig. 4: a weaker ResNet-18, a MobileNet-V2):
    #: each recipe its own artifact and service; replaces ``teacher`` when given
    teachers: list[RecipeSpec] = []
    #: add the full-data arm (random at ratio 1) once per dataset, arch, compute level,
    #: label mode and seed: the reference every subset size is compared with at equal compute
    full_data: bool = False
    label_modes: list[LabelModeSpec] = Field(min_length=1)
    seeds: list[Seed] = Field([0], min_length=1)
    budget: BudgetAxisSpec = BudgetAxisSpec()
    optimizer: OptimizerSpec = OptimizerSpec()
    augment: AugmentSpec | None = None
    teacher: RecipeSpec = RecipeSpec()
    dynamics: DynamicsSpec = DynamicsSpec()
    metric: str = "test_acc"
    #: students (seeds of one configuration) per Tune trial; ``auto``: as many as make a
    #: Tune trial train 200,000 images (driver/plan.py ``auto_group_size``), up to 16
    students_per_trial: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    #: train up to this many students that differ only by seed as one fused model
    #: (coretune.train.fused); execution only, never in a key; groups hold at least this many
    fuse: int = Field(1, ge=1)
    #: torch.compile each student trained alone with this mode (fused students are not);
    #: ``auto``: ``reduce-overhead`` (CUDA graphs) on CUDA, none elsewhere; execution only,
    #: never in a key (bench/train_throughput.py measures what it buys)
    compile: Literal["auto", "default", "reduce-overhead", "max-autotune"] | None = "auto"
    retries: int = Field(1, ge=0)  # a Tune trial that raises is re-run this many times
    resources: ResourcesSpec = ResourcesSpec()
    scheduler: SchedulerSpec = SchedulerSpec()
    #: a smoke run: set by ``--smoke`` with the shrink (search_spaces/smoke.py), never by a
    #: file; execution only (the shrink changes the keys, the flag never)
    smoke: bool = Field(False, json_schema_extra=EXECUTION_ONLY)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if set(v) == {"."}:
            raise ValueError(f"name must not be only dots, got {v!r}")
        return v

    @field_validator("datasets", "archs", "seeds", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return as_list(v)

    @field_validator("datasets", mode="before")
    @classmethod
    def _dataset_names(cls, v: Any) -> Any:
        return [{"name": d} if isinstance(d, str) else d for d in as_list(v)]

    @field_validator("archs", mode="before")
    @classmethod
    def _arch_names(cls, v: Any) -> Any:
        return [{"name": a} if isinstance(a, str) else a for a in as_list(v)]

    @field_validator("datasets")
    @classmethod
    def _datasets(cls, v: list[DataSpec], info: ValidationInfo) -> list[DataSpec]:
        if not registries_checked(info):
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
        if registries_checked(info):
            from coretune.train.models import check_model_name

            check_model_name(v.arch, v.arch_args)
        return v

    @field_validator("teachers")
    @classmethod
    def _teachers(cls, v: list[RecipeSpec], info: ValidationInfo) -> list[RecipeSpec]:
        if len({repr(t.key_dump()) for t in v}) != len(v):
            raise ValueError("teachers lists a recipe twice")
        if registries_checked(info):
            from coretune.train.models import check_model_name

            for t in v:
                check_model_name(t.arch, t.arch_args)
        return v

    @field_validator("augment", "teacher", "dynamics")
    @classmethod
    def _augment_ops(cls, v: Any, info: ValidationInfo) -> Any:
        """Augmentation op names and arguments, against the registry (plugins imported)."""
        if registries_checked(info):
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
    def _sizes(self) -> SweepSpec:
        if not self.ratios and not self.ipcs:
            raise ValueError("ratios or ipcs: give at least one subset size (ratios: "
                             "fractions of the training split; ipcs: images per class)")
        if len(set(self.ipcs)) != len(self.ipcs):
            raise ValueError(f"ipcs lists a value twice: {self.ipcs}")
        return self

    @model_validator(mode="after")
    def _synthetic_sized(self) -> SweepSpec:
        """A synthetic set (RDED, CA2D, a file) is sized by images per class."""
        for i, sel in enumerate(self.selectors):
            if not self.ipcs and sel.name in SELECTORS and get_selector(sel.name).synthesizes:
                raise ValueError(f"selectors.{i}: {sel.name!r} builds a synthetic set, "
                                 "sized by images per class: give ipcs")
        return self

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
    def _cutmix(self, info: ValidationInfo) -> SweepSpec:
        """CutMix views need a label mode whose loss takes mixed batches, and no recording
        run (the dynamics' per-sample outputs of a mixed image would mix two samples)."""
        if self.dynamics.augment is not None and self.dynamics.augment.cutmix is not None:
            raise ValueError("dynamics.augment.cutmix: the training dynamics record each "
                             "sample's outputs, and a CutMix view mixes two samples")
        if registries_checked(info):
            from coretune.train.labels import check_mixing

            for i, lm in enumerate(self.label_modes):
                try:
                    check_mixing(lm.mode, lm.augment if lm.augment is not None else self.augment)
                except ValueError as err:
                    raise ValueError(f"label_modes.{i}: {err}") from None
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
    import coretune.artifacts  # noqa: F401 - kinds, and the synthetic-set methods they define
    try:
        return SweepSpec.model_validate(data, context={REGISTRIES: True})
    except ValidationError as err:
        raise SpecError(_format_error(err, source)) from None


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> SweepSpec:
    """Read and validate a YAML search space (a path or a packaged space's name), with its
    ``include:`` files and ``--set`` overrides (see :mod:`coretune.search_spaces.files`)."""
    path = resolve_spec_path(path)
    data = apply_overrides(read_with_includes(path), overrides)
    if isinstance(data, dict) and "smoke" in data:
        raise SpecError(f"invalid search space {path}: field 'smoke' is set by --smoke "
                        "(coretune sweep SPACE --smoke), which shrinks the space too")
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
    optional = [name for name, f in TrialSpec.model_fields.items() if f.default is None
                and any(isinstance(a, type) and issubclass(a, RecipeSpec)
                        for a in typing.get_args(f.annotation))]
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


#: the full-data arm's selector: every image is kept at ratio 1, whatever the selector
FULL_DATA_ARM = SelectorSpec(name="random")


def ipc_ratio(spec: SweepSpec, data: DataSpec, ipc: int,
              train_sizes: Mapping[DataSpec, int] | None) -> float:
    """The share of the training split that ``ipc`` images of every class make (1.0, a
    placeholder, when the split's size is unknown: a dry run without the data)."""
    from coretune.train.data import dataset_info

    size = (train_sizes or {}).get(data)
    if size is None:
        return 1.0
    total = ipc * dataset_info(data.name).num_classes
    if total > size:
        raise SpecError(f"search space {spec.name}: field 'ipcs': {ipc} images per class "
                        f"is {total:,} images, but {data.name}'s training split has {size:,}")
    return total / size


def expand(spec: SweepSpec, train_sizes: Mapping[DataSpec, int] | None = None
           ) -> list[TrialSpec]:
    """All students of a sweep, in a fixed order. ``train_sizes`` (each dataset's training
    split) turn images per class into ratios; the planner passes them."""
    from coretune.train.data import dataset_info

    trials, seen = [], set()
    sizes = [(float(r), None) for r in spec.ratios] + [(None, int(i)) for i in spec.ipcs]
    combos = list(itertools.product(spec.datasets, spec.archs, spec.selectors, sizes,
                                    spec.budget.expand(), spec.label_modes, spec.seeds))
    if spec.full_data:  # one full-data arm per compute level, shared by every subset size
        combos += [(d, a, FULL_DATA_ARM, (1.0, None), b, lm, s) for d, a, b, lm, s in
                   itertools.product(spec.datasets, spec.archs, spec.budget.expand(),
                                     spec.label_modes, spec.seeds)]
    for data, arch, sel, (ratio, ipc), budget, lm, seed in combos:
        if ipc is None and get_selector(sel.name).synthesizes:
            continue  # a synthetic set is sized by images per class only
        if ipc is not None:
            ratio = ipc_ratio(spec, data, ipc, train_sizes)
        default_aug = dataset_info(data.name).augment_for(data)

        def resolve(a: AugmentSpec | None, default: AugmentSpec = default_aug) -> AugmentSpec:
            return default if a is None else a

        teachers = spec.teachers or [spec.teacher]
        for args, labels, teacher in itertools.product(sel.expand(), lm.expand(), teachers):
            trial = _with_recipes(TrialSpec(
                sweep=spec.name, dataset=data, arch=arch.name, arch_args=arch.args,
                selector=sel.name, selector_args=args, selector_proxy=sel.proxy,
                ratio=float(ratio), ipc=ipc, seed=int(seed),
                **labels, budget=budget, optimizer=lm.training(spec.optimizer),
                augment=resolve(lm.augment if lm.augment is not None else spec.augment),
                teacher=teacher.model_copy(update={"augment": resolve(teacher.augment)}),
                dynamics=spec.dynamics.model_copy(
                    update={"augment": resolve(spec.dynamics.augment)}),
                metric=spec.metric, smoke=spec.smoke))
            _check_proxy(trial)
            science = repr(trial.science())
            if science in seen:
                if sel is FULL_DATA_ARM or (len(teachers) > 1 and trial.teacher is None):
                    continue  # the same arm: random at ratio 1 listed already, or a
                    # student no teacher reaches, once per teacher of the axis
                raise SpecError(f"search space {spec.name}: it lists the same trial more "
                                "than once")
            seen.add(science)
            trials.append(trial)
    return trials
