"""The ``synthetic_set`` kind: a distilled set (RDED, CA2D, or one read from a file) built
once and trained on like a coreset — a dataset of its own to the rest of coretune.

A synthetic-set method is registered like a selector, with ``synthesizes=True``
(:mod:`coretune.selectors.synthesis`), so a sweep lists it under ``selectors:`` beside the
coresets it is compared with, sized by ``ipcs:`` (Dey et al., CVPR 2026, "Rethinking
Dataset Distillation: Hard Truths about Soft Labels", arXiv 2604.18811: coresets and
distilled sets under the same labels and compute). Its needs become dependencies as a
selector's do (the teacher is RDED's observer; CA2D also reads CAD-Prune's compute-aligned
checkpoint scores, through the same proxy rule). The artifact holds the images (uint8),
their hard labels, any soft labels a file carries, and ``indices`` 0…n−1, so the driver's
generic selection code reads it like a coreset.

A student of a synthetic set (:func:`synthetic_dataset`) trains on its images, evaluates
on the original test (and validation) split, and normalises with the original training
split's statistics, as the teacher and the distillation literature do; its teacher labels
the synthetic images themselves (fixed logits recomputed on them, views of them for
online KD: Hard Truths replaces a distilled set's own labels by the teacher's, Sec. 3).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Annotated, Any

import numpy as np
import torch
from annotated_types import Ge, Interval

from coretune.artifacts.external_scores import file_digest
from coretune.artifacts.graph import BuildContext, Node, register_artifact
from coretune.artifacts.selection import consumer_view, selection_deps
from coretune.artifacts.store import Artifact, Built
from coretune.artifacts.teacher import teacher_model
from coretune.errors import DataError
from coretune.selectors import get_selector, register_selector
from coretune.selectors.compute_aware import cad_proxy, cad_scores, resolve_window
from coretune.selectors.synthesis import SynthesisContext, SyntheticImages
from coretune.spec import TrialSpec
from coretune.train.data import DeviceData, ImageDataset
from coretune.train.rded import RDED_SCALE, random_pool, rded_select, top_score_pool
from coretune.train.synthetic_file import load_synthetic_npz

RDED_PAPER = ("Sun, Shi, Liu, Wu, Zhao, Li, On the Diversity and Realism of Distilled "
              "Dataset: An Efficient Dataset Distillation Paradigm (RDED), CVPR 2024, "
              "arXiv 2312.03526")
CA2D_PAPER = ("Dey, Sahdev, Bhati, Mopuri, Babu, Rethinking Dataset Distillation: Hard "
              "Truths about Soft Labels, CVPR 2026, arXiv 2604.18811, Sec. 5: CA2D")

Fraction = Annotated[float, Interval(gt=0, le=1)]


def _is_synthetic(trial: TrialSpec) -> bool:
    return get_selector(trial.selector).synthesizes


def synthetic_params(trial: TrialSpec) -> Mapping[str, Any] | None:
    """The method, its arguments (a file by its SHA-256, never its path), the images per
    class and the seed (its crop draws); None for a coreset trial."""
    if not _is_synthetic(trial):
        return None
    args = dict(trial.selector_args)
    if args.get("path"):
        args["path"] = "sha256:" + file_digest(args["path"], "path")
    params = {"method": trial.selector, "args": args, "ipc": trial.ipc, "seed": trial.seed}
    version = get_selector(trial.selector).version
    return params if version == 1 else {**params, "method_version": version}


def synthetic_local(trial: TrialSpec) -> Mapping[str, Any]:
    path = trial.selector_args.get("path") if _is_synthetic(trial) else None
    return {"path": path} if path else {}


def _read_file(path: str, shape: tuple[int, ...], num_classes: int, ipc: int
               ) -> SyntheticImages:
    """A distilled set's ``.npz`` checked against the dataset's image ``shape`` and classes
    and against ``ipc`` (exactly that many images of every class)."""
    c, h, w = shape
    got = load_synthetic_npz(path, channels=c, height=h, width=w, num_classes=num_classes,
                             field="selectors.args.path")
    counts = np.bincount(got.labels, minlength=num_classes)
    if not (counts == ipc).all():
        raise DataError(f"selectors.args.path: {path} holds {counts.min()}–{counts.max()} "
                        f"images per class, not the {ipc} of its ipcs: entry")
    return SyntheticImages(got.images, got.labels, got.soft_labels, {"sha256": got.sha256})


def check_synthetic_file(node: Node, dataset: ImageDataset) -> None:
    """A method that reads a file gets it checked when the sweep is planned, before Ray."""
    if "path" not in get_selector(node.params["method"]).parameters():
        return
    if not node.local.get("path"):
        raise DataError(f"selectors.args.path: {node.params['method']} needs the path of "
                        "an .npz")
    if len(dataset.train_y):  # a dry run without the data checks the file when it runs
        _read_file(node.local["path"], dataset.input_shape, dataset.num_classes,
                   int(node.params["ipc"]))


def synthetic_dataset(base: ImageDataset, art: Artifact) -> ImageDataset:
    """The set as a dataset: its images and labels for training, ``base``'s test and
    validation splits, ``base``'s normalisation; fingerprinted by the artifact's key."""
    return ImageDataset(base.name, art.array("images"), art.array("labels"), base.test_x,
                        base.test_y, base.num_classes, base.augment, base.val_x, base.val_y,
                        fingerprint=art.key, stats=(base.mean, base.std),
                        full_size=len(base.train_y))


@register_artifact("synthetic_set", version=1, params=synthetic_params, deps=selection_deps,
                   provides={"synthetic_set"}, local=synthetic_local,
                   check=check_synthetic_file, gpu=True)
def build_synthetic_set(ctx: BuildContext) -> Built:
    """Run the method on the training split (with its needs built), check what it made:
    uint8 images of the dataset's shape, exactly ``ipc`` of every class."""
    p, ds = ctx.params, ctx.dataset
    started = time.perf_counter()
    observer = None  # the pool's images move to the device inside the method, not all
    if "teacher" in ctx.deps:
        observer = teacher_model(ctx.deps["teacher"], ds, ctx.device)
    artifacts = {need: consumer_view(need, art) for need, art in ctx.deps.items()
                 if need != "teacher"}
    sctx = SynthesisContext(ds.train_x, ds.train_y, ds.num_classes, int(p["seed"]), artifacts,
                            observer, DeviceData.normalizer(ds, ctx.device), ctx.device,
                            ctx.local)
    args = {**p["args"], **ctx.local}
    made: SyntheticImages = get_selector(p["method"]).fn(sctx, int(p["ipc"]), **args)
    images, labels = np.asarray(made.images), np.asarray(made.labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=ds.num_classes)
    if images.dtype != np.uint8 or images.shape[1:] != ds.train_x.shape[1:] or \
            len(images) != len(labels) or not (counts == int(p["ipc"])).all():
        raise RuntimeError(f"synthetic set {p['method']!r} made {images.dtype} images of "
                           f"shape {images.shape} with {counts.min()}–{counts.max()} per "
                           f"class; expected uint8 [.., {ds.train_x.shape[1:]}], {p['ipc']} "
                           "per class")
    arrays = {"images": images, "labels": labels, "indices": np.arange(len(labels))}
    if made.soft_labels is not None:
        arrays["soft_labels"] = np.asarray(made.soft_labels, dtype=np.float32)
    if made.sources is not None:
        arrays["sources"] = np.asarray(made.sources, dtype=np.int64)
    meta = {**p, "dataset": ds.name, "n": int(len(labels)),
            "select_seconds": time.perf_counter() - started, **dict(made.meta or {})}
    return Built(arrays, meta)


