"""Model registry: build a network by name from (input shape, number of classes)."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

ModelBuilder = Callable[[tuple[int, int, int], int], nn.Module]
_MODELS: dict[str, ModelBuilder] = {}


class UnknownModelError(ValueError):
    """A model name that is not registered."""


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register ``builder(input_shape, num_classes) -> nn.Module`` under ``name``."""

    def decorate(fn: ModelBuilder) -> ModelBuilder:
        _MODELS[name] = fn
        return fn

    return decorate


def available_models() -> list[str]:
    return sorted(_MODELS) + ["timm/<name>"]


def check_model_name(name: str) -> None:
    if name not in _MODELS and not name.startswith("timm/"):
        raise UnknownModelError(
            f"unknown arch {name!r}; available: {', '.join(available_models())}")


def build_model(name: str, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Build model ``name``; ``timm/<model>`` builds any timm model without pretrained weights."""
    check_model_name(name)
    if name.startswith("timm/"):
        import timm

        return timm.create_model(name[5:], pretrained=False, num_classes=num_classes,
                                 in_chans=input_shape[0])
    return _MODELS[name](tuple(input_shape), num_classes)


@register_model("mlp")
def mlp(input_shape: tuple[int, int, int], num_classes: int, hidden: int = 256) -> nn.Module:
    """Two hidden layers with BatchNorm and ReLU on the flattened image."""
    c, h, w = input_shape
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(c * h * w, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, num_classes),
    )


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


@register_model("small_cnn")
def small_cnn(input_shape: tuple[int, int, int], num_classes: int, width: int = 32) -> nn.Module:
    """Three or four conv-BN-ReLU stages with max-pooling, global average pool, linear head."""
    c, h, _ = input_shape
    layers = _conv_bn(c, width) + _conv_bn(width, 2 * width) + [nn.MaxPool2d(2)]
    layers += _conv_bn(2 * width, 4 * width)
    if h >= 16:
        layers += [nn.MaxPool2d(2)] + _conv_bn(4 * width, 4 * width)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_classes)]
    return nn.Sequential(*layers)


@register_model("resnet18")
def resnet18(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """ResNet-18 (He et al. 2016) with the CIFAR stem: 3×3 stride-1 first conv, no max-pool."""
    import torchvision

    model = torchvision.models.resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(input_shape[0], 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model
