"""A coreset of one image trains (a smoke run's smallest ratio on stand-in data: Fashion-MNIST
at 0.5 % of 200 images): BatchNorm cannot take batch statistics of a single sample, so on
one sample it normalises with its running statistics; alone and fused alike."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch.nn as nn

from coretune.spec import BudgetSpec, OptimizerSpec
from coretune.train.data import load_dataset, to_device
from coretune.train.evaluate import on_test_split
from coretune.train.fused import FusedStudent, train_fused
from coretune.train.labels import LabelConfig, LabelInputs, make_label_source
from coretune.train.loop import init_model, train, train_mode

OPT = OptimizerSpec(lr=0.05, batch_size=32)
BUDGET = BudgetSpec(unit="iterations", value=3, max_reports=2)


@pytest.fixture(scope="module")
def digits():
    return to_device(load_dataset("digits"))


def _hard(data):
    return make_label_source(LabelConfig("hard"), LabelInputs(data.train_y, None))


@pytest.mark.parametrize("arch", ["mlp", "small_cnn"])  # BatchNorm1d, BatchNorm2d
def test_a_student_trains_on_one_image(digits, arch):
    model = init_model(arch, {}, (1, 8, 8), 10, 0, "cpu")
    result = train(model, digits, np.array([7]), _hard(digits), [on_test_split(digits)],
                   BUDGET, OPT, seed=0)
    assert result.steps == 3 and math.isfinite(result.metrics["train_loss"])
    assert 0.0 <= result.metrics["test_acc"] <= 1.0


def test_fused_students_train_on_one_image_each(digits):
    fused = [FusedStudent(init_model("mlp", {}, (1, 8, 8), 10, s, "cpu"), np.array([s]),
                          _hard(digits), s) for s in (0, 1)]
    reports = list(train_fused(fused, digits, [on_test_split(digits)], BUDGET, OPT))
    assert [m["step"] for m in reports[-1]] == [3, 3]


def test_batchnorm_trains_on_two_images_or_more():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    train_mode(model, 2)
    assert model[1].training
    train_mode(model, 1)
    assert model.training and not model[1].training
