"""The distillation literature's ConvNet-D3/D4 against hand-worked sizes and costs."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from coretune.train.models import ModelArgumentError, build_model


def test_convnet_d3_on_cifar_shape_is_the_published_network():
    model = build_model("convnet", (3, 32, 32), 10, {})
    kinds = [type(m) for m in model]
    assert kinds == [nn.Conv2d, nn.GroupNorm, nn.ReLU, nn.AvgPool2d] * 3 + [nn.Flatten,
                                                                          nn.Linear]
    assert all(m.num_groups == m.num_channels == 128 for m in model if isinstance(
        m, nn.GroupNorm))  # instance norm: one group per channel
    # conv 3·128·9 + 128, norms 2·128 each, two convs 128·128·9 + 128, head 2048·10 + 10
    assert sum(p.numel() for p in model.parameters()) == (
        3 * 128 * 9 + 128 + 3 * 256 + 2 * (128 * 128 * 9 + 128) + 2048 * 10 + 10) == 320_010
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32))
    macs = 3 * 128 * 9 * 32 * 32 + 128 * 128 * 9 * (16 * 16 + 8 * 8) + 2048 * 10
    assert out.shape == (1, 10) and counter.get_total_flops() == 2 * macs


def test_depth_and_width_follow_their_arguments():
    model = build_model("convnet", (3, 64, 64), 200, {"depth": 4, "width": 64})
    assert sum(isinstance(m, nn.Conv2d) for m in model) == 4
    assert model[-1].in_features == 64 * 4 * 4 and model[-1].out_features == 200


def test_a_depth_that_pools_the_image_away_is_refused_naming_it():
    with pytest.raises(ModelArgumentError, match="depth 4 .* depth <= 3"):
        build_model("convnet", (1, 8, 8), 10, {"depth": 4})
