"""Replayable batched augmentation: views are a pure function of (seed, epoch, index).

The training loop and the teacher service call the same function (:func:`make_views`), so
the teacher's output for a view is computed once and every trial that replays that view
gets it.

A view is a random crop (zero ``pad``) and h-flip, then the spec's ``ops`` in order, then
(on the normalised input) Gaussian noise. ``ops`` come from one registry,
``@register_augmentation(name, paper=...)`` on ``fn(images, keys, **args) -> images``:
``images`` a uint8 ``[B, C, H, W]`` tensor on any device, ``keys`` a uint64 numpy ``[B]``
of each view's key (:func:`view_keys`, mixed with the op's position by :func:`op_keys` so
two ops, and the crop, draw independent bits), ``args`` the op's typed keyword arguments
(one default each). An op must be a pure function of the keys (replayable: the teacher's
logits of a view are the student's), vectorised over the batch and device-agnostic
(:func:`host_to_device` moves parameters drawn from the keys without a host sync).
Built in: ``cutout``, ``random_resized_crop``. Batch-level CutMix is not an op (it mixes
two views): :mod:`coretune.train.mixing`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any

import numpy as np
import torch
import torch.nn.functional as F
from annotated_types import Ge, Gt, Interval

from coretune.errors import PluginArgumentError, UnknownNameError
from coretune.registry import Registry, TypedArguments, origin_of
from coretune.spec import AugmentOpSpec, AugmentSpec
from coretune.train.rded import ATTEMPTS, crop_boxes

#: ``fn(images uint8 [B, C, H, W], keys uint64 [B], **args) -> uint8 [B, C, H, W]``
AugmentFn = Callable[..., torch.Tensor]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele et al. 2014), vectorised over uint64."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def view_keys(seed: int, epochs: np.ndarray | int, indices: np.ndarray) -> np.ndarray:
    """64-bit key of each (seed, epoch, index) view; broadcasts ``epochs`` against ``indices``."""
    base = _splitmix64(np.asarray([seed], dtype=np.uint64))
    ep = _splitmix64(base ^ np.asarray(epochs, dtype=np.uint64))
    return _splitmix64(ep ^ np.asarray(indices, dtype=np.uint64))


def view_params(
    seed: int, epochs: np.ndarray | int, indices: np.ndarray, spec: AugmentSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop offsets (dy, dx) in [0, 2·pad] and flip flags of each view."""
    return crop_params(view_keys(seed, epochs, indices), spec)


def crop_params(keys: np.ndarray, spec: AugmentSpec
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop offsets and flip flags of the views with these keys (bits 0–20, 21–41, 42)."""
    span = np.uint64(2 * spec.pad + 1)
    dy = (keys % span).astype(np.int64)
    dx = ((keys >> np.uint64(21)) % span).astype(np.int64)
    flip = ((keys >> np.uint64(42)) & np.uint64(1)).astype(bool) & spec.flip
    return dy, dx, flip


def augment_batch(
    images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int
) -> torch.Tensor:
    """Random-crop (zero padding ``pad``) and h-flip a batch ``[B, C, H, W]`` in one gather."""
    if pad == 0 and not bool(flip.any()):
        return images
    b, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad)) if pad else images
    ar_h = torch.arange(h, device=images.device)
    ar_w = torch.arange(w, device=images.device)
    rows = dy[:, None] + ar_h  # [B, H]
    cols = torch.where(flip[:, None], dx[:, None] + (w - 1 - ar_w), dx[:, None] + ar_w)
    batch = torch.arange(b, device=images.device)[:, None, None]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return out.permute(0, 3, 1, 2)


def augment_views(
    images: torch.Tensor, seed: int, epochs: np.ndarray | int, indices: np.ndarray,
    spec: AugmentSpec,
) -> torch.Tensor:
    """The views (seed, epoch, index) of ``images`` (the images at ``indices``)."""
    keys = view_keys(seed, epochs, indices)
    dy, dx, flip = (torch.as_tensor(a, device=images.device) for a in crop_params(keys, spec))
    return make_views(images, dy, dx, flip, keys, spec)


def make_views(images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor,
               keys: np.ndarray, spec: AugmentSpec) -> torch.Tensor:
    """The views of a batch: crop and flip, then ``spec.ops`` in order. The one function
    that both the training loop and the teacher service (:func:`augment_views`) call."""
    if spec.pad or spec.flip:
        images = augment_batch(images, dy, dx, flip, spec.pad)
    return apply_ops(images, keys, spec.ops) if spec.ops else images


class EpochViews:
    """The views of one epoch of the training loop: crop and flip parameters on the
    device, the keys on the host; :meth:`__call__` makes a batch's views."""

    def __init__(self, seed: int, epoch: int, indices: np.ndarray, spec: AugmentSpec,
                 device: torch.device):
        self.spec = spec
        self.keys = view_keys(seed, epoch, indices)
        self.dy, self.dx, self.flip = (torch.as_tensor(a, device=device)
                                       for a in crop_params(self.keys, spec))

    def __call__(self, images: torch.Tensor, pos: torch.Tensor, pos_host: np.ndarray
                 ) -> torch.Tensor:
        """Views of ``images``, the samples at positions ``pos`` (``pos_host`` on the host)."""
        if not (self.spec.pad or self.spec.flip or self.spec.ops):
            return images
        return make_views(images, self.dy[pos], self.dx[pos], self.flip[pos],
                          self.keys[pos_host], self.spec)


def add_input_noise(x: torch.Tensor, std: float, seed: int, epoch: int, step: int) -> torch.Tensor:
    """Gaussian noise of ``std`` on the normalised batch, from a generator of (seed, epoch, step).

    Replayable like the crops, but per batch: the same trial gives the same noise.
    """
    if std <= 0:
        return x
    key = int(view_keys(seed, epoch, np.asarray([step], dtype=np.uint64))[0] >> np.uint64(1))
    gen = torch.Generator(device=x.device).manual_seed(key)
    return x + std * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)


