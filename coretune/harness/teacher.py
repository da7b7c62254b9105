"""The teacher: trained once on the full training split with hard labels, then cached.

Soft labels (fixed) are the teacher's logits on each un-augmented training image; online
KD uses its logits on each augmented view, served by :class:`TeacherService` (wrapped as a
named Ray actor by the sweep driver). Soft-label paper, Sec. 3 and Eq. 4–6.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from coretune.harness.artifacts import (
    Artifact,
    ArtifactStore,
    content_key,
    torch_state_bytes,
    torch_state_from_bytes,
)
from coretune.harness.augment import augment_views
from coretune.harness.data import ImageDataset, to_device
from coretune.harness.losses import LossConfig
from coretune.harness.models import build_model
from coretune.harness.train import TrainRecipe, evaluate, predict_logits, train_model


def teacher_key(dataset: str, seed: int, recipe: TrainRecipe) -> str:
    """Content key of the teacher for (dataset, arch, seed, recipe)."""
    return content_key("teacher", {"dataset": dataset, "seed": seed, "recipe": recipe.as_dict()})


def train_teacher(ds: ImageDataset, seed: int, recipe: TrainRecipe, device: str = "cpu"):
    """Train the teacher on all of ``ds``'s training split; returns (arrays, meta, blobs)."""
    data = to_device(ds, device)
    torch.manual_seed(seed)
    model = build_model(recipe.arch, ds.input_shape, ds.num_classes).to(data.device)
    result = train_model(model, data, np.arange(len(ds.train_y)), LossConfig("hard"),
                         recipe.optim, recipe.budget, seed)
    train_logits = predict_logits(model, data, data.train_x).cpu().numpy()
    metrics = evaluate(model, data)
    meta = {"dataset": ds.name, "arch": recipe.arch, "seed": seed, "recipe": recipe.as_dict(),
            "test_acc": metrics["test_acc"], "test_metrics": metrics,
            "train_acc": float((train_logits.argmax(1) == ds.train_y).mean()),
            "train_seconds": result.seconds}
    return ({"train_logits": train_logits.astype(np.float32)}, meta,
            {"state_dict": torch_state_bytes(model.state_dict())})


def get_teacher(store: ArtifactStore, ds: ImageDataset, seed: int, recipe: TrainRecipe,
                device: str = "cpu") -> tuple[Artifact, bool]:
    """The cached teacher, trained now if absent. Returns (artifact, trained_now)."""
    return store.get_or_compute(teacher_key(ds.name, seed, recipe),
                                lambda: train_teacher(ds, seed, recipe, device))


class TeacherService:
    """Serves a teacher's logits: fixed per image, or per replayable augmented view.

    View logits are computed once per (seed, epoch, index) and cached (float16, LRU
    bounded by ``cache_bytes``), so trials that replay the same views share them.
    """

    def __init__(self, ds: ImageDataset, store_root: str, key: str, device: str = "cpu",
                 cache_bytes: int = 2 << 30):
        art = ArtifactStore(store_root).load(key)
        self.key = art.key
        self.data = to_device(ds, device)
        self.model = build_model(art.meta["recipe"]["arch"], ds.input_shape, ds.num_classes)
        self.model.load_state_dict(torch_state_from_bytes(art.blob("state_dict")))
        self.model.to(self.data.device).eval()
        self.train_logits = art.array("train_logits")
        self.test_acc = float(art.meta["test_acc"])
        self.cache_bytes = cache_bytes
        self._views: OrderedDict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self.views_computed = 0
        self.views_served = 0

    def info(self) -> dict:
        return {"key": self.key, "test_acc": self.test_acc,
                "views_computed": self.views_computed, "views_served": self.views_served}

    def soft_labels(self, indices: np.ndarray, tau: float) -> np.ndarray:
        """softmax(z_teacher / τ) of the un-augmented images at ``indices``."""
        z = torch.as_tensor(self.train_logits[np.asarray(indices)]) / tau
        return torch.softmax(z, dim=1).numpy()

    def _slot(self, seed: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = (seed, epoch)
        if key not in self._views:
            n, k = self.train_logits.shape
            self._views[key] = (torch.zeros(n, k, dtype=torch.float16),
                                torch.zeros(n, dtype=torch.bool))
            while len(self._views) > 1 and len(self._views) * n * (k * 2 + 1) > self.cache_bytes:
                self._views.popitem(last=False)
        self._views.move_to_end(key)
        return self._views[key]

    @torch.no_grad()
    def view_logits(self, seed: int, epochs: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """Teacher logits ``[E, n, K]`` of the views (seed, epoch, index) for each epoch."""
        idx = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(epochs), len(idx), self.train_logits.shape[1]), dtype=np.float32)
        aug = self.data.augment
        for e_pos, epoch in enumerate(np.asarray(epochs, dtype=np.int64)):
            cache, have = self._slot(seed, int(epoch))
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
        return out
