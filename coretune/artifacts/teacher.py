"""The teacher: trained once on the full training split with hard labels, then cached.

Soft labels (fixed) are the teacher's logits on each un-augmented training image; online
KD uses its logits on each augmented view, served by :class:`TeacherService` (wrapped as a
named Ray actor by the sweep driver). Soft-label paper, Sec. 3 and Eq. 4–6.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from coretune.artifacts.graph import BuildContext, register_artifact
from coretune.artifacts.store import (
    Artifact,
    ArtifactStore,
    Built,
    torch_state_bytes,
    torch_state_from_bytes,
)
from coretune.spec import AugmentSpec, RecipeSpec, TrialSpec, canonical_json
from coretune.train.augment import augment_views, view_keys
from coretune.train.data import DeviceData, ImageDataset, to_device
from coretune.train.evaluate import evaluate, on_test_split, predict_logits
from coretune.train.labels import HardLabels
from coretune.train.loop import Hooks, TrainResult, init_model, train
from coretune.train.mixing import cutmix_boxes, epoch_partners, paste
from coretune.train.models import build_model
from coretune.train.topk import TopKLogits


def teacher_params(trial: TrialSpec) -> Mapping[str, Any] | None:
    """The teacher recipe of a trial whose label mode needs one (augment resolved)."""
    return None if trial.teacher is None else trial.teacher.key_dump()


def train_full(data: DeviceData, recipe: RecipeSpec, hooks: Hooks | None = None,
               labels: torch.Tensor | None = None) -> tuple[torch.nn.Module, TrainResult]:
    """Train ``recipe`` on the whole training split with hard labels (ground truth or given)."""
    model = init_model(recipe.arch, recipe.arch_args, tuple(data.train_x.shape[1:]),
                       data.num_classes, recipe.seed, data.device)
    result = train(model, data, np.arange(data.train_y.numel()),
                   HardLabels(data.train_y if labels is None else labels),
                   [on_test_split(data)], recipe.budget, recipe.optimizer, recipe.seed,
                   augment=recipe.augment, hooks=hooks)
    return model, result


@register_artifact("teacher", version=1, params=teacher_params, provides={"teacher"}, gpu=True,
                   recipes=("teacher",))
def build_teacher(ctx: BuildContext) -> Built:
    """Train the teacher on all of the training split with hard labels; cache its logits."""
    recipe = RecipeSpec.model_validate(ctx.params)
    ds = ctx.dataset
    data = to_device(ds, ctx.device)
    model, result = train_full(data, recipe)
    train_logits = predict_logits(model, data, data.train_x).cpu().numpy()
    metrics = evaluate(model, data)
    meta = {"dataset": ds.name, "arch": recipe.arch, "seed": recipe.seed,
            "recipe": recipe.model_dump(mode="json"), "test_acc": metrics["test_acc"],
            "test_metrics": metrics,
            "train_acc": float((train_logits.argmax(1) == ds.train_y).mean()),
            "train_seconds": result.seconds}
    return Built({"train_logits": train_logits.astype(np.float32)}, meta,
                 {"state_dict": torch_state_bytes(model.state_dict())})


def teacher_model(art: Artifact, ds: ImageDataset, device: str | torch.device
                  ) -> torch.nn.Module:
    """The trained teacher of artifact ``art`` for ``ds``'s input shape, in eval mode."""
    recipe = art.meta["recipe"]
    model = build_model(recipe["arch"], ds.input_shape, ds.num_classes,
                        recipe.get("arch_args"))
    model.load_state_dict(torch_state_from_bytes(art.blob("state_dict")))
    return model.to(device).eval()


