"""The key rule of :mod:`coretune.spec`: keys made before it stay valid, a field added at
its default changes no key, and an execution-only field never enters one."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field, create_model

from coretune.spec import (
    EXECUTION_ONLY,
    AugmentSpec,
    BudgetSpec,
    DataSpec,
    DynamicsSpec,
    Frozen,
    OptimizerSpec,
    RecipeSpec,
    TrialSpec,
    content_key,
)

FINGERPRINT = "digits:0123abcd"


def plain_trial(cls: type[TrialSpec] = TrialSpec, **extra: Any) -> TrialSpec:
    return cls(sweep="s", dataset=DataSpec(name="digits"), arch="mlp", selector="random",
               ratio=0.1, **extra)


def full_trial(cls: type[TrialSpec] = TrialSpec, teacher: RecipeSpec | None = None,
               **extra: Any) -> TrialSpec:
    """Every field of today's trial set away from its default, recipes included."""
    return cls(
        sweep="paper", dataset=DataSpec(name="cifar100", val_fraction=0.1, split_seed=3,
                                        label_noise={"kind": "pairwise", "rate": 0.2,
                                                     "seed": 1}),
        arch="resnet18", arch_args={"width": 2}, selector="ccs",
        selector_args={"score": "aum", "beta": 0.1, "strata": 50}, ratio=0.3,
        label_mode="kd", label_args={"x": 1}, tau=4.0, lam=0.9, eps=0.0, smoothing="paper",
        seed=2, budget={"unit": "iterations", "value": 500, "max_reports": 5},
        optimizer={"name": "adamw", "lr": 0.001, "batch_size": 64, "schedule": "constant",
                   "warmup_steps": 10},
        augment={"pad": 4, "flip": True, "noise_std": 0.1},
        teacher=teacher or RecipeSpec(arch="resnet34", seed=1,
                                      augment=AugmentSpec(pad=4, flip=True)),
        dynamics={"arch": "mlp", "runs": 2, "el2n_epoch": 3, "outputs": "eval",
                  "budget": {"value": 4}},
        metric="val_acc", **extra)


def keys_of(trial: TrialSpec) -> tuple:
    """Everything content-addressed about a trial and its recipes."""
    return (trial.trial_id(FINGERPRINT), trial.key_dump(), trial.science(),
            content_key("trial", 1, trial, {"dep": "x-1"}, FINGERPRINT),
            None if trial.teacher is None else content_key("teacher", 1, trial.teacher),
            None if trial.dynamics is None else content_key("dynamics", 1, trial.dynamics))


# ------------------------------------------------------------------ keys as they were
def test_keys_are_those_made_before_the_key_rule():
    """Computed with ``coretune/spec.py`` of commit cb2404e (``science()`` was the model
    dump minus ``sweep``, every field always entered)."""
    plain, full = plain_trial(), full_trial()
    assert plain.trial_id(FINGERPRINT) == "7cd66c76e439"
    assert full.trial_id(FINGERPRINT) == "157dccb6b7bf"
    assert content_key("teacher", 1, full.teacher, {"data": "x-1"}, "fp") == (
        "teacher-2926fe893b9942630918e8db")
    assert content_key("dynamics", 2, full.dynamics, None, "fp") == (
        "dynamics-a671d69bb89c5d32af1b163c")
    assert content_key("teacher", 1, RecipeSpec(), None, None) == (
        "teacher-af2d0312946bc48233d3ea42")


def _dump_of_keyed_fields(model: Any) -> Any:
    """The JSON model dump restricted to each model's ``KEYED_ALWAYS`` (the fields it had
    when keys were first made); every other field must be at its default."""
    if isinstance(model, Frozen):
        out = {}
        for name, info in type(model).model_fields.items():
            value = getattr(model, name)
            if name in model.KEYED_ALWAYS:
                out[name] = _dump_of_keyed_fields(value)
            else:
                assert value == info.get_default(call_default_factory=True), name
        return out
    if isinstance(model, BaseModel):
        return model.model_dump(mode="json")
    if isinstance(model, dict):
        return {k: _dump_of_keyed_fields(v) for k, v in model.items()}
    if isinstance(model, list | tuple):
        return [_dump_of_keyed_fields(v) for v in model]
    return model


@pytest.mark.parametrize("make", [plain_trial, full_trial], ids=["plain", "full"])
def test_science_is_the_model_dump_minus_sweep_for_todays_fields(make):
    trial = make()
    dump = trial.model_dump(mode="json", exclude={"sweep"})
    keyed = _dump_of_keyed_fields(trial)
    keyed.pop("sweep")
    assert trial.science() == keyed
    # the dump itself differs only by fields added since, each at its default
    assert set(dump) == set(keyed) | (set(TrialSpec.model_fields) - TrialSpec.KEYED_ALWAYS)
    assert {k: dump[k] for k in ("arch", "selector_args", "ratio", "tau", "metric")} == {
        k: keyed[k] for k in ("arch", "selector_args", "ratio", "tau", "metric")}