# ---------------------------------------------------------------------------- ops registry
class UnknownAugmentationError(UnknownNameError):
    """An augmentation op name that is not registered."""


class AugmentationArgumentError(PluginArgumentError):
    """Arguments an augmentation op does not take, or of the wrong type or value."""


@dataclass(frozen=True)
class AugmentationInfo:
    """A registered op: ``fn(images, keys, **args)``, the paper it implements and an
    optional ``check(args)`` of its arguments together (defaults filled in), raising
    ``ValueError`` (e.g. a range's min above its max)."""

    name: str
    fn: AugmentFn
    paper: str
    check: Callable[[dict[str, Any]], None] | None = None

    @cached_property
    def arguments(self) -> TypedArguments:
        """The op's keyword arguments (after ``images, keys``), typed."""
        return TypedArguments(self.fn, 2, f"augmentation {self.name!r}")

    def validate_args(self, args: Mapping[str, Any] | None) -> None:
        self.arguments.validate(dict(args or {}), AugmentationArgumentError)
        if self.check is not None:
            try:
                self.check({**self.arguments.defaults, **(args or {})})
            except ValueError as err:
                raise AugmentationArgumentError(f"augmentation {self.name!r}: {err}") from None


AUGMENTATIONS: Registry[AugmentationInfo] = Registry("augmentation", UnknownAugmentationError)


def register_augmentation(name: str, *, paper: str = "", replace: bool = False,
                          check: Callable[[dict[str, Any]], None] | None = None
                          ) -> Callable[[AugmentFn], AugmentFn]:
    """Register ``fn(images, keys, **args) -> images`` as augmentation op ``name``; its
    typed keyword arguments are what a spec's ``augment.ops[i].args`` may set, and
    ``check`` (optional) refuses combinations of them with a ``ValueError``."""

    def decorate(fn: AugmentFn) -> AugmentFn:
        AUGMENTATIONS.add(name, AugmentationInfo(name, fn, paper, check),
                          origin=origin_of(fn), replace=replace)
        return fn

    return decorate


def check_augment(spec: AugmentSpec | None, where: str = "ops") -> None:
    """Refuse an unknown op name (with a did-you-mean) or arguments an op does not take;
    the message starts with ``where.<position>``."""
    for i, op in enumerate(spec.ops if spec is not None else ()):
        try:
            AUGMENTATIONS.get(op.name).validate_args(op.args)
        except (UnknownNameError, PluginArgumentError) as err:
            raise type(err)(f"{where}.{i}: {err}") from None


_OP_SALT = np.uint64(0xD1B54A32D192ED03)


def op_keys(keys: np.ndarray, position: int) -> np.ndarray:
    """Each view's key for the op at ``position`` of ``ops``: the view key hashed with the
    position, so ops and the crop draw independent bits (and two cutouts differ)."""
    with np.errstate(over="ignore"):
        salt = _OP_SALT * np.uint64(position + 1)
    return _splitmix64(np.asarray(keys, dtype=np.uint64) ^ salt)


