"""Sweep definitions: a YAML search space, validated by pydantic, expanded into trials.

A sweep is the grid dataset × arch × selector (× its ``grid`` args) × ratio × label mode
(× τ, λ, ε) × seed. Validation happens before Ray starts; every error names the field and
the bad value.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from coretune.harness.artifacts import content_key
from coretune.harness.models import check_model_name
from coretune.harness.train import Budget, OptimConfig, TrainRecipe
from coretune.selectors import get_selector


class SpecError(ValueError):
    """An invalid search space; the message names the field and the value."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _as_list(v: Any) -> list:
    return v if isinstance(v, list) else [v]


class OptimizerSpec(_Strict):
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    batch_size: int = Field(128, ge=1)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)

    def config(self) -> OptimConfig:
        return OptimConfig(**self.model_dump())


class BudgetSpec(_Strict):
    unit: Literal["epochs", "iterations"] = "epochs"
    value: int = Field(30, ge=1)
    max_reports: int = Field(20, ge=1)

    def config(self) -> Budget:
        return Budget(**self.model_dump())


class RecipeSpec(_Strict):
    """A full-data training run (teacher or training dynamics)."""

    arch: str = "small_cnn"
    seed: int = 0
    optimizer: OptimizerSpec = OptimizerSpec()
    budget: BudgetSpec = BudgetSpec()

    @field_validator("arch")
    @classmethod
    def _arch(cls, v: str) -> str:
        check_model_name(v)
        return v

    def recipe(self) -> TrainRecipe:
        return TrainRecipe(self.arch, self.optimizer.config(), self.budget.config())


class SelectorSpec(_Strict):
    name: str
    args: dict[str, Any] = {}
    grid: dict[str, list[Any]] = {}

    @model_validator(mode="after")
    def _known(self) -> SelectorSpec:
        info = get_selector(self.name)
        clash = set(self.args) & set(self.grid)
        if clash:
            raise ValueError(f"selector {self.name!r}: {sorted(clash)} in both args and grid")
        for combo in self.expand():
            info.validate_args(combo)
        beta = [b for c in self.expand() for k, b in c.items() if k == "beta"]
        for b in beta:
            if not (isinstance(b, int | float) and 0 <= b < 1):
                raise ValueError(f"selector {self.name!r}: beta must be in [0, 1), got {b!r}")
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


class LabelModeSpec(_Strict):
    """A label regime; τ, λ, ε may each be a list (grid)."""

    mode: Literal["hard", "smooth", "soft", "kd"]
    tau: float | list[float] = 4.0
    lam: float | list[float] = 1.0
    eps: float | list[float] = 0.1
    smoothing: Literal["uniform", "paper"] = "uniform"

    @field_validator("tau", "lam", "eps")
    @classmethod
    def _in_range(cls, v: Any, info: Any) -> Any:
        """τ > 0, λ ∈ [0, 1], ε ∈ [0, 1), for a value or every value of a grid."""
        ok, bounds = _LABEL_BOUNDS[info.field_name]
        for x in _as_list(v):
            if not ok(x):
                raise ValueError(f"{info.field_name} must be {bounds}, got {x}")
        return v

    def expand(self) -> list[dict[str, Any]]:
        """Concrete (label_mode, tau, lam, eps, smoothing) settings; unused knobs neutral."""
        if self.mode == "hard":
            return [{"label_mode": "hard", "tau": 1.0, "lam": 0.0, "eps": 0.0,
                     "smoothing": self.smoothing}]
        if self.mode == "smooth":
            return [{"label_mode": "smooth", "tau": 1.0, "lam": 0.0, "eps": float(e),
                     "smoothing": self.smoothing} for e in _as_list(self.eps)]
        return [{"label_mode": self.mode, "tau": float(t), "lam": float(lam), "eps": 0.0,
                 "smoothing": self.smoothing}
                for t, lam in itertools.product(_as_list(self.tau), _as_list(self.lam))]


