"""RDED's crop-score-stitch synthesis, and CA2D as RDED on a top-CAD pool: arrays in, arrays out.

RDED (Sun, Shi, Yu, Lin, "On the Diversity and Realism of Distilled Dataset: An Efficient
Dataset Distillation Paradigm", CVPR 2024, arXiv 2312.03526; the steps below are the
official code's, the paper's section and equation numbers were not checked against the PDF)
builds each class's synthetic images from real ones without any optimisation:

1. a *pool* of ``mipc`` real images of the class (RDED: a random draw, :func:`random_pool`;
   CA2D, Dey et al. CVPR 2026, arXiv 2604.18811: the top-``mipc`` by CAD score,
   :func:`top_score_pool`);
2. ``num_crop`` RandomResizedCrops of each pool image, each resized to the tile side
   ``size // factor`` and scored by a frozen observer's cross-entropy on the true label,
   −log p_y (the paper's V-information "realism" score: lower is more realistic);
3. each image's lowest-CE crop, then the ``ipc·factor²`` lowest-CE of those;
4. factor × factor of them stitched into each of the ``ipc`` output images.

The call returns uint8 images and hard labels; nothing runs the observer on the stitched
images, and no soft label is produced: RDED's own evaluation relabels every augmented view
with the teacher online (FKD style), which in coretune is the ``kd`` / ``soft`` label source.

**Follows RDED's code** (``synthesize/utils.py``, ``synthesize/main.py`` of
github.com/LINs-lab/RDED): crop scale (0.08, 1) (torchvision's default; RDED sets
``ratio=(1, 1)``, square crops), crops resized to ``size // factor`` before scoring; a crop
is normalised and then zero-padded, centred, to the full input size for the observer (zero =
the normaliser's mean colour; no padding at factor 1); per-image argmin over crops, then an
ascending sort; tile ``k = i·factor + j`` (row i, column j, row-major) of output image ``t``
holds the crop of rank ``k·ipc + t`` (so every output's top-left tile comes from the best
``ipc`` crops); when ``size % factor = r ≠ 0`` the first r tile rows and columns are one
pixel taller / wider.

**Deviates**: (a) crop boxes come from a seeded ``torch.Generator`` per class (RDED: global
RNG, unseeded file shuffle), vectorised, so draws are not torchvision's bit for bit, though
they follow ``RandomResizedCrop.get_params`` (10 attempts, then a centre crop); (b) resizing
is bilinear with half-pixel centres clamped to the crop, averaged over ⌈crop/out⌉² sub-samples
per output pixel when shrinking (area-style antialias) instead of torchvision's antialiased
triangle filter; (c) a tile one pixel larger (remainder rows/columns) is re-cut from the
original image at its own size, not nearest-upsampled from the scored crop; (d) output
is kept as rounded uint8, not truncated ×255 and saved as JPEG; (e) ties break by the
earlier crop, then the earlier pool position (stable sorts).

**Cost.** Per class ``mipc·num_crop`` observer forwards at full input size (in batches of
``batch_size``) plus ``mipc·num_crop + ipc·factor²`` crop resamplings, each one
``grid_sample`` of ⌈crop/out⌉²·out² points; e.g. ImageNet-1k at mipc 300, 5 crops:
1.5 M forwards, about 1.2 epochs of inference.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from coretune.errors import DataError, SpecError

#: RDED's crop scale and aspect ratio (torchvision's default scale, square crops)
RDED_SCALE = (0.08, 1.0)
RDED_RATIO = (1.0, 1.0)
#: torchvision's RandomResizedCrop tries this many draws before falling back to a centre crop
ATTEMPTS = 10

Observer = Callable[[Tensor], Tensor]
Normalize = Callable[[Tensor], Tensor]


def draw_crop_boxes(n: int, height: int, width: int, scale: tuple[float, float] = RDED_SCALE,
                    ratio: tuple[float, float] = RDED_RATIO,
                    generator: torch.Generator | None = None) -> Tensor:
    """``n`` RandomResizedCrop boxes ``(top, left, h, w)`` int64 ``[n, 4]`` on the CPU.

    As torchvision's ``RandomResizedCrop.get_params``, vectorised: up to 10 draws of an area
    fraction s ~ U(scale) and a log-uniform aspect ratio a, ``w = round(√(s·H·W·a))``,
    ``h = round(√(s·H·W/a))``; the first draw that fits is placed uniformly, and a row where
    none fits gets the centre crop with the ratio clamped to ``ratio``.
    """
    lo, hi = scale
    if not 0 < lo <= hi <= 1:
        raise SpecError(f"crop scale must satisfy 0 < min <= max <= 1, got {scale}")
    if not 0 < ratio[0] <= ratio[1]:
        raise SpecError(f"crop ratio must satisfy 0 < min <= max, got {ratio}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    kw = {"generator": g, "dtype": torch.float64}
    u_frac, u_aspect = torch.rand(n, ATTEMPTS, **kw), torch.rand(n, ATTEMPTS, **kw)
    return crop_boxes(u_frac, u_aspect, torch.rand(n, 2, **kw), height, width, scale, ratio)


def crop_boxes(u_frac: Tensor, u_aspect: Tensor, u_pos: Tensor, height: int, width: int,
               scale: tuple[float, float] = RDED_SCALE, ratio: tuple[float, float] = RDED_RATIO
               ) -> Tensor:
    """:func:`draw_crop_boxes` from given uniforms in [0, 1) (float64 on the CPU): ``u_frac``
    and ``u_aspect`` ``[n, 10]`` (each attempt's area fraction and log aspect ratio),
    ``u_pos`` ``[n, 2]`` (top, left); the augmentation op ``random_resized_crop`` draws
    them from each view's key (:mod:`coretune.train.augment`)."""
    lo, hi = scale
    area = float(height * width)
    frac = lo + (hi - lo) * u_frac
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u_aspect)
    w = torch.round(torch.sqrt(area * frac * aspect)).long()
    h = torch.round(torch.sqrt(area * frac / aspect)).long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.long().argmax(dim=1, keepdim=True)
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    # torchvision's fallback: the whole image, narrowed to the nearest allowed ratio
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        fw, fh = int(round(height * ratio[1])), height
    else:
        fw, fh = width, height
    none = ~fits.any(dim=1)
    w = torch.where(none, torch.full_like(w, fw), w)
    h = torch.where(none, torch.full_like(h, fh), h)
    top = torch.floor(u_pos[:, 0] * (height - h + 1)).long().clamp(max=height - h)
    left = torch.floor(u_pos[:, 1] * (width - w + 1)).long().clamp(max=width - w)
    top = torch.where(none, (height - h) // 2, top)
    left = torch.where(none, (width - w) // 2, left)
    return torch.stack([top, left, h, w], dim=1)


def _axis(start: Tensor, length: Tensor, out: int, size: int, kmax: int
          ) -> tuple[Tensor, Tensor]:
    """Normalised grid_sample coordinates ``[B, out·kmax]`` along one axis and the weights
    ``[B, kmax]`` of each output pixel's sub-samples.

    A row's own k = ⌈length/out⌉ sub-samples sit evenly inside each output pixel's
    footprint (one at the centre when upsampling), weighted 1/k; the other kmax − k repeat
    the first with weight 0, so a row's pixels do not depend on the rest of the batch.
    """
    k = torch.ceil(length / out).clamp(min=1)  # [B]
    a = torch.arange(kmax, device=start.device, dtype=torch.float64)
    used = a[None, :] < k[:, None]  # [B, kmax]
    sub = (torch.where(used, a[None, :], 0.0) + 0.5) / k[:, None]  # in (0, 1)
    pixel = torch.arange(out, device=start.device, dtype=torch.float64)
    step = (pixel[None, :, None] + sub[:, None, :]).flatten(1)  # [B, out·kmax]
    pos = start[:, None] + step * (length / out)[:, None] - 0.5  # source pixel centres
    pos = torch.minimum(torch.maximum(pos, start[:, None]), (start + length - 1)[:, None])
    weight = used.to(torch.float32) / k[:, None].float()
    return ((pos + 0.5) / size * 2 - 1).float(), weight


def crop_resize(images: Tensor, source: Tensor, boxes: Tensor, out: tuple[int, int]) -> Tensor:
    """Cut ``boxes`` ``[B, 4]`` (top, left, h, w) out of ``images[source]`` and resize each
    to ``out`` = (h, w): uint8 ``[N, C, H, W]`` in, uint8 ``[B, C, *out]`` out.

    Bilinear with half-pixel centres clamped to the box (as ``F.interpolate`` of the cut
    crop, ``align_corners=False``); when a box is larger than ``out`` each output pixel
    averages k_h × k_w bilinear sub-samples, k = ⌈box/out⌉ per box and axis (area
    antialias). A box the size of ``out`` is copied exactly, and each box's pixels are the
    same whatever else is in the batch. One ``grid_sample`` for the whole batch.
    """
    oh, ow = out
    batch, (channels, height, width) = boxes.shape[0], images.shape[1:]
    boxes = boxes.to(images.device, torch.float64)
    top, left, bh, bw = boxes.unbind(dim=1)
    ky, kx = (max(1, math.ceil(float((n / o).max()))) if batch else 1
              for n, o in ((bh, oh), (bw, ow)))
    ys, wy = _axis(top, bh, oh, height, ky)  # [B, oh·ky], [B, ky]
    xs, wx = _axis(left, bw, ow, width, kx)
    grid = torch.stack(torch.broadcast_tensors(xs[:, None, :], ys[:, :, None]), dim=-1)
    src = images[source.to(images.device)].float()
    sampled = F.grid_sample(src, grid, mode="bilinear", padding_mode="border",
                            align_corners=False).view(batch, channels, oh, ky, ow, kx)
    weight = wy[:, None, None, :, None, None] * wx[:, None, None, None, None, :]
    resized = (sampled * weight).sum(dim=(3, 5))
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def pad_center(x: Tensor, height: int, width: int) -> Tensor:
    """Zero-pad ``[B, C, h, w]`` to ``[B, C, height, width]``, centred (RDED's ``pad``)."""
    dh, dw = height - x.shape[-2], width - x.shape[-1]
    return F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))


