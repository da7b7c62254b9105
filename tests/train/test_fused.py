"""Fused students against the same students trained alone."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from coretune.spec import AugmentSpec, BudgetSpec, OptimizerSpec
from coretune.train.data import load_dataset, to_device
from coretune.train.evaluate import on_test_split
from coretune.train.fused import FusedStudent, StackedModel, step_plan, train_fused
from coretune.train.labels import HardLabels, LabelConfig, LabelInputs, make_label_source
from coretune.train.loop import init_model, train

OPT = OptimizerSpec(name="sgd", lr=0.05, momentum=0.9, batch_size=32, weight_decay=5e-4)
BUDGET = BudgetSpec(unit="iterations", value=12, max_reports=3)
AUG = AugmentSpec(pad=1, flip=True)


@pytest.fixture(scope="module")
def digits():
    return to_device(load_dataset("digits"))


def _coresets(data, sizes, seed=0):
    rng = np.random.default_rng(seed)
    n = data.train_y.numel()
    return [np.sort(rng.choice(n, size, replace=False)) for size in sizes]


def _hard(data):
    return make_label_source(LabelConfig("hard"), LabelInputs(data.train_y))


@pytest.mark.parametrize("arch", ["mlp", "small_cnn"])
def test_step_zero_outputs_losses_and_gradients_are_each_students_own(digits, arch):
    torch.manual_seed(0)
    models = [init_model(arch, {}, (1, 8, 8), 10, seed, "cpu") for seed in (0, 1, 2)]
    x = torch.randn(3, 16, 1, 8, 8)
    y = torch.randint(0, 10, (3, 16))
    stacked = StackedModel(models)
    stacked.train()
    fused_out = stacked(x)
    fused_loss = torch.stack([torch.nn.functional.cross_entropy(fused_out[j], y[j])
                              for j in range(3)])
    fused_loss.sum().backward()
    for j, model in enumerate(models):
        model.train()
        out = model(x[j])
        loss = torch.nn.functional.cross_entropy(out, y[j])
        loss.backward()
        torch.testing.assert_close(fused_out[j], out, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fused_loss[j], loss, rtol=1e-5, atol=1e-6)
        for name, p in model.named_parameters():
            torch.testing.assert_close(stacked.grads()[name][j], p.grad, rtol=1e-4,
                                       atol=1e-6)
        for name, b in model.named_buffers():  # BatchNorm statistics kept apart
            torch.testing.assert_close(stacked.buffers[name][j], b)
    if arch == "small_cnn":
        means = [n for n in stacked.buffers if n.endswith("running_mean")]
        assert means and not torch.allclose(stacked.buffers[means[0]][0],
                                            stacked.buffers[means[0]][1])


def test_fused_students_train_as_they_would_alone(digits):
    # the MLP (BatchNorm inside): the small CNN's max-pool breaks exact ties (constant
    # regions of the padded digits) differently when batched, a different but equally valid
    # subgradient, so its runs part by rounding after a few steps
    seeds = [0, 1, 2]
    coresets = _coresets(digits, [150, 150, 150])  # different coresets, one step plan
    evaluators = [on_test_split(digits)]
    fused = [FusedStudent(init_model("mlp", {}, (1, 8, 8), 10, s, "cpu"), c,
                          _hard(digits), s) for s, c in zip(seeds, coresets, strict=True)]
    reports = list(train_fused(fused, digits, evaluators, BUDGET, OPT, AUG))
    assert len(reports) == 3 and all(len(r) == 3 for r in reports)
    for j, (s, c) in enumerate(zip(seeds, coresets, strict=True)):
        model = init_model("mlp", {}, (1, 8, 8), 10, s, "cpu")
        alone = train(model, digits, c, _hard(digits), evaluators, BUDGET, OPT, s,
                      augment=AUG)
        mine = [r[j] for r in reports]
        assert [m["step"] for m in mine] == [m["step"] for m in alone.curves]
        for m, a in zip(mine, alone.curves, strict=True):
            assert m["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
            assert m["test_nll"] == pytest.approx(a["test_nll"], rel=1e-5)
            assert m["test_acc"] == pytest.approx(a["test_acc"], abs=1e-9)
        assert mine[-1]["final"] and mine[-1]["fused"] == 3
        for name, p in model.named_parameters():  # the trained weights themselves
            torch.testing.assert_close(fused[j].model.state_dict()[name], p.detach(),
                                       rtol=1e-4, atol=1e-6)


class _DivergesAfter(HardLabels):
    """Hard labels whose loss becomes NaN from ``step`` on (counted in loss calls)."""

    def __init__(self, targets, step):
        super().__init__(targets)
        self.calls, self.step = 0, step

    def loss(self, logits, idx, pos, epoch, weights):
        self.calls += 1
        out = super().loss(logits, idx, pos, epoch, weights)
        return out * math.nan if self.calls > self.step else out


def test_one_diverging_student_stops_alone(digits):
    coresets = _coresets(digits, [150, 150, 150], seed=1)
    labels = [_hard(digits), _DivergesAfter(digits.train_y, 2), _hard(digits)]
    fused = [FusedStudent(init_model("mlp", {}, (1, 8, 8), 10, s, "cpu"), c, lab, s)
             for s, (c, lab) in enumerate(zip(coresets, labels, strict=True))]
    reports = list(train_fused(fused, digits, [on_test_split(digits)], BUDGET, OPT))
    assert reports[0][1]["diverged_at_step"] == 2 and not reports[0][1]["final"]
    assert all(r[1] is None for r in reports[1:])
    for j in (0, 2):  # the others run to the end, finite
        assert reports[-1][j]["final"] and reports[-1][j]["diverged_at_step"] is None
        assert all(math.isfinite(r[j]["train_loss"]) for r in reports)
    alone = train(init_model("mlp", {}, (1, 8, 8), 10, 2, "cpu"), digits, coresets[2],
                  _hard(digits), [on_test_split(digits)], BUDGET, OPT, 2)
    assert reports[-1][2]["train_loss"] == pytest.approx(alone.metrics["train_loss"],
                                                         rel=1e-4)


def test_students_with_different_step_plans_are_refused(digits):
    coresets = _coresets(digits, [100, 300])
    fused = [FusedStudent(init_model("mlp", {}, (1, 8, 8), 10, s, "cpu"), c, _hard(digits), s)
             for s, c in enumerate(coresets)]
    assert step_plan(100, OPT, BudgetSpec(unit="epochs", value=2)) != \
        step_plan(300, OPT, BudgetSpec(unit="epochs", value=2))
    with pytest.raises(ValueError, match="one step plan"):
        next(train_fused(fused, digits, [], BudgetSpec(unit="epochs", value=2), OPT))


def test_batchnorm_takes_bf16_inputs_as_under_autocast():
    # vmap's batch-norm rule refuses bf16 inputs with float32 statistics (what a conv
    # gives under CUDA's bf16 autocast); the stacked model normalises them in float32
    models = [torch.nn.Sequential(torch.nn.BatchNorm2d(4)) for _ in range(2)]
    x = torch.randn(2, 3, 4, 5, 5).bfloat16()
    stacked = StackedModel(models)
    stacked.train()
    out = stacked(x)
    assert out.dtype == torch.bfloat16
    for j, model in enumerate(models):
        model.train()
        torch.testing.assert_close(out[j].float(), model(x[j].float()), rtol=1e-2, atol=1e-2)
