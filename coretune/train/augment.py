"""Replayable batched augmentation: views are a pure function of (seed, epoch, index).

The training loop and the teacher service call the same functions, so the teacher's
output for a view is computed once and every trial that replays that view gets it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from coretune.spec import AugmentSpec

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
    keys = view_keys(seed, epochs, indices)
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
    dy, dx, flip = (torch.as_tensor(a, device=images.device)
                    for a in view_params(seed, epochs, indices, spec))
    return augment_batch(images, dy, dx, flip, spec.pad)


def add_input_noise(x: torch.Tensor, std: float, seed: int, epoch: int, step: int) -> torch.Tensor:
    """Gaussian noise of ``std`` on the normalised batch, from a generator of (seed, epoch, step).

    Replayable like the crops, but per batch: the same trial gives the same noise.
    """
    if std <= 0:
        return x
    key = int(view_keys(seed, epoch, np.asarray([step], dtype=np.uint64))[0] >> np.uint64(1))
    gen = torch.Generator(device=x.device).manual_seed(key)
    return x + std * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
