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
from coretune.train.augment import augment_views
from coretune.train.data import DeviceData, ImageDataset, to_device
from coretune.train.evaluate import evaluate, on_test_split, predict_logits
from coretune.train.labels import HardLabels
from coretune.train.loop import Hooks, TrainResult, init_model, train
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
    bounded by ``cache_bytes``), so trials that replay the same views share them.
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

    def _slot(self, seed: int, epoch: int, aug: AugmentSpec) -> tuple[torch.Tensor, torch.Tensor]:
        key = (seed, epoch, aug.pad, aug.flip, canonical_json(aug.ops))
        if key not in self._views:
            n, k = self.train_logits.shape
            self._views[key] = (torch.zeros(n, k, dtype=torch.float16),
                                torch.zeros(n, dtype=torch.bool))
            while len(self._views) > 1 and len(self._views) * n * (k * 2 + 1) > self.cache_bytes:
                self._views.popitem(last=False)
        self._views.move_to_end(key)
        return self._views[key]

    @torch.no_grad()
    def view_logits(self, seed: int, epochs: np.ndarray, indices: np.ndarray,
                    augment: AugmentSpec | None = None,
                    topk: int | None = None) -> np.ndarray | TopKLogits:
        """Teacher logits ``[E, n, K]`` of the views (seed, epoch, index) for each epoch.

        Views are the crops, flips and ops of ``augment`` (the dataset's default if None), as the
        student sees them; input noise is the student's own and is not applied here. ``topk``
        sends only each view's top-k logits (:class:`~coretune.train.topk.TopKLogits`, FKD):
        k·(2 + 2) + 4 bytes a view instead of 4·K.
        """
        idx = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(epochs), len(idx), self.train_logits.shape[1]), dtype=np.float32)
        aug = self.data.augment if augment is None else augment
        for e_pos, epoch in enumerate(np.asarray(epochs, dtype=np.int64)):
            cache, have = self._slot(seed, int(epoch), aug)
            t_idx = torch.as_tensor(idx)
            missing = t_idx[~have[t_idx]]
            if missing.numel():
                dev_idx = missing.to(self.data.device)
                views = augment_views(self.data.train_x[dev_idx], seed, int(epoch),
                                      missing.numpy(), aug)
                logits = predict_logits(self.model, self.data, views)
                cache[missing] = logits.cpu().to(torch.float16)
                have[missing] = True
                self.views_computed += missing.numel()
            out[e_pos] = cache[t_idx].float().numpy()
            self.views_served += len(idx)
        return out if topk is None else TopKLogits.compress(torch.from_numpy(out), topk)