@torch.no_grad()
def score_crops(crops: Tensor, labels: Tensor, observer: Observer,
                batch_size: int = 256) -> Tensor:
    """The observer's cross-entropy −log softmax(z)_y per crop: float ``[B]`` (RDED's realism
    score; its code takes log of softmax, this the stabler log_softmax).

    ``crops`` are normalised float images the observer accepts; ``labels`` int64 ``[B]``.
    """
    out = []
    for i in range(0, crops.shape[0], batch_size):
        logits = observer(crops[i:i + batch_size]).float()
        y = labels[i:i + batch_size].to(logits.device)
        out.append(-logits.log_softmax(dim=1).gather(1, y[:, None])[:, 0])
    return torch.cat(out) if out else torch.zeros(0)


@dataclass(frozen=True)
class RdedResult:
    """What :func:`rded_select` built (numpy, classes in ascending order, ``ipc`` each).

    ``images`` uint8 ``[ipc·K, C, H, W]``, ``labels`` int64 ``[ipc·K]``; per output image and
    tile ``k = i·factor + j`` (row-major): ``sources`` the index into the pool arrays of
    the tile's image, ``boxes`` its crop (top, left, h, w) and ``losses`` its observer CE.
    """

    images: np.ndarray
    labels: np.ndarray
    sources: np.ndarray
    boxes: np.ndarray
    losses: np.ndarray