class TeacherService:
    """Serves a teacher's logits: fixed per image, or per replayable augmented view.

    View logits are computed once per (seed, epoch, index) and cached (float16, LRU
    bounded by ``cache_bytes``), so trials that replay the same views share them. A CutMix
    view also depends on its partner (:mod:`coretune.train.mixing`): its entry is keyed by
    (seed, epoch, index, partner index), one entry per (seed, epoch, index) — a request
    for another partner (a student with another coreset) computes its own view and
    replaces the entry.
    """

    def __init__(self, ds: ImageDataset, store_uri: str, key: str, device: str = "cpu",
                 cache_bytes: int = 2 << 30, relabel: bool = False):
        art = ArtifactStore(store_uri).load(key)
        self.key = art.key
        self.data = to_device(ds, device)
        self.model = teacher_model(art, ds, self.data.device)
        if relabel:  # images the teacher did not train on (a synthetic set): label them
            with torch.no_grad():
                self.train_logits = predict_logits(self.model, self.data,
                                                   self.data.train_x).cpu().numpy()
        else:
            self.train_logits = art.array("train_logits")
        self.test_acc = float(art.meta["test_acc"])
        self.cache_bytes = cache_bytes
        self._views: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self.views_computed = 0
        self.views_served = 0

    def info(self) -> dict:
        return {"key": self.key, "test_acc": self.test_acc,
                "views_computed": self.views_computed, "views_served": self.views_served}

    def soft_labels(self, indices: np.ndarray, tau: float) -> np.ndarray:
        """softmax(z_teacher / τ) of the un-augmented images at ``indices``."""
        z = torch.as_tensor(self.train_logits[np.asarray(indices)]) / tau
        return torch.softmax(z, dim=1).numpy()

    def _slot(self, seed: int, epoch: int, aug: AugmentSpec
              ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """The cache of (seed, epoch, augmentation): logits, computed flags, partners."""
        key = (seed, epoch, aug.pad, aug.flip, canonical_json(aug.ops),
               None if aug.cutmix is None else canonical_json(aug.cutmix.key_dump()))
        if key not in self._views:
            n, k = self.train_logits.shape
            self._views[key] = (torch.zeros(n, k, dtype=torch.float16),
                                torch.zeros(n, dtype=torch.bool), np.full(n, -1, np.int64))
            while (len(self._views) > 1
                   and len(self._views) * n * (k * 2 + 9) > self.cache_bytes):
                self._views.popitem(last=False)
        self._views.move_to_end(key)
        return self._views[key]

    def _partners(self, seed: int, epoch: int, idx: np.ndarray, aug: AugmentSpec,
                  batch_size: int | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Each view's CutMix partner (a dataset index; −1: not mixed) and box, as the
        student with coreset ``idx`` and ``batch_size`` mixes its batches in ``epoch``."""
        if aug.cutmix is None:
            return np.full(len(idx), -1, np.int64), None
        if batch_size is None:
            raise ValueError("CutMix views need the student's batch size (batch_size=)")
        h, w = self.data.train_x.shape[-2:]
        boxes = cutmix_boxes(view_keys(seed, epoch, idx), h, w, aug.cutmix)
        mixed = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return np.where(mixed, idx[epoch_partners(seed, epoch, len(idx), batch_size)], -1), boxes

    def views(self, seed: int, epoch: int, indices: np.ndarray,
              augment: AugmentSpec | None = None, batch_size: int | None = None
              ) -> torch.Tensor:
        """The uint8 views ``[n, C, H, W]`` that :meth:`view_logits` labels for a student with
        coreset ``indices`` (in order) in ``epoch``: the images it trains on, less noise."""
        idx = np.asarray(indices, dtype=np.int64)
        aug = self.data.augment if augment is None else augment
        return self._views_of(seed, epoch, idx, *self._partners(seed, epoch, idx, aug,
                                                                batch_size), aug)

    def _views_of(self, seed: int, epoch: int, idx: np.ndarray, partner: np.ndarray,
                  boxes: np.ndarray | None, aug: AugmentSpec) -> torch.Tensor:
        """The views (seed, epoch, ``idx``), each CutMix-ed with its ``partner``'s view in
        its box where ``partner >= 0``: what the student's loop makes of them."""
        dev = self.data.device
        views = augment_views(self.data.train_x[torch.as_tensor(idx, device=dev)], seed, epoch,
                              idx, aug)
        mixed = np.flatnonzero(partner >= 0)
        if boxes is not None and len(mixed):
            other = partner[mixed]
            views = views.clone()
            views[torch.as_tensor(mixed, device=dev)] = paste(
                views[torch.as_tensor(mixed, device=dev)],
                augment_views(self.data.train_x[torch.as_tensor(other, device=dev)], seed,
                              epoch, other, aug), boxes[mixed])
        return views

    @torch.no_grad()
    def view_logits(self, seed: int, epochs: np.ndarray, indices: np.ndarray,
                    augment: AugmentSpec | None = None, topk: int | None = None,
                    batch_size: int | None = None) -> np.ndarray | TopKLogits:
        """Teacher logits ``[E, n, K]`` of the views (seed, epoch, index) for each epoch.

        Views are the crops, flips and ops of ``augment`` (the dataset's default if None), as the
        student sees them; input noise is the student's own and is not applied here. ``topk``
        sends only each view's top-k logits (:class:`~coretune.train.topk.TopKLogits`, FKD):
        k·(2 + 2) + 4 bytes a view instead of 4·K. With ``augment.cutmix``, ``indices`` are
        the student's coreset in order and ``batch_size`` its optimiser's: the service
        rebuilds its batches (:func:`~coretune.train.mixing.epoch_partners`) and labels
        each view mixed with its partner, as the student trains on it.
        """
        idx = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(epochs), len(idx), self.train_logits.shape[1]), dtype=np.float32)
        aug = self.data.augment if augment is None else augment
        t_idx = torch.as_tensor(idx)
        for e_pos, epoch in enumerate(np.asarray(epochs, dtype=np.int64).tolist()):
            cache, have, partner_of = self._slot(seed, epoch, aug)
            partner, boxes = self._partners(seed, epoch, idx, aug, batch_size)
            fresh = ~(have[t_idx].numpy() & (partner_of[idx] == partner))
            got = cache[t_idx].float().numpy()
            if fresh.any():
                miss = np.flatnonzero(fresh)
                views = self._views_of(seed, epoch, idx[miss], partner[miss],
                                       None if boxes is None else boxes[miss], aug)
                logits = predict_logits(self.model, self.data, views).cpu().to(torch.float16)
                cache[idx[miss]] = logits
                have[idx[miss]] = True
                partner_of[idx[miss]] = partner[miss]
                got[miss] = logits.float().numpy()
                self.views_computed += len(miss)
            out[e_pos] = got
            self.views_served += len(idx)
        return out if topk is None else TopKLogits.compress(torch.from_numpy(out), topk)
