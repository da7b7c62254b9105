"""Model registry: build a network by name from (input shape, number of classes, args)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any

import torch.nn as nn
from annotated_types import Ge

from coretune.errors import PluginArgumentError, UnknownNameError
from coretune.registry import Registry, TypedArguments, origin_of

ModelBuilder = Callable[..., nn.Module]
TIMM_PREFIX = "timm/"
#: a size argument of a builder: a positive integer
Size = Annotated[int, Ge(1)]


class UnknownModelError(UnknownNameError):
    """A model name that is not registered."""


class ModelArgumentError(PluginArgumentError, UnknownModelError):
    """Arguments a model builder does not take, or of the wrong type or value."""


@dataclass(frozen=True)
class ModelInfo:
    """A registered architecture: ``builder(input_shape, num_classes, **args)``; timm names
    (``timm/<model>``) take timm's keyword arguments, checked by timm when built."""

    name: str
    builder: ModelBuilder
    timm_model: str | None = None
    #: arguments that make it cheap for a smoke run (``coretune sweep --smoke``), each an
    #: upper bound on the argument (width, depth): the same architecture, smaller
    smoke: Mapping[str, int] = field(default_factory=dict)

    @cached_property
    def arguments(self) -> TypedArguments | None:
        if self.timm_model is not None:
            return None
        return TypedArguments(self.builder, 2, f"arch {self.name!r}")

    def validate_args(self, args: Mapping[str, Any] | None) -> None:
        if self.arguments is None:
            if not isinstance(args or {}, Mapping) or not all(
                    isinstance(k, str) for k in (args or {})):
                raise ModelArgumentError(f"arch {self.name!r}: arguments must be a mapping")
            return
        self.arguments.validate(dict(args or {}), ModelArgumentError)


def timm_model_name(name: str, family: str, error: type[UnknownNameError]) -> str:
    """The timm model of ``timm/<model>``, checked against timm's own list (no weights)."""
    import timm

    model = name[len(TIMM_PREFIX):]
    if not timm.is_model(model):
        raise error(f"unknown {family} {name!r}: timm has no model {model!r}")
    return model


def _timm_model(name: str) -> ModelInfo:
    model = timm_model_name(name, "arch", UnknownModelError)

    def build(input_shape: tuple[int, int, int], num_classes: int, **args: Any) -> nn.Module:
        import timm

        return timm.create_model(model, pretrained=False, num_classes=num_classes,
                                 in_chans=input_shape[0], **args)

    return ModelInfo(name, build, model)


MODELS: Registry[ModelInfo] = Registry("arch", UnknownModelError)
MODELS.add_prefix(TIMM_PREFIX, _timm_model)


def register_model(name: str, *, smoke: Mapping[str, int] | None = None,
                   replace: bool = False) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register ``builder(input_shape, num_classes, **args) -> nn.Module`` under ``name``;
    its keyword arguments, typed, are what a spec's ``args`` may set. ``smoke``: upper
    bounds on size arguments it takes (``{"width": 16}``) that a smoke run applies."""

    def decorate(fn: ModelBuilder) -> ModelBuilder:
        info = ModelInfo(name, fn, smoke=dict(smoke or {}))
        if info.smoke:
            info.validate_args(info.smoke)  # a declaration the builder refuses fails here
        MODELS.add(name, info, origin=origin_of(fn), replace=replace)
        return fn

    return decorate


def available_models() -> list[str]:
    return MODELS.names() + [f"{TIMM_PREFIX}<name>"]


def check_model_name(name: str, args: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`UnknownModelError` for an unknown arch, or :class:`ModelArgumentError`
    for arguments it does not take or of the wrong type or value."""
    MODELS.get(name).validate_args(args)


def build_model(name: str, input_shape: tuple[int, int, int], num_classes: int,
                args: Mapping[str, Any] | None = None) -> nn.Module:
    """Build model ``name`` with ``args``; ``timm/<model>`` builds any timm model, untrained."""
    info = MODELS.get(name)
    info.validate_args(args)
    return info.builder(tuple(input_shape), num_classes, **dict(args or {}))


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
        hidden: Size | Sequence[Size] = (256, 256), batchnorm: bool = True) -> nn.Module:
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
def small_cnn(input_shape: tuple[int, int, int], num_classes: int, width: Size = 32) -> nn.Module:
    """Three or four conv-BN-ReLU stages with max-pooling, global average pool, linear head."""
    c, h, _ = input_shape
    layers = _conv_bn(c, width) + _conv_bn(width, 2 * width) + [nn.MaxPool2d(2)]
    layers += _conv_bn(2 * width, 4 * width)
    if h >= 16:
        layers += [nn.MaxPool2d(2)] + _conv_bn(4 * width, 4 * width)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_classes)]
    return nn.Sequential(*layers)