def class_generator(seed: int, cls: int) -> torch.Generator:
    """Class ``cls``'s own CPU stream of crop draws under ``seed``: a class's crops do not
    depend on which other classes are in the pool."""
    state = np.random.SeedSequence([seed, cls]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) >> 1)


def _tile_sides(size: int, factor: int) -> list[int]:
    """RDED's ``mix_images``: ``size // factor`` each, the first ``size % factor`` one more."""
    base, extra = divmod(size, factor)
    return [base + 1 if i < extra else base for i in range(factor)]


def rded_select(pool_images: Tensor | np.ndarray, pool_labels: Tensor | np.ndarray,
                observer: Observer, normalize: Normalize, *, ipc: int, factor: int,
                num_crop: int, scale: tuple[float, float] = RDED_SCALE,
                ratio: tuple[float, float] = RDED_RATIO, seed: int = 0,
                batch_size: int = 256, device: str | torch.device | None = None) -> RdedResult:
    """RDED (or CA2D, by the pool) over every class in ``pool_labels`` (see the module).

    ``pool_images`` uint8 ``[n, C, H, W]`` and ``pool_labels`` ``[n]`` are the candidates
    (every class's pool at once); ``normalize`` maps uint8 ``[B, C, h, w]`` to the
    observer's float input (any h, w; e.g. ``DeviceData.normalize``); ``observer`` maps
    float ``[B, C, H, W]`` to logits ``[B, K]`` (put a module in eval mode first) and is
    called under ``no_grad`` on ``device`` (default: the pool tensor's device, CPU for
    numpy). Each class needs at least ``ipc·factor²`` pool images. Deterministic given
    ``seed`` (crop draws on a CPU generator seeded by (seed, class)).
    """
    for name, value in (("ipc", ipc), ("factor", factor), ("num_crop", num_crop),
                        ("batch_size", batch_size)):
        if int(value) != value or value < 1:
            raise SpecError(f"rded: {name} must be an integer >= 1, got {value!r}")
    images = torch.as_tensor(pool_images)
    if device is not None:
        images = images.to(device)
    labels = torch.as_tensor(pool_labels).to(images.device, torch.int64)
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise DataError(f"rded: pool images must be uint8 [n, C, H, W], got {images.dtype} "
                        f"{tuple(images.shape)}")
    if labels.shape != images.shape[:1]:
        raise DataError(f"rded: {labels.shape[0]} pool labels for {images.shape[0]} images")
    _, channels, height, width = images.shape
    if height < factor or width < factor:
        raise SpecError(f"rded: factor {factor} exceeds the image size {height}x{width}")
    tile_h, tile_w = height // factor, width // factor
    rows, cols = _tile_sides(height, factor), _tile_sides(width, factor)
    need = ipc * factor**2
    classes = torch.unique(labels).tolist()
    counts = {c: int((labels == c).sum()) for c in classes}
    short = {c: n for c, n in counts.items() if n < need}
    if short:
        c, n = next(iter(short.items()))
        raise DataError(f"rded: class {c} has a pool of {n} images, fewer than ipc*factor^2 = "
                        f"{need} ({len(short)} classes short); raise mipc or lower ipc/factor")
    outs, srcs, bxs, losses = [], [], [], []
    for c in classes:
        members = torch.nonzero(labels == c)[:, 0]
        n_c = members.numel()
        gen = class_generator(seed, c)
        boxes = draw_crop_boxes(n_c * num_crop, height, width, scale, ratio, gen)
        owner = members.repeat_interleave(num_crop)  # crop r of image i at row i·num_crop + r
        ce = torch.empty(n_c * num_crop, dtype=torch.float32)
        y = torch.full((batch_size,), c, dtype=torch.int64, device=images.device)
        for i in range(0, n_c * num_crop, batch_size):
            crops = crop_resize(images, owner[i:i + batch_size], boxes[i:i + batch_size],
                                (tile_h, tile_w))
            x = pad_center(normalize(crops), height, width)
            ce[i:i + batch_size] = score_crops(x, y[:x.shape[0]], observer, batch_size).cpu()
        per_image = ce.view(n_c, num_crop)
        best = per_image.argmin(dim=1)  # first crop on ties
        best_ce = per_image.gather(1, best[:, None])[:, 0]
        rank = torch.argsort(best_ce, stable=True)[:need]  # pool order on ties
        chosen = rank * num_crop + best[rank]  # crop rows, rank order
        # rank k·ipc + t → output t, tile k (RDED's mix_images)
        tile_rows = chosen.view(factor * factor, ipc).T  # [ipc, f²]
        canvas = torch.empty(ipc, channels, height, width, dtype=torch.uint8,
                             device=images.device)
        top = 0
        for i, th in enumerate(rows):
            left = 0
            for j, tw in enumerate(cols):
                r = tile_rows[:, i * factor + j]
                canvas[:, :, top:top + th, left:left + tw] = crop_resize(
                    images, owner[r.to(owner.device)], boxes[r], (th, tw))
                left += tw
            top += th
        outs.append(canvas.cpu())
        srcs.append(owner[tile_rows.to(owner.device)].cpu())
        bxs.append(boxes[tile_rows])
        losses.append(ce[tile_rows])
    n_out = len(classes) * ipc
    return RdedResult(
        images=torch.cat(outs).numpy() if outs else np.zeros((0, channels, height, width),
                                                                np.uint8),
        labels=np.repeat(np.asarray(classes, dtype=np.int64), ipc),
        sources=torch.cat(srcs).numpy().reshape(n_out, factor**2) if srcs else
        np.zeros((0, factor**2), np.int64),
        boxes=torch.cat(bxs).numpy() if bxs else np.zeros((0, factor**2, 4), np.int64),
        losses=torch.cat(losses).numpy() if losses else np.zeros((0, factor**2), np.float32))


