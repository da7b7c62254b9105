"""Batch-level augmentation (CutMix) and the one batch order every consumer replays.

**Batches.** A student's epoch is a permutation of its coreset positions
(:func:`epoch_order`, a generator of (seed, epoch)) cut into batches of ``bs`` positions,
the last batch taking the rest (:func:`batch_bounds`, :func:`batch_slice`). The training
loop, the fused students and the teacher service all call these functions, so the service
can rebuild any student's batches from (seed, epoch, coreset size, batch size).

**CutMix** (Yun et al., ICCV 2019) as the SL+KD protocol of SRe2L, RDED and FKD evaluates
distilled data (RDED's ``validation/utils.py``, SRe2L's ``relabel/utils_fkd.py``): after
the per-view augmentation, a box of a partner view is pasted into each view, and the
teacher labels the mixed image. Here:

- the partner of batch position j is position (j + r) mod B of the same batch, with one
  roll r ∈ [1, B − 1] per (seed, epoch, batch) (:func:`batch_rolls`; B = 1: r = 0, the
  view is its own partner). So a mixed view is a pure function of (seed, epoch, index,
  partner index) and the teacher service caches it under that key;
- per view, from its key (:func:`cutmix_boxes`): applied with probability ``p``;
  λ ~ Beta(α, α) by the inverse CDF (``scipy.special.betaincinv``) of a key uniform; the
  box as the references' ``rand_bbox``: cut = √(1 − λ), ``cut_h = int(H·cut)``,
  ``cut_w = int(W·cut)``, a uniform centre (cy, cx), rows ``[cy − cut_h//2, cy + cut_h//2)``
  and columns likewise, clipped to the image (so the area is 1 − λ up to the truncation
  and the clipping);
- :class:`BatchMix` carries each view's partner and the share ``keep`` of its own pixels
  after clipping, exactly: hard-label terms become keep·CE(y) + (1 − keep)·CE(y_partner)
  (CutMix's label, with the area correction of timm's ``correct_lam``); the teacher's
  output on the mixed image needs nothing (it saw the mixed image).

Deviations from the references, each so that a view stays replayable per view: they draw
one λ and one box per batch from the global RNG and pair by ``randperm`` (a view may be
its own partner); here λ, the box and whether to mix are drawn per view from its key
(timm's per-element mode) and pairs come from a roll (never the view itself for B ≥ 2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import betaincinv
from torch import Tensor

from coretune.spec import CutMixSpec
from coretune.train.augment import host_to_device, key_uniforms, view_keys

_ROLL_SALT = 0x6A09E667F3BCC909
_MIX_SALT = 0xBB67AE8584CAA73B


# ---------------------------------------------------------------------------- batch order
def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of a student's batch order in ``epoch``."""
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**63 - 1)


def epoch_order(seed: int, epoch: int, n: int) -> Tensor:
    """The order (a permutation of coreset positions ``0 … n−1``, int64 on the CPU) in which
    a student of ``seed`` visits its ``n`` samples in ``epoch``."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))


def batch_bounds(n: int, batch_size: int) -> tuple[int, int]:
    """(batch size, batches per epoch) over ``n`` samples: the batch clamped to ``n``; an
    epoch's last batch never holds a single sample (BatchNorm cannot train on one): when
    ``n % bs == 1`` that sample joins the batch before it."""
    bs = max(1, min(batch_size, n))
    return bs, math.ceil(n / bs) - (1 if n > 1 and n % bs == 1 else 0)


def batch_slice(b: int, bs: int, spe: int, n: int) -> slice:
    """The positions of ``epoch_order`` that batch ``b`` of an epoch holds."""
    return slice(b * bs, (b + 1) * bs if b < spe - 1 else n)


# ---------------------------------------------------------------------------- CutMix draws
def batch_rolls(seeds: Sequence[int], epoch: int, batch: int, size: int) -> np.ndarray:
    """The roll r ∈ [1, size − 1] of batch ``batch`` of ``epoch`` for each student seed
    (int64 ``[K]``; 0 for a batch of one)."""
    if size < 2:
        return np.zeros(len(seeds), dtype=np.int64)
    keys = np.concatenate([view_keys(int(s), epoch, np.asarray([batch], dtype=np.uint64))
                           for s in seeds])
    u = key_uniforms(keys, 1, _ROLL_SALT)[:, 0]
    return 1 + np.minimum(np.floor(u * (size - 1)), size - 2).astype(np.int64)


def cutmix_lambdas(keys: np.ndarray, spec: CutMixSpec) -> tuple[np.ndarray, np.ndarray]:
    """(applied, λ) of each view key: applied with probability ``p``, λ ~ Beta(α, α)
    (1 where not applied)."""
    return _lambdas(key_uniforms(keys, 4, _MIX_SALT), spec)


def _lambdas(u: np.ndarray, spec: CutMixSpec) -> tuple[np.ndarray, np.ndarray]:
    on = u[:, 0] < spec.p
    return on, np.where(on, betaincinv(spec.alpha, spec.alpha, u[:, 1]), 1.0)


def cutmix_boxes(keys: np.ndarray, height: int, width: int, spec: CutMixSpec) -> np.ndarray:
    """Each view's pasted box (top, left, bottom, right), int64 ``[B, 4]``, bottom and right
    exclusive (an empty box where CutMix is not applied): ``rand_bbox`` of the references."""
    u = key_uniforms(keys, 4, _MIX_SALT)  # applied, λ, centre row, centre column
    on, lam = _lambdas(u, spec)
    cut = np.sqrt(1.0 - lam)
    half_h = np.floor(height * cut).astype(np.int64) // 2
    half_w = np.floor(width * cut).astype(np.int64) // 2
    cy = np.minimum(np.floor(u[:, 2] * height), height - 1).astype(np.int64)
    cx = np.minimum(np.floor(u[:, 3] * width), width - 1).astype(np.int64)
    box = np.stack([np.clip(cy - half_h, 0, height), np.clip(cx - half_w, 0, width),
                    np.clip(cy + half_h, 0, height), np.clip(cx + half_w, 0, width)], axis=1)
    return np.where(on[:, None], box, 0)


def box_keep(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """The share of each view's own pixels a box leaves (float64 ``[B]``, exact)."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return 1.0 - area / float(height * width)


