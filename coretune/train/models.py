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


def _cifar_resnet(depth: int, input_shape: tuple[int, int, int], num_classes: int
                  ) -> nn.Module:
    import torchvision

    model = getattr(torchvision.models, f"resnet{depth}")(num_classes=num_classes)
    model.conv1 = nn.Conv2d(input_shape[0], 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


@register_model("resnet18")
def resnet18(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """ResNet-18 (He et al. 2016) with the CIFAR stem: 3×3 stride-1 first conv, no max-pool."""
    return _cifar_resnet(18, input_shape, num_classes)


@register_model("resnet34")
def resnet34(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """ResNet-34 with the CIFAR stem (ELFS's ImageNet arch; the soft-label paper's T6)."""
    return _cifar_resnet(34, input_shape, num_classes)


@register_model("resnet50")
def resnet50(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """ResNet-50 with the CIFAR stem (ELFS's transfer tables)."""
    return _cifar_resnet(50, input_shape, num_classes)


@register_model("vgg16")
def vgg16(input_shape: tuple[int, int, int], num_classes: int, batchnorm: bool = True
          ) -> nn.Module:
    """VGG-16 (Simonyan & Zisserman 2015) in CIFAR form: the 13 conv layers (BatchNorm by
    default), global pooling and one linear classifier (the soft-label paper's T5, T8)."""
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
    layers: list[nn.Module] = []
    cin = input_shape[0]
    size = input_shape[1]
    for v in cfg:
        if v == "M":
            if size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            continue
        layers.append(nn.Conv2d(cin, int(v), 3, padding=1, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm2d(int(v)))
        layers.append(nn.ReLU(inplace=True))
        cin = int(v)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)]
    return nn.Sequential(*layers)


@register_model("vit_small")
def vit_small(input_shape: tuple[int, int, int], num_classes: int, patch_size: int = 4,
              embed_dim: int = 192, depth: int = 6, num_heads: int = 3) -> nn.Module:
    """A small Vision Transformer (Dosovitskiy et al. 2021) for small images: timm's
    ``VisionTransformer`` with 4×4 patches (the soft-label paper's ViT student, T5–T6)."""
    from timm.models.vision_transformer import VisionTransformer

    c, h, _ = input_shape
    patch = max(1, min(patch_size, h))
    return VisionTransformer(img_size=h - h % patch, patch_size=patch, in_chans=c,
                             num_classes=num_classes, embed_dim=embed_dim, depth=depth,
                             num_heads=num_heads, dynamic_img_size=True)