def _rank_in_class(labels: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Each position of ``order`` (grouped by class) → its rank within its class."""
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    return np.arange(order.size) - starts


def _check_pool_args(labels: np.ndarray, mipc: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"pool: labels must be a 1-d integer array, got {labels.dtype} "
                        f"{labels.shape}")
    if int(mipc) != mipc or mipc < 1:
        raise SpecError(f"pool: mipc must be an integer >= 1, got {mipc!r}")
    return labels.astype(np.int64)


def random_pool(labels: np.ndarray, mipc: int, seed: int) -> np.ndarray:
    """RDED's pool: a seeded uniform ``mipc`` per class (all of a class with fewer), as
    sorted int64 indices into ``labels``."""
    labels = _check_pool_args(labels, mipc)
    keys = np.random.default_rng(seed).permutation(labels.size)
    order = np.lexsort((keys, labels))
    return np.sort(order[_rank_in_class(labels, order) < mipc])


def top_score_pool(labels: np.ndarray, scores: np.ndarray, mipc: int) -> np.ndarray:
    """CA2D's pool: per class the ``mipc`` highest ``scores`` (CAD: most uncertain first;
    ties to the lower index), as sorted int64 indices into ``labels``."""
    labels = _check_pool_args(labels, mipc)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != labels.shape:
        raise DataError(f"pool: {scores.size} scores for {labels.size} labels")
    if not np.isfinite(scores).all():
        raise DataError(f"pool: {int((~np.isfinite(scores)).sum())} non-finite scores")
    order = np.lexsort((np.arange(labels.size), -scores, labels))
    return np.sort(order[_rank_in_class(labels, order) < mipc])