class ResourcesSpec(_Strict):
    """Per trial (fractional GPUs pack trials), and for the teacher service actor."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)
    teacher_gpu: float = Field(0.0, ge=0)


class SchedulerSpec(_Strict):
    name: Literal["fifo", "asha"] = "fifo"
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(3.0, gt=1)


class SweepSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    datasets: list[str] = Field(min_length=1)
    data_root: str | None = None
    archs: list[str] = Field(min_length=1)
    selectors: list[SelectorSpec] = Field(min_length=1)
    ratios: list[float] = Field(min_length=1)
    label_modes: list[LabelModeSpec] = Field(min_length=1)
    seeds: list[int] = Field([0], min_length=1)
    budget: BudgetSpec = BudgetSpec()
    optimizer: OptimizerSpec = OptimizerSpec()
    teacher: RecipeSpec = RecipeSpec()
    dynamics: RecipeSpec = RecipeSpec()
    resources: ResourcesSpec = ResourcesSpec()
    scheduler: SchedulerSpec = SchedulerSpec()

    @field_validator("datasets", "archs", "seeds", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return _as_list(v)

    @field_validator("datasets")
    @classmethod
    def _datasets(cls, v: list[str]) -> list[str]:
        from coretune.harness.data import available_datasets

        for name in v:
            if name not in available_datasets():
                raise ValueError(f"unknown dataset {name!r}; available: "
                                 f"{', '.join(available_datasets())}")
        return v

    @field_validator("archs")
    @classmethod
    def _archs(cls, v: list[str]) -> list[str]:
        for a in v:
            check_model_name(a)
        return v

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, v: list[float]) -> list[float]:
        for r in v:
            if not 0 < r <= 1:
                raise ValueError(f"ratio must be in (0, 1], got {r}")
        return v


def _format_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid search space {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"  field '{loc}': {msg} (got {e.get('input')!r})")
    return "\n".join(lines)


def parse_spec(data: Any, source: str = "<spec>") -> SweepSpec:
    """Validate a search space given as a mapping; raises :class:`SpecError`."""
    if not isinstance(data, dict):
        raise SpecError(f"invalid search space {source}: expected a mapping at top level")
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(_format_error(err, source)) from None


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a YAML search space."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"search space file not found: {path}") from None
    except yaml.YAMLError as err:
        raise SpecError(f"search space {path} is not valid YAML: {err}") from None
    return parse_spec(data, str(path))


def expand(spec: SweepSpec) -> list[dict[str, Any]]:
    """All trials of a sweep as plain dicts (DESIGN.md's TrialSpec fields + trial_id)."""
    trials = []
    for dataset, arch, sel, ratio, lm, seed in itertools.product(
            spec.datasets, spec.archs, spec.selectors, spec.ratios, spec.label_modes,
            spec.seeds):
        for args, labels in itertools.product(sel.expand(), lm.expand()):
            trial = {
                "sweep": spec.name, "dataset": dataset, "data_root": spec.data_root,
                "arch": arch, "selector": sel.name, "selector_args": args,
                "ratio": float(ratio), "seed": int(seed),
                "beta": float(args["beta"]) if "beta" in args else None, **labels,
                "budget": spec.budget.model_dump(), "optimizer": spec.optimizer.model_dump(),
                "teacher": spec.teacher.model_dump() if labels["label_mode"] in ("soft", "kd")
                else None,
                "dynamics": spec.dynamics.model_dump()
                if "scores" in get_selector(sel.name).needs(args) else None,
            }
            trial["trial_id"] = content_key("trial", trial).split("-", 1)[1][:12]
            trials.append(trial)
    ids = [t["trial_id"] for t in trials]
    if len(set(ids)) != len(ids):
        raise SpecError(f"search space {spec.name}: it lists the same trial more than once")
    return trials


def selection_key(trial: dict[str, Any]) -> str:
    """Content key of a trial's coreset (shared by its label modes)."""
    return content_key("selection", {
        k: trial[k] for k in ("dataset", "selector", "selector_args", "ratio", "seed",
                              "dynamics")})
