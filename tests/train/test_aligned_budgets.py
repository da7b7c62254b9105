"""Compute-aligned budgets (Hard Truths): every arm sees the same number of images."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from coretune.driver.plan import describe, plan_sweep
from coretune.search_spaces.schema import expand, load_spec
from coretune.spec import BudgetSpec, OptimizerSpec
from coretune.train.data import load_dataset, to_device
from coretune.train.labels import HardLabels
from coretune.train.loop import Hooks, images_seen, init_model, plan_steps, train


def test_images_and_full_epochs_hand_cases():
    opt = OptimizerSpec(batch_size=32)
    # 72 samples in batches 32, 32, 8; 718 images = 9 epochs (648) + 70 → 3 more batches
    bs, spe, total, _ = plan_steps(72, opt, BudgetSpec(unit="images", value=718))
    assert (bs, spe, total) == (32, 3, 30) and images_seen(72, bs, spe, total) == 720
    # the full data (1,437) for half an epoch: round(718.5) = 718 images, 23 batches of 32
    assert plan_steps(1437, opt, BudgetSpec(unit="full_epochs", value=0.5))[2] == 23
    # a subset smaller than a batch: the batch is clamped to it, steps follow
    assert plan_steps(10, opt, BudgetSpec(unit="full_epochs", value=1), 100)[:3] == (10, 1, 10)


@pytest.mark.parametrize("batch", [32, 128])
@pytest.mark.parametrize("budget", [BudgetSpec(unit="images", value=5000),
                                    BudgetSpec(unit="full_epochs", value=2.5)])
def test_every_arm_sees_the_same_images_within_one_batch(batch, budget):
    size = 2000
    target = 5000
    opt = OptimizerSpec(batch_size=batch)
    for n in [1, 2, 3, 31, 33, 127, 129, 500, 1999, 2000]:
        bs, spe, total, reports = plan_steps(n, opt, budget, size)
        seen = images_seen(n, bs, spe, total)
        assert target <= seen < target + bs, (n, seen)
        assert reports[-1] == math.ceil(total / spe)
    # the full-data arm: exactly value x size images, value epochs when batches divide it
    bs, spe, total, _ = plan_steps(size, OptimizerSpec(batch_size=100),
                                   BudgetSpec(unit="full_epochs", value=2.5), size)
    assert total / spe == 2.5 and images_seen(size, bs, spe, total) == target


def test_training_sees_what_the_plan_says():
    data = to_device(load_dataset("digits"))
    sizes: list[int] = []
    budget = BudgetSpec(unit="full_epochs", value=0.25, max_reports=2)
    idx = np.arange(100)
    result = train(init_model("mlp", {}, (1, 8, 8), 10, 0, "cpu"), data, idx,
                   HardLabels(data.train_y), [], budget, OptimizerSpec(batch_size=32), 0,
                   hooks=Hooks(on_batch=lambda e, i, z: sizes.append(len(i))))
    bs, spe, total, _ = plan_steps(100, OptimizerSpec(batch_size=32), budget,
                                   len(data.train_y))
    assert result.steps == total == len(sizes)
    assert sum(sizes) == images_seen(100, bs, spe, total)
    assert abs(sum(sizes) - 0.25 * len(data.train_y)) < bs


@pytest.mark.parametrize("unit,value", [("epochs", 2.5), ("iterations", 0), ("images", 1.5),
                                        ("full_epochs", 0), ("full_epochs", -1.0)])
def test_budgets_refuse_what_their_unit_cannot_mean(unit, value):
    with pytest.raises(ValidationError):
        BudgetSpec(unit=unit, value=value)


def test_a_list_of_budgets_is_a_sweep_axis(write_spec, tmp_path):
    spec = write_spec("axis", replace={
        "budget: {unit: iterations, value: 30, max_reports: 3}":
            "budget: {unit: full_epochs, value: [0.5, 2], max_reports: 3}"})
    one = load_spec(write_spec("one"))
    trials = expand(load_spec(spec))
    assert len(trials) == 2 * len(expand(one))
    assert sorted({t.budget.value for t in trials}) == [0.5, 2]
    plan = plan_sweep(spec, tmp_path / "o", tmp_path / "c", dry_run=True)
    arms = [line for line in describe(plan).splitlines() if line.startswith("arm ")]
    assert len(arms) == 4  # 2 ratios x 2 compute levels
    assert "0.5 full_epochs: batch 32" in arms[0] and "images seen" in arms[0]
    dup = write_spec("dup", replace={"budget: {unit: iterations, value: 30, max_reports: 3}":
                                     "budget: {unit: full_epochs, value: [2, 2]}"})
    with pytest.raises(Exception, match="budget twice"):
        load_spec(dup)
