"""Width arguments of the CIFAR ResNets and VGG-16 (what a smoke run shrinks): the default
width builds the very network it always did; a smaller one scales every stage."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision

from coretune.train.models import MODELS, build_model, classifier_layer


def test_the_default_width_is_torchvision_s_network_bit_for_bit():
    torch.manual_seed(0)
    ours = build_model("resnet18", (3, 32, 32), 10)
    torch.manual_seed(0)
    ref = torchvision.models.resnet18(num_classes=10)
    ref.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    ref.maxpool = nn.Identity()
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(),
                                                 ref.state_dict().values(), strict=True))


@pytest.mark.parametrize(("name", "features"), [("resnet18", 64), ("resnet34", 64),
                                                ("resnet50", 256), ("vgg16", 64)])
def test_a_width_scales_every_stage(name, features):
    full = build_model(name, (3, 16, 16), 7)
    small = build_model(name, (3, 16, 16), 7, {"width": 8})
    assert classifier_layer(small).in_features == features
    assert classifier_layer(full).in_features == features * 8
    n_full = sum(p.numel() for p in full.parameters())
    n_small = sum(p.numel() for p in small.parameters())
    assert n_small < n_full / 20
    assert small(torch.rand(2, 3, 16, 16)).shape == (2, 7)


def test_smoke_bounds_are_arguments_the_builders_take():
    declared = {name: MODELS.get(name).smoke for name in MODELS.names()}
    assert declared["resnet18"] == {"width": 8} and declared["mlp"] == {}
    for name, bounds in declared.items():
        if bounds:
            MODELS.get(name).validate_args(bounds)
