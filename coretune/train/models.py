"""Model registry: build a network by name from (input shape, number of classes, args)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch.nn as nn

ModelBuilder = Callable[..., nn.Module]
_MODELS: dict[str, ModelBuilder] = {}


class UnknownModelError(ValueError):
    """A model name that is not registered."""


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register ``builder(input_shape, num_classes, **args) -> nn.Module`` under ``name``."""

    def decorate(fn: ModelBuilder) -> ModelBuilder:
        _MODELS[name] = fn
        return fn

    return decorate


def available_models() -> list[str]:
    return sorted(_MODELS) + ["timm/<name>"]


def check_model_name(name: str, args: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`UnknownModelError` for an unknown arch or arguments it does not take."""
    if name.startswith("timm/"):
        import timm

        if not timm.is_model(name[5:]):
            raise UnknownModelError(f"unknown arch {name!r}: timm has no model {name[5:]!r}")
        return
    if name not in _MODELS:
        raise UnknownModelError(
            f"unknown arch {name!r}; available: {', '.join(available_models())}")
    params = list(inspect.signature(_MODELS[name]).parameters)[2:]
    unknown = sorted(set(args or {}) - set(params))
    if unknown:
        raise UnknownModelError(f"arch {name!r} takes no argument(s) {unknown}; "
                                f"it accepts {params or 'none'}")


def build_model(name: str, input_shape: tuple[int, int, int], num_classes: int,
                args: Mapping[str, Any] | None = None) -> nn.Module:
    """Build model ``name`` with ``args``; ``timm/<model>`` builds any timm model, untrained."""
    check_model_name(name, args)
    if name.startswith("timm/"):
        import timm

        return timm.create_model(name[5:], pretrained=False, num_classes=num_classes,
                                 in_chans=input_shape[0], **dict(args or {}))
    return _MODELS[name](tuple(input_shape), num_classes, **dict(args or {}))


def classifier_layer(model: nn.Module) -> nn.Linear:
    """The last linear layer (the classifier head) of ``model``: timm's ``get_classifier()``,
    else the last ``nn.Linear`` it holds. Its input is the penultimate feature vector."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if isinstance(head, nn.Linear):
        return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no linear classifier layer")
    return linears[-1]


@register_model("mlp")
def mlp(input_shape: tuple[int, int, int], num_classes: int,
        hidden: int | Sequence[int] = (256, 256), batchnorm: bool = True) -> nn.Module:
    """Hidden layers (Linear[, BatchNorm], ReLU) on the flattened image, then a linear head."""
    c, h, w = input_shape
    sizes = [hidden, hidden] if isinstance(hidden, int) else list(hidden)
    layers: list[nn.Module] = [nn.Flatten()]
    width = c * h * w
    for size in sizes:
        layers.append(nn.Linear(width, size))
        if batchnorm:
            layers.append(nn.BatchNorm1d(size))
        layers.append(nn.ReLU(inplace=True))
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


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