def apply_ops(images: torch.Tensor, keys: np.ndarray, ops: Sequence[AugmentOpSpec]
              ) -> torch.Tensor:
    """Apply ``ops`` in order to uint8 ``images`` whose views have ``keys``."""
    for i, op in enumerate(ops):
        out = AUGMENTATIONS.get(op.name).fn(images, op_keys(keys, i), **op.args)
        if out.dtype != torch.uint8 or out.shape != images.shape:
            raise TypeError(f"augmentation {op.name!r} returned {out.dtype} {tuple(out.shape)}"
                            f"; it must return uint8 {tuple(images.shape)}")
        images = out
    return images


def host_to_device(arr: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array on ``device``; on CUDA a pinned, non-blocking copy (no host sync)."""
    t = torch.from_numpy(np.ascontiguousarray(arr))
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def key_uniform(keys: np.ndarray) -> np.ndarray:
    """A float64 in [0, 1) per key, from its top 53 bits."""
    return (np.asarray(keys, dtype=np.uint64) >> np.uint64(11)).astype(np.float64) * 2.0**-53


_GAMMA = np.uint64(0x9E3779B97F4A7C15)


def key_uniforms(keys: np.ndarray, count: int, salt: int) -> np.ndarray:
    """``count`` independent float64 uniforms in [0, 1) per key, ``[B, count]``: the first
    ``count`` outputs of SplitMix64 seeded with ``key ^ salt`` (a ``salt`` per use)."""
    with np.errstate(over="ignore"):
        state = ((np.asarray(keys, dtype=np.uint64) ^ np.uint64(salt))[:, None]
                 + np.arange(count, dtype=np.uint64) * _GAMMA)
    return key_uniform(_splitmix64(state))


# ---------------------------------------------------------------------------- built-in ops
@register_augmentation("cutout", paper="DeVries & Taylor 2017, Improved Regularization of "
                       "Convolutional Neural Networks with Cutout, arXiv:1708.04552")
def cutout(images: torch.Tensor, keys: np.ndarray, size: Annotated[int, Ge(1)] = 8,
           p: Annotated[float, Interval(ge=0, le=1)] = 1.0) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017, Sec. 3): zero a ``size`` × ``size`` square centred at
    a uniformly random pixel of each view, with probability ``p``; the square may extend
    past the border (it is clipped there), as in the paper, so less than ``size²`` pixels
    are sometimes cut. Rows ``[cy − size//2, cy − size//2 + size)``, likewise columns.

    From the bits of each view's key ``k``: centre row ``cy = (k mod 2²⁰) mod H``, centre
    column ``cx = ((k >> 20) mod 2²⁰) mod W``, applied when ``(k >> 40) mod 2²⁴ < p · 2²⁴``.

    Cost: O(B·C·H·W) elementwise — a ``[B, H]`` and a ``[B, W]`` comparison, their outer
    product as a ``[B, H, W]`` uint8 mask and one multiply of the batch by it; no gather,
    no Python loop, one host-to-device copy of ``[B, 3]`` integers (non-blocking on CUDA).
    Measured: about 0.4 ms for a 128 × 3 × 32 × 32 batch on one thread of a busy 2-core
    CPU (an upper bound; not measured on a GPU).
    """
    _, _, h, w = images.shape
    k = np.asarray(keys, dtype=np.uint64)
    field = np.uint64(0xFFFFF)  # 20 bits
    top = ((k & field) % np.uint64(h)).astype(np.int64) - size // 2
    left = (((k >> np.uint64(20)) & field) % np.uint64(w)).astype(np.int64) - size // 2
    on = ((k >> np.uint64(40)) & np.uint64(0xFFFFFF)).astype(np.float64) < p * 2.0**24
    box = host_to_device(np.stack([top, left, on.astype(np.int64)], axis=1), images.device)
    rows = torch.arange(h, device=images.device) - box[:, :1]  # [B, H]
    cols = torch.arange(w, device=images.device) - box[:, 1:2]  # [B, W]
    in_rows = ((rows >= 0) & (rows < size)).to(torch.uint8)
    in_cols = ((cols >= 0) & (cols < size) & box[:, 2:].bool()).to(torch.uint8)  # p folded in
    keep = 1 - in_rows[:, :, None] * in_cols[:, None, :]  # [B, H, W]: 0 inside the square
    return images * keep[:, None]


def _check_ranges(args: dict[str, Any]) -> None:
    for what in ("scale", "ratio"):
        if args[f"{what}_min"] > args[f"{what}_max"]:
            raise ValueError(f"{what}_min {args[f'{what}_min']!r} is above {what}_max "
                             f"{args[f'{what}_max']!r}")


_RRC_SALT = 0x3C6EF372FE94F82B
_FRAC_BITS = 11  # bilinear weights in 1/2048: four taps of 255 stay within int32


@register_augmentation("random_resized_crop", check=_check_ranges, paper=(
    "Szegedy et al., Going Deeper with Convolutions, CVPR 2015 (torchvision's "
    "RandomResizedCrop; the SL+KD views of SRe2L, RDED and FKD)"))
def random_resized_crop(images: torch.Tensor, keys: np.ndarray,
                        scale_min: Annotated[float, Interval(gt=0, le=1)] = 0.08,
                        scale_max: Annotated[float, Interval(gt=0, le=1)] = 1.0,
                        ratio_min: Annotated[float, Gt(0)] = 3 / 4,
                        ratio_max: Annotated[float, Gt(0)] = 4 / 3) -> torch.Tensor:
    """RandomResizedCrop: a box of area fraction s ~ U(scale_min, scale_max) and aspect
    ratio log-uniform in [ratio_min, ratio_max], resized back to H × W (bilinear).

    Boxes as torchvision's ``RandomResizedCrop.get_params`` (10 attempts, then the centre
    crop; :func:`coretune.train.rded.crop_boxes`) from 22 uniforms of each view's key
    (:func:`key_uniforms`). The resize is bilinear with half-pixel centres
    (``F.interpolate(align_corners=False)`` of the cut box; a box never exceeds the image,
    so it is only ever enlarged and no antialias applies) in fixed point: taps and weights
    (in 1/2048) computed on the host in float64, the blend in int32 on the device, so a view
    is bit-identical on every device (a float blend is not across CPU and GPU); within one
    grey level of the float resize. A full-size box is copied exactly.

    Cost: four ``[B, H, W, C]`` gathers and an integer blend, two host-to-device copies of
    ``[B, 3, H]`` and ``[B, 3, W]`` integers (non-blocking on CUDA); no host sync.
    """
    b, _, h, w = images.shape
    boxes = rrc_boxes(keys, h, w, (scale_min, scale_max), (ratio_min, ratio_max))
    rows = host_to_device(_taps(boxes[:, 0], boxes[:, 2], h), images.device)  # [B, 3, H]
    cols = host_to_device(_taps(boxes[:, 1], boxes[:, 3], w), images.device)  # [B, 3, W]
    batch = torch.arange(b, device=images.device)[:, None, None]

    def at(r: int, c: int) -> torch.Tensor:  # [B, H, W, C] int32
        return images[batch, :, rows[:, r, :, None], cols[:, c, None, :]].to(torch.int32)

    one = 1 << _FRAC_BITS
    wy = rows[:, 2, :, None, None].to(torch.int32)
    wx = cols[:, 2, None, :, None].to(torch.int32)
    upper = at(0, 0) * (one - wx) + at(0, 1) * wx
    lower = at(1, 0) * (one - wx) + at(1, 1) * wx
    out = (upper * (one - wy) + lower * wy + (1 << (2 * _FRAC_BITS - 1))) >> (2 * _FRAC_BITS)
    return out.to(torch.uint8).permute(0, 3, 1, 2)


def rrc_boxes(keys: np.ndarray, height: int, width: int, scale: tuple[float, float],
              ratio: tuple[float, float]) -> np.ndarray:
    """The RandomResizedCrop box (top, left, h, w) of each op key, int64 ``[B, 4]``."""
    u = torch.from_numpy(key_uniforms(keys, 2 * ATTEMPTS + 2, _RRC_SALT))
    return crop_boxes(u[:, :ATTEMPTS], u[:, ATTEMPTS:2 * ATTEMPTS], u[:, 2 * ATTEMPTS:],
                      height, width, scale, ratio).numpy()


def _taps(start: np.ndarray, length: np.ndarray, out: int) -> np.ndarray:
    """Bilinear taps of ``out`` pixels resampling ``[start, start + length)``: int64
    ``[B, 3, out]`` (first tap, second tap, the second's weight in 1/2048)."""
    start, last = start.astype(np.float64)[:, None], (start + length - 1)[:, None]
    src = start + (np.arange(out) + 0.5)[None] * (length / out)[:, None] - 0.5
    src = np.minimum(np.maximum(src, start), last)
    first = np.floor(src)
    weight = np.rint((src - first) * (1 << _FRAC_BITS))
    return np.stack([first, np.minimum(first + 1, last), weight], axis=1).astype(np.int64)