@register_model("convnet", smoke={"width": 32})
def convnet(input_shape: tuple[int, int, int], num_classes: int, depth: Size = 3,
            width: Size = 128) -> nn.Module:
    """The dataset-distillation literature's ConvNet-D``depth`` (DC, Zhao et al. ICLR 2021;
    DM, MTT, DATM, RDED's small-scale protocol; Hard Truths Sec. 6): ``depth`` blocks of
    3×3 conv (``width`` channels, bias) – instance norm (GroupNorm with one group per
    channel, affine, as the published code builds it) – ReLU – 2×2 average pool, then a
    linear head on the flattened map. D3 on 32×32 images: 320,010 parameters for 10
    classes. Forward cost per image: Σ over blocks of 2·9·C_in·width·H_b·W_b FLOPs (H_b×W_b
    the block's input size) plus the head: 0.101 GFLOP for D3 on 32×32, width 128."""
    c, h, w = input_shape
    if min(h, w) >> depth == 0:
        raise ModelArgumentError(f"arch 'convnet': depth {depth} pools {h}x{w} images away "
                                 f"(each block halves them); use depth <= "
                                 f"{min(h, w).bit_length() - 1}")
    layers: list[nn.Module] = []
    for block in range(depth):
        layers += [nn.Conv2d(c if block == 0 else width, width, 3, padding=1),
                   nn.GroupNorm(width, width, affine=True), nn.ReLU(inplace=True),
                   nn.AvgPool2d(2, 2)]
    layers += [nn.Flatten(), nn.Linear(width * (h >> depth) * (w >> depth), num_classes)]
    return nn.Sequential(*layers)


def _cifar_resnet(depth: int, input_shape: tuple[int, int, int], num_classes: int,
                  width: int = 64) -> nn.Module:
    """torchvision's ResNet with the CIFAR stem; ``width`` channels in the first stage
    (64: torchvision's own network, built exactly as before; else every stage scaled)."""
    import torchvision
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    if width == 64:
        model = getattr(torchvision.models, f"resnet{depth}")(num_classes=num_classes)
        model.conv1 = nn.Conv2d(input_shape[0], 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
        return model
    block, layers = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]),
                     50: (Bottleneck, [3, 4, 6, 3])}[depth]
    model = ResNet(block, [1, 1, 1, 1], num_classes=num_classes)  # the attributes; rebuilt:
    model.inplanes = width
    model.conv1 = nn.Conv2d(input_shape[0], width, 3, stride=1, padding=1, bias=False)
    model.bn1, model.maxpool = nn.BatchNorm2d(width), nn.Identity()
    for i, blocks in enumerate(layers):
        setattr(model, f"layer{i + 1}", model._make_layer(block, width << i, blocks,
                                                          stride=1 if i == 0 else 2))
    model.fc = nn.Linear((width << 3) * block.expansion, num_classes)
    for m in model.modules():  # torchvision's initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return model


@register_model("resnet18", smoke={"width": 8})
def resnet18(input_shape: tuple[int, int, int], num_classes: int, width: Size = 64
             ) -> nn.Module:
    """ResNet-18 (He et al. 2016) with the CIFAR stem: 3×3 stride-1 first conv, no max-pool;
    ``width`` channels in the first stage (64, doubling per stage)."""
    return _cifar_resnet(18, input_shape, num_classes, width)


@register_model("resnet34", smoke={"width": 8})
def resnet34(input_shape: tuple[int, int, int], num_classes: int, width: Size = 64
             ) -> nn.Module:
    """ResNet-34 with the CIFAR stem (ELFS's ImageNet arch; the soft-label paper's T6)."""
    return _cifar_resnet(34, input_shape, num_classes, width)


@register_model("resnet50", smoke={"width": 8})
def resnet50(input_shape: tuple[int, int, int], num_classes: int, width: Size = 64
             ) -> nn.Module:
    """ResNet-50 with the CIFAR stem (ELFS's transfer tables)."""
    return _cifar_resnet(50, input_shape, num_classes, width)


@register_model("vgg16", smoke={"width": 8})
def vgg16(input_shape: tuple[int, int, int], num_classes: int, batchnorm: bool = True,
          width: Size = 64) -> nn.Module:
    """VGG-16 (Simonyan & Zisserman 2015) in CIFAR form: the 13 conv layers (BatchNorm by
    default), global pooling and one linear classifier (the soft-label paper's T5, T8);
    ``width`` channels in the first block (64, doubling to 8× in the last ones)."""
    cfg = [width * m if isinstance(m, int) else m for m in
           [1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8]]
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
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8 * width, num_classes)]
    return nn.Sequential(*layers)


@register_model("vit_small", smoke={"embed_dim": 48, "depth": 2})
def vit_small(input_shape: tuple[int, int, int], num_classes: int, patch_size: Size = 4,
              embed_dim: Size = 192, depth: Size = 6, num_heads: Size = 3) -> nn.Module:
    """A small Vision Transformer (Dosovitskiy et al. 2021) for small images: timm's
    ``VisionTransformer`` with 4×4 patches (the soft-label paper's ViT student, T5–T6)."""
    from timm.models.vision_transformer import VisionTransformer

    c, h, _ = input_shape
    patch = max(1, min(patch_size, h))
    return VisionTransformer(img_size=h - h % patch, patch_size=patch, in_chans=c,
                             num_classes=num_classes, embed_dim=embed_dim, depth=depth,
                             num_heads=num_heads, dynamic_img_size=True)