# ------------------------------------------------------------------------- the methods
def _rded(ctx: SynthesisContext, ipc: int, pool: np.ndarray, factor: int, num_crop: int,
          min_scale: float) -> SyntheticImages:
    dev = torch.device(ctx.device)
    result = rded_select(torch.as_tensor(ctx.images[pool], device=dev), ctx.labels[pool],
                         ctx.observer, ctx.normalize, ipc=ipc, factor=factor,
                         num_crop=num_crop, scale=(min_scale, RDED_SCALE[1]), seed=ctx.seed,
                         device=dev)
    return SyntheticImages(result.images, result.labels, meta={
        "pool_size": int(pool.size), "mean_crop_loss": float(np.mean(result.losses))},
        sources=pool[np.asarray(result.sources)])


@register_selector("rded", needs={"teacher"}, paper=RDED_PAPER, synthesizes=True)
def rded(ctx: SynthesisContext, ipc: int, mipc: Annotated[int, Ge(1)] = 300,
         factor: Annotated[int, Ge(1)] = 1, num_crop: Annotated[int, Ge(1)] = 5,
         min_scale: Fraction = RDED_SCALE[0]) -> SyntheticImages:
    """RDED (Sun et al., CVPR 2024, Sec. 3.2–3.3): per class a random pool of ``mipc``
    images; ``num_crop`` random-resized crops of each scored by the teacher (the observer)
    by cross-entropy on the true label; each image's best crop, then the ipc·factor²
    lowest-loss crops, stitched factor × factor (:mod:`coretune.train.rded`). Defaults:
    RDED's mipc 300 and 5 crops; factor 1 (Hard Truths' CIFAR setting; RDED's ImageNet
    default is 2). Cost: mipc·num_crop observer forwards per class."""
    return _rded(ctx, ipc, random_pool(ctx.labels, mipc, ctx.seed), factor, num_crop,
                 min_scale)


@register_selector("ca2d", needs={"teacher", "checkpoint_scores"}, paper=CA2D_PAPER,
                   proxy=cad_proxy, synthesizes=True)
def ca2d(ctx: SynthesisContext, ipc: int, mipc: Annotated[int, Ge(1)] = 300,
         factor: Annotated[int, Ge(1)] = 1, num_crop: Annotated[int, Ge(1)] = 5,
         min_scale: Fraction = RDED_SCALE[0],
         last_windows: Annotated[int, Ge(1)] = 2) -> SyntheticImages:
    """CA2D (Hard Truths, Sec. 5): RDED whose per-class pool is the ``mipc`` samples of
    highest CAD — CAD-Prune's compute-aware difficulty from a scoring run of the students'
    compute (:mod:`coretune.selectors.compute_aware`, the same proxy rule, so CA2D and
    CAD-Prune of one compute share the run). Window J as CAD-Prune's default. Cost: that
    run plus RDED's."""
    scores = ctx.artifacts["checkpoint_scores"]
    cad = cad_scores(scores.trajectory("p_true"),
                     resolve_window(scores.points, None, last_windows), last_windows)
    return _rded(ctx, ipc, top_score_pool(ctx.labels, cad, mipc), factor, num_crop,
                 min_scale)


@register_selector("from_file", paper="a distilled set from any method (SRe2L, RDED, DATM, "
                   "…) as an .npz: images [n, C, H, W] uint8, labels [n], soft_labels "
                   "[n, K] optional", synthesizes=True)
def from_file(ctx: SynthesisContext, ipc: int, path: str = "") -> SyntheticImages:
    """The ``.npz`` at ``path`` (checked when planned: shape, classes, ``ipc`` per class;
    nothing is unpickled). Its soft labels are kept with the set; the ``soft`` and ``kd``
    label modes relabel its images with the sweep's teacher, as Hard Truths does."""
    return _read_file(path, ctx.images.shape[1:], ctx.num_classes, ipc)