def paste(views: Tensor, partner_views: Tensor, boxes: np.ndarray) -> Tensor:
    """``views`` with each host ``boxes`` row's pixels taken from ``partner_views`` (uint8
    ``[B, C, H, W]``, any device): a selection, exact, each row its own."""
    box = host_to_device(boxes, views.device)
    h, w = views.shape[-2:]
    rows = torch.arange(h, device=views.device)
    cols = torch.arange(w, device=views.device)
    in_rows = (rows >= box[:, 0:1]) & (rows < box[:, 2:3])  # [B, H]
    in_cols = (cols >= box[:, 1:2]) & (cols < box[:, 3:4])  # [B, W]
    return torch.where(in_rows[:, None, :, None] & in_cols[:, None, None, :],
                       partner_views, views)


@dataclass(frozen=True)
class BatchMix:
    """How a batch was mixed: each view's ``partner`` (its position in the same batch,
    int64) and ``keep``, the share of its own pixels (float32); ``[B]``, or ``[K, B]`` for
    the K students of a fused batch (:meth:`row` takes one student's)."""

    partner: Tensor
    keep: Tensor

    def row(self, j: int) -> BatchMix:
        return BatchMix(self.partner[j], self.keep[j])

    def mix_rows(self, rows: Tensor) -> Tensor:
        """keep·rows + (1 − keep)·rows[partner] of per-view target rows ``[B, K]``."""
        keep = self.keep[:, None]
        return keep * rows + (1.0 - keep) * rows[self.partner]

    def targets(self, labels: Tensor, num_classes: int) -> Tensor:
        """The mixed one-hot targets ``[B, K]`` of integer ``labels`` ``[B]``: their
        cross-entropy is keep·CE(y) + (1 − keep)·CE(y_partner)."""
        return self.mix_rows(torch.nn.functional.one_hot(labels.long(), num_classes).float())


def mix_batches(views: Tensor, keys: np.ndarray, seeds: Sequence[int], epoch: int, batch: int,
                spec: CutMixSpec) -> tuple[Tensor, BatchMix]:
    """CutMix the batches of K students: ``views`` uint8 ``[K·B, C, H, W]`` (student-major),
    ``keys`` their view keys ``[K, B]``, ``seeds`` the students'; each view's partner is
    in its own student's batch. Returns the mixed views and the ``[K, B]`` mix."""
    k, size = keys.shape
    h, w = views.shape[-2:]
    boxes = cutmix_boxes(keys.reshape(-1), h, w, spec)
    rolls = batch_rolls(seeds, epoch, batch, size)
    partner = (np.arange(size)[None, :] + rolls[:, None]) % size  # [K, B]
    flat = (partner + np.arange(k)[:, None] * size).reshape(-1)
    mixed = paste(views, views[host_to_device(flat, views.device)], boxes)
    keep = box_keep(boxes, h, w).astype(np.float32).reshape(k, size)
    return mixed, BatchMix(host_to_device(partner, views.device),
                           host_to_device(keep, views.device))


def epoch_partners(seed: int, epoch: int, n: int, batch_size: int) -> np.ndarray:
    """The partner (a coreset position) of each of ``n`` coreset positions in ``epoch`` of a
    student of ``seed`` with ``batch_size``: its batches rebuilt as the loop makes them."""
    order = epoch_order(seed, epoch, n).numpy()
    bs, spe = batch_bounds(n, batch_size)
    partner = np.arange(n)
    for b in range(spe):
        pos = order[batch_slice(b, bs, spe, n)]
        partner[pos] = np.roll(pos, -int(batch_rolls([seed], epoch, b, len(pos))[0]))
    return partner


__all__ = ["BatchMix", "batch_bounds", "batch_rolls", "batch_slice", "box_keep",
           "cutmix_boxes", "cutmix_lambdas", "epoch_order", "epoch_partners", "epoch_seed",
           "mix_batches", "paste"]
