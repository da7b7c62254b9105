"""Automatic grouping (students_per_trial: auto): a configuration's seeds share a Tune trial
until it trains AUTO_IMAGES images, a function of the budget alone (reproducible plans);
configurations never mix; a fixed number still rules when given."""

from __future__ import annotations

from coretune.driver.plan import AUTO_IMAGES, AUTO_MAX, describe, plan_sweep

SEEDS = {"seeds: [0]": "seeds: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, "
                       "17, 18, 19]"}


def _plan(write_spec, tmp_path, name, replace):
    return plan_sweep(write_spec(name, replace={**SEEDS, **replace}), tmp_path / name,
                      tmp_path / "c", dry_run=True)


def test_short_students_group_by_seed_up_to_the_cap(write_spec, tmp_path):
    plan = _plan(write_spec, tmp_path, "short", {})  # 30 iterations of batch 32: 960 images
    sizes = sorted({len(g) for g in plan.groups})
    assert sizes == [20 - AUTO_MAX, AUTO_MAX]  # 20 seeds: 16 + 4 per configuration
    for g in plan.groups:  # only seeds differ inside a Tune trial
        assert len({(t.spec.selector, t.spec.ratio, t.spec.label_mode) for t in g}) == 1
        assert len({t.spec.seed for t in g}) == len(g)
    assert "share a Tune trial until it trains 200,000 images" in describe(plan)


def test_the_group_size_follows_the_budget(write_spec, tmp_path):
    # 50 full-data epochs of digits: 71,850 images a student -> 2 per Tune trial
    plan = _plan(write_spec, tmp_path, "long", {
        "budget: {unit: iterations, value: 30, max_reports: 3}":
            "budget: {unit: full_epochs, value: 50, max_reports: 3}"})
    assert {len(g) for g in plan.groups} == {AUTO_IMAGES // 71_850}
    again = _plan(write_spec, tmp_path, "long", {
        "budget: {unit: iterations, value: 30, max_reports: 3}":
            "budget: {unit: full_epochs, value: 50, max_reports: 3}"})
    assert [[t.trial_id for t in g] for g in plan.groups] == \
        [[t.trial_id for t in g] for g in again.groups]  # reproducible


def test_a_number_still_rules(write_spec, tmp_path):
    plan = _plan(write_spec, tmp_path, "fixed", {"archs: mlp": "archs: mlp\n"
                                                 "students_per_trial: 1"})
    assert {len(g) for g in plan.groups} == {1}