@pytest.mark.parametrize("model", [OptimizerSpec, BudgetSpec, AugmentSpec, DataSpec,
                                   RecipeSpec, DynamicsSpec, TrialSpec])
def test_keyed_always_names_real_fields(model):
    assert model.KEYED_ALWAYS and model.KEYED_ALWAYS <= set(model.model_fields)


# ------------------------------------------------------------------ a new field
class TrialWithKnob(TrialSpec):
    knob: int = 3


class TrialWithModel(TrialSpec):
    warm_start: BudgetSpec = BudgetSpec()
    tags: list[str] = Field(default_factory=list)
    note: str | None = None


class RecipeWithKnob(RecipeSpec):
    ema_decay: float = 0.0


#: the same trial model, made with pydantic.create_model rather than a class statement
TrialMade = create_model("TrialMade", __base__=TrialSpec, mixup_alpha=(float, 0.0))


@pytest.mark.parametrize("make", [plain_trial, full_trial], ids=["plain", "full"])
@pytest.mark.parametrize("cls,away", [
    (TrialWithKnob, {"knob": 4}),
    (TrialWithModel, {"warm_start": BudgetSpec(value=31)}),
    (TrialWithModel, {"tags": ["a"]}),
    (TrialWithModel, {"note": "x"}),
    (TrialMade, {"mixup_alpha": 0.2}),
], ids=["int", "model", "factory", "optional", "create_model"])
def test_a_field_added_at_its_default_changes_no_key(make, cls, away):
    today = keys_of(make())
    assert keys_of(make(cls)) == today
    name, value = next(iter(away.items()))
    default = cls.model_fields[name].get_default(call_default_factory=True)
    assert keys_of(make(cls, **{name: default})) == today  # set, but to its default
    moved = keys_of(make(cls, **away))
    assert all(a != b for a, b in zip(moved[:4], today[:4], strict=True))
    assert moved[1][name] is not None and name in moved[2]


def test_a_recipe_field_added_at_its_default_changes_no_key():
    old = RecipeSpec(arch="resnet34", seed=1, augment=AugmentSpec(pad=4, flip=True))
    new = RecipeWithKnob(arch="resnet34", seed=1, augment=AugmentSpec(pad=4, flip=True))
    assert new.key_dump() == old.key_dump()
    assert content_key("teacher", 1, new, {"d": "k"}, "fp") == content_key(
        "teacher", 1, old, {"d": "k"}, "fp")
    assert keys_of(full_trial(teacher=new)) == keys_of(full_trial(teacher=old))
    moved = RecipeWithKnob(arch="resnet34", seed=1, augment=AugmentSpec(pad=4, flip=True),
                           ema_decay=0.99)
    assert moved.key_dump() == {**old.key_dump(), "ema_decay": 0.99}
    assert content_key("teacher", 1, moved) != content_key("teacher", 1, old)
    assert full_trial(teacher=moved).trial_id(FINGERPRINT) != full_trial(
        teacher=old).trial_id(FINGERPRINT)


# ------------------------------------------------------------------ execution-only fields
class TrialWithWorkers(TrialSpec):
    workers: int = Field(1, json_schema_extra=EXECUTION_ONLY)
    log_every: int | None = Field(None, json_schema_extra=EXECUTION_ONLY)


class TrialWithKeyedWorkers(TrialWithWorkers):
    # even listed as always keyed, an execution-only field stays out
    KEYED_ALWAYS = TrialSpec.KEYED_ALWAYS | {"workers"}


class RecipeWithWorkers(RecipeSpec):
    loader_threads: int = Field(2, json_schema_extra=EXECUTION_ONLY)


@pytest.mark.parametrize("cls", [TrialWithWorkers, TrialWithKeyedWorkers])
@pytest.mark.parametrize("make", [plain_trial, full_trial], ids=["plain", "full"])
def test_an_execution_only_field_never_enters_a_key(cls, make):
    today = keys_of(make())
    for values in ({}, {"workers": 8}, {"log_every": 10}, {"workers": 1, "log_every": 1}):
        trial = make(cls, **values)
        assert keys_of(trial) == today, values
        assert "workers" not in trial.key_dump() and "log_every" not in trial.science()


def test_an_execution_only_recipe_field_never_enters_a_key():
    old = RecipeSpec(arch="resnet34")
    for threads in (2, 16):
        new = RecipeWithWorkers(arch="resnet34", loader_threads=threads)
        assert new.key_dump() == old.key_dump()
        assert content_key("teacher", 1, new) == content_key("teacher", 1, old)
        assert full_trial(teacher=new).trial_id(FINGERPRINT) == full_trial(
            teacher=old).trial_id(FINGERPRINT)
