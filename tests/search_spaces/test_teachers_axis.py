"""Teachers as a sweep axis (Hard Truths Fig. 4): each recipe its own artifact; students
that use no teacher are not repeated per teacher; one teacher keeps every trial id."""

from __future__ import annotations

import pytest

from coretune.driver.plan import plan_sweep
from coretune.errors import SpecError
from coretune.search_spaces.schema import expand, load_spec

TEACHERS = {"teacher: {arch: mlp, seed: 0, optimizer: {lr: 0.05, batch_size: 64}, "
            "budget: {value: 4}}":
            "teachers:\n  - {arch: mlp, seed: 0, optimizer: {lr: 0.05, batch_size: 64}, "
            "budget: {value: 4}}\n  - {arch: small_cnn, seed: 0, budget: {value: 2}}"}


def test_each_teacher_is_an_arm_and_its_own_artifact(write_spec, tmp_path):
    one = expand(load_spec(write_spec("one")))
    two = expand(load_spec(write_spec("two", replace=TEACHERS)))
    with_teacher = [t for t in one if t.teacher is not None]
    assert len(two) == len(one) + len(with_teacher)  # hard and smooth students once
    assert {t.teacher.arch for t in two if t.teacher} == {"mlp", "small_cnn"}
    plan = plan_sweep(write_spec("two", replace=TEACHERS), tmp_path / "o", tmp_path / "c",
                      dry_run=True)
    keys = {t.teacher_key for t in plan.trials if t.teacher_key}
    assert len(keys) == 2 and sum(n.kind == "teacher" for n in plan.nodes) == 2


def test_a_single_teacher_in_the_list_keeps_every_trial_id(write_spec):
    single = {k: v.split("\n  - {arch: small_cnn")[0] for k, v in TEACHERS.items()}
    one = [t.trial_id("fp") for t in expand(load_spec(write_spec("one")))]
    listed = [t.trial_id("fp") for t in expand(load_spec(write_spec("listed", replace=single)))]
    assert one == listed


def test_a_teacher_listed_twice_is_refused(write_spec):
    twice = {k: v.replace("{arch: small_cnn, seed: 0, budget: {value: 2}}",
                          "{arch: mlp, seed: 0, optimizer: {lr: 0.05, batch_size: 64}, "
                          "budget: {value: 4}}") for k, v in TEACHERS.items()}
    with pytest.raises(SpecError, match="teachers lists a recipe twice"):
        load_spec(write_spec("twice", replace=twice))
