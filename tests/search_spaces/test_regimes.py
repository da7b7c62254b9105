"""Training per label regime (Hard Truths' small-scale protocol): a label mode may override
the optimiser (merged onto the sweep's), its schedule (a step decay), τ and the
augmentation; the overrides reach the optimiser each student trains with."""

from __future__ import annotations

import pytest
import torch

from coretune.errors import SpecError
from coretune.search_spaces.schema import expand, load_spec
from coretune.spec import AugmentSpec, OptimizerSpec
from coretune.train.loop import make_optimizer

REGIMES = {
    "  - mode: hard\n": "  - {mode: hard, optimizer: {lr: 0.01, schedule: step, "
                        "nesterov: false}}\n",
    "  - {mode: soft, tau: 4.0, lam: 1.0}\n":
        "  - {mode: soft, tau: 20.0, lam: 1.0, optimizer: {name: adamw, lr: 0.001},"
        " augment: {pad: 0, flip: false}}\n",
}


def test_each_mode_trains_with_its_own_optimiser_schedule_and_augmentation(write_spec):
    trials = expand(load_spec(write_spec("regimes", replace=REGIMES)))
    by_mode = {t.label_mode: t for t in trials}
    hard, soft, kd = by_mode["hard"], by_mode["soft"], by_mode["kd"]
    assert (hard.optimizer.name, hard.optimizer.lr, hard.optimizer.schedule) == \
        ("sgd", 0.01, "step")
    assert hard.optimizer.batch_size == 32  # the sweep's, merged under the override
    assert (soft.optimizer.name, soft.optimizer.lr, soft.tau) == ("adamw", 0.001, 20.0)
    assert soft.augment == AugmentSpec() and kd.augment == hard.augment != AugmentSpec()
    assert kd.optimizer == OptimizerSpec(lr=0.05, batch_size=32)  # no override: the sweep's


def test_the_overrides_reach_the_optimiser_and_the_step_decay_halves_the_run(write_spec):
    trials = expand(load_spec(write_spec("regimes", replace=REGIMES)))
    by_mode = {t.label_mode: t for t in trials}
    model = torch.nn.Linear(4, 3)
    opt, sched = make_optimizer(model, by_mode["hard"].optimizer, total_steps=10)
    assert isinstance(opt, torch.optim.SGD) and not opt.defaults["nesterov"]
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.01] * 5 + [0.001] * 5)  # StepLR at half, factor 0.1
    opt, _ = make_optimizer(model, by_mode["soft"].optimizer, total_steps=10)
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["lr"] == 0.001


def test_overrides_are_checked_like_the_optimiser(write_spec):
    for bad, field in (("{lrr: 0.1}", "lrr"), ("{lr: -1}", "lr"),
                       ("{schedule: linear}", "schedule")):
        spec = write_spec("bad", replace={"  - mode: hard\n":
                                          f"  - {{mode: hard, optimizer: {bad}}}\n"})
        with pytest.raises(SpecError, match=rf"label_modes\.0\.optimizer.*{field}"):
            load_spec(spec)


def test_modes_without_overrides_keep_their_trial_ids(write_spec):
    plain = {t.trial_id("fp") for t in expand(load_spec(write_spec("plain")))}
    changed = expand(load_spec(write_spec("regimes", replace=REGIMES)))
    same = {t.trial_id("fp") for t in changed if t.label_mode in ("smooth", "kd")}
    other = {t.trial_id("fp") for t in changed if t.label_mode in ("hard", "soft")}
    assert same <= plain and not other & plain
