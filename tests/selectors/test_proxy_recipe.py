"""A selector's own proxy run: the recipe it declares, the spec's per-selector override
merged onto it, and the sweep's ``dynamics:`` left to selectors that declare none."""

from __future__ import annotations

import numpy as np
import pytest

from coretune.errors import SpecError
from coretune.search_spaces.schema import expand, parse_spec
from coretune.selectors import SELECTORS
from coretune.selectors.base import Selection, SelectionContext, proxy_recipe, register_selector
from coretune.spec import BudgetSpec, DataSpec, DynamicsSpec, OptimizerSpec, TrialSpec


def short_proxy(trial: TrialSpec) -> DynamicsSpec:
    """A declared proxy: the student's arch, 3 epochs of plain SGD at batch 16."""
    return DynamicsSpec(arch=trial.arch, arch_args=trial.arch_args, seed=0,
                        optimizer=OptimizerSpec(lr=0.1, momentum=0.0, nesterov=False,
                                                weight_decay=0.0, batch_size=16,
                                                schedule="constant"),
                        budget=BudgetSpec(unit="epochs", value=3, max_reports=3))


@pytest.fixture
def proxied_selector():
    with SELECTORS.temporary():
        @register_selector("with_proxy", proxy=short_proxy, paper="test: declares a proxy")
        def with_proxy(ctx: SelectionContext, budget: int) -> Selection:
            return Selection(np.arange(budget))

        yield "with_proxy"


def trial_of(selector: str, override: dict | None = None, seed: int = 0) -> TrialSpec:
    return TrialSpec(sweep="s", dataset=DataSpec(name="digits"), arch="mlp",
                     selector=selector, selector_proxy=override or {}, ratio=0.1, seed=seed)


def space(selector: dict) -> dict:
    return {"name": "proxy", "datasets": "digits", "archs": "mlp", "seeds": [0, 1],
            "ratios": [0.1], "selectors": [selector], "label_modes": [{"mode": "hard"}],
            "budget": {"unit": "iterations", "value": 10}}


def test_a_selector_without_a_proxy_has_none():
    assert proxy_recipe(trial_of("random")) is None


def test_the_declared_recipe_and_the_override_merged_field_by_field(proxied_selector):
    declared = proxy_recipe(trial_of(proxied_selector))
    assert declared == short_proxy(trial_of(proxied_selector))
    tuned = proxy_recipe(trial_of(proxied_selector, {"optimizer": {"lr": 0.05},
                                                     "budget": {"value": 5}}))
    assert tuned.optimizer.lr == 0.05 and tuned.optimizer.batch_size == 16
    assert tuned.optimizer.momentum == 0.0 and tuned.budget.value == 5
    assert tuned.budget.max_reports == 3 and tuned.arch == "mlp"


def test_the_proxy_does_not_follow_the_students_seed(proxied_selector):
    assert proxy_recipe(trial_of(proxied_selector, seed=0)) == \
        proxy_recipe(trial_of(proxied_selector, seed=7))


def test_an_override_keys_the_trial_and_no_override_keys_nothing(proxied_selector):
    plain = trial_of(proxied_selector)
    assert "selector_proxy" not in plain.key_dump()
    tuned = trial_of(proxied_selector, {"budget": {"value": 5}})
    assert tuned.trial_id("fp") != plain.trial_id("fp")


def test_the_spec_carries_the_override_to_every_student(proxied_selector):
    trials = expand(parse_spec(space({"name": proxied_selector,
                                      "proxy": {"budget": {"value": 4}}})))
    assert len(trials) == 2
    assert {proxy_recipe(t).budget.value for t in trials} == {4}


def test_an_override_for_a_selector_without_a_proxy_is_refused():
    with pytest.raises(SpecError, match="'random' runs no proxy of its own"):
        parse_spec(space({"name": "random", "proxy": {"budget": {"value": 4}}}))


def test_an_invalid_override_names_the_field(proxied_selector):
    with pytest.raises(SpecError, match=r"proxy\.budget\.value"):
        expand(parse_spec(space({"name": proxied_selector,
                                 "proxy": {"budget": {"value": 0}}})))
