"""Dataset registry: real image datasets as uint8 arrays, moved once to a trial's device.

Every dataset is held as ``uint8[N, C, H, W]`` images plus ``int64[N]`` labels for a fixed
train and test split. A dataset is one module of :mod:`coretune.train.datasets` with one
``@register_dataset`` on a loader that returns the raw :class:`Splits`; its class count
and default augmentation are said once, in the registration, and :func:`load_dataset`
builds the :class:`ImageDataset` from them. Nothing is downloaded unless the caller asks
(``download=True``); a missing dataset raises :class:`DatasetMissingError` naming the path
looked at and how to provide it.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from coretune.errors import DataError, DataMissingError, SpecError, UnknownNameError
from coretune.registry import Registry, origin_of
from coretune.spec import AugmentSpec, DataSpec

DATA_ROOT_ENV = "CORETUNE_DATA"


class DatasetMissingError(DataMissingError):
    """A registered dataset whose files are not where we looked."""


class UnknownDatasetError(UnknownNameError):
    """A dataset name that is not registered."""


class Splits(NamedTuple):
    """What a loader returns: uint8 ``[N, C, H, W]`` images and int64 labels per split."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


@dataclass(frozen=True)
class ImageDataset:
    """A train/test split of uint8 images with integer labels."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    augment: AugmentSpec
    val_x: np.ndarray | None = field(default=None, repr=False)
    val_y: np.ndarray | None = field(default=None, repr=False)
    fingerprint: str = ""
    #: (mean, std) to normalise with instead of the training images' own (a synthetic set
    #: keeps its dataset's, as the teacher was trained with them)
    stats: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    #: the full training split's size, when this one stands in for it (a synthetic set):
    #: what ``full_epochs`` budgets count
    full_size: int | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    @property
    def mean(self) -> np.ndarray:
        """Per-channel mean of the training images in [0, 1]."""
        if self.stats is not None:
            return self.stats[0]
        return self.train_x.mean(axis=(0, 2, 3), dtype=np.float64) / 255.0

    @property
    def std(self) -> np.ndarray:
        """Per-channel std of the training images in [0, 1] (floored to avoid zero)."""
        if self.stats is not None:
            return self.stats[1]
        return np.maximum(self.train_x.std(axis=(0, 2, 3), dtype=np.float64) / 255.0, 1e-3)


@dataclass(frozen=True)
class DeviceData:
    """An :class:`ImageDataset` as tensors on one device; batches are sliced by index."""

    train_x: torch.Tensor  # uint8 [N, C, H, W]
    train_y: torch.Tensor  # int64 [N]
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: torch.Tensor  # float [1, C, 1, 1]
    std: torch.Tensor
    num_classes: int
    augment: AugmentSpec
    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None
    full_size: int | None = None  # see ImageDataset.full_size

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    @staticmethod
    def normalizer(ds: ImageDataset, device: str | torch.device
                   ) -> Callable[[torch.Tensor], torch.Tensor]:
        """``ds``'s normalisation on ``device`` without moving its images there."""
        dev = torch.device(device)
        mean, std = (torch.as_tensor(a, dtype=torch.float32, device=dev).view(1, -1, 1, 1)
                     for a in (ds.mean, ds.std))
        return lambda images_uint8: (images_uint8.float() / 255.0 - mean) / std

    @property
    def full_split_size(self) -> int:
        """The training split compute budgets in full-data epochs are counted against."""
        return int(self.train_y.numel()) if self.full_size is None else self.full_size

    def normalize(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 images → float, scaled to [0, 1] and standardised per channel."""
        return (images_uint8.float() / 255.0 - self.mean) / self.std


def to_device(ds: ImageDataset, device: str | torch.device = "cpu") -> DeviceData:
    """Move a dataset to ``device`` once; trials then slice it by index."""
    dev = torch.device(device)
    stat = lambda a: torch.as_tensor(a, dtype=torch.float32, device=dev).view(1, -1, 1, 1)  # noqa: E731
    labels = lambda a: None if a is None else torch.as_tensor(a, dtype=torch.int64, device=dev)  # noqa: E731
    return DeviceData(
        train_x=torch.as_tensor(ds.train_x, device=dev), train_y=labels(ds.train_y),
        test_x=torch.as_tensor(ds.test_x, device=dev), test_y=labels(ds.test_y),
        mean=stat(ds.mean), std=stat(ds.std), num_classes=ds.num_classes, augment=ds.augment,
        val_x=None if ds.val_x is None else torch.as_tensor(ds.val_x, device=dev),
        val_y=labels(ds.val_y), full_size=ds.full_size,
    )


#: ``loader(root, download, spec) -> Splits`` (train and test splits)
Loader = Callable[[Path | None, bool, DataSpec], Splits]


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset: its loader, where it is looked for, its class count and its
    default train-time augmentation (an :class:`AugmentSpec`, or a function of the
    :class:`DataSpec` where it depends on the split options, e.g. the decoded image size)."""

    name: str
    loader: Loader
    default_root: Callable[[Path | None], Path]
    num_classes: int
    augment: AugmentSpec | Callable[[DataSpec], AugmentSpec]
    test_fraction: float | None = None  # default split if there is no canonical test split
    #: the side images are decoded at when the spec sets no ``image_size`` (folder
    #: datasets); None: the files fix it and ``DataSpec.image_size`` is not read
    image_size: int | None = None

    def augment_for(self, spec: DataSpec) -> AugmentSpec:
        """The default augmentation of this dataset under ``spec``'s options."""
        return self.augment if isinstance(self.augment, AugmentSpec) else self.augment(spec)


DATASETS: Registry[DatasetInfo] = Registry("dataset", UnknownDatasetError)


def register_dataset(name: str, default_root: Callable[[Path | None], Path], num_classes: int,
                     augment: AugmentSpec | Callable[[DataSpec], AugmentSpec],
                     test_fraction: float | None = None, replace: bool = False,
                     image_size: int | None = None) -> Callable[[Loader], Loader]:
    """Register ``loader(root, download, spec) -> Splits`` under ``name`` (``image_size``:
    the default decoded side of a dataset that reads ``DataSpec.image_size``)."""

    def decorate(fn: Loader) -> Loader:
        DATASETS.add(name, DatasetInfo(name, fn, default_root, num_classes, augment,
                                       test_fraction, image_size), origin=origin_of(fn),
                     replace=replace)
        return fn

    return decorate


def available_datasets() -> list[str]:
    return DATASETS.names()


def dataset_info(name: str) -> DatasetInfo:
    return DATASETS.get(name)


def dataset_root(name: str, root: str | Path | None = None) -> Path:
    """Where dataset ``name`` is looked for (``root``, else ``$CORETUNE_DATA/<name>``, ...)."""
    return dataset_info(name).default_root(Path(root) if root else None)


def check_data_spec(spec: DataSpec) -> None:
    """Refuse split options a dataset cannot honour (names the field)."""
    info = dataset_info(spec.name)
    if spec.test_fraction is not None and info.test_fraction is None:
        raise SpecError(f"dataset {spec.name!r} has a canonical test split; "
                        f"test_fraction must be unset, got {spec.test_fraction}")


def stratified_split(labels: np.ndarray, fraction: float, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (kept, held-out) positions, ``fraction`` held out per class (scikit-learn).

    Where scikit-learn refuses — a class with a single member (a pseudo-label cluster of
    one), or fewer held-out samples than classes (a small split of many classes) — the
    ⌈fraction·N⌉ held-out samples are spread over the classes by their shares (largest
    remainders first, ties at random), every class keeping at least one sample."""
    from sklearn.model_selection import train_test_split

    try:
        keep, held = train_test_split(np.arange(len(labels)), test_size=fraction,
                                      stratify=labels, random_state=seed)
    except ValueError:
        keep, held = _spread_split(np.asarray(labels), fraction, seed)
    return np.sort(keep), np.sort(held)


def _spread_split(labels: np.ndarray, fraction: float, seed: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 0x5B117])
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    share = fraction * counts
    room = counts - 1  # every class keeps one
    take = np.minimum(np.floor(share).astype(np.int64), room)
    extra = math.ceil(fraction * len(labels)) - int(take.sum())
    for c in np.lexsort((rng.random(len(classes)), -(share - take))):
        if extra <= 0:
            break
        if take[c] < room[c]:
            take[c] += 1
            extra -= 1
    if not take.sum():
        raise DataError(f"a split holding out {fraction:g} of {len(labels)} samples in "
                        f"{len(classes)} classes holds out none: every class has one sample")
    held = np.concatenate([rng.permutation(np.flatnonzero(inverse == c))[:take[c]]
                           for c in range(len(classes))])
    return np.setdiff1d(np.arange(len(labels)), held), held


def noisy_labels(labels: np.ndarray, num_classes: int, noise) -> np.ndarray:
    """Labels with an exact ``rate`` share flipped (seeded): to a uniformly drawn other class
    (symmetric) or to the next class (pairwise), as in the noisy-label literature."""
    y = np.asarray(labels, dtype=np.int64).copy()
    rng = np.random.default_rng([noise.seed, 0xA015E])
    flip = rng.choice(y.size, int(round(noise.rate * y.size)), replace=False)
    if noise.kind == "pairwise":
        y[flip] = (y[flip] + 1) % num_classes
    else:
        y[flip] = (y[flip] + rng.integers(1, num_classes, flip.size)) % num_classes
    return y


def fingerprint(ds: ImageDataset) -> str:
    """Content hash of the splits (images and labels): what keys depend on, not the path."""
    h = hashlib.blake2b(digest_size=12)
    h.update(ds.name.encode())
    for arr in (ds.train_x, ds.train_y, ds.val_x, ds.val_y, ds.test_x, ds.test_y):
        if arr is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(arr)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return f"{ds.name}:{h.hexdigest()}"


def load_dataset(spec: DataSpec | str, root: str | Path | None = None,
                 download: bool = False) -> ImageDataset:
    """Load the dataset of ``spec`` (or a name) from ``root`` or its default location.

    Applies the spec's validation split and sets the content :func:`fingerprint`.
    """
    spec = DataSpec(name=spec) if isinstance(spec, str) else spec
    check_data_spec(spec)
    info = dataset_info(spec.name)
    splits = Splits(*info.loader(Path(root) if root else None, download, spec))
    check_splits(spec.name, splits, info.num_classes)
    ds = ImageDataset(spec.name, *splits, num_classes=info.num_classes,
                      augment=info.augment_for(spec))
    if spec.label_noise is not None:
        ds = replace(ds, train_y=noisy_labels(ds.train_y, ds.num_classes, spec.label_noise))
    if spec.val_fraction > 0:
        keep, held = stratified_split(ds.train_y, spec.val_fraction, spec.split_seed)
        ds = replace(ds, train_x=ds.train_x[keep], train_y=ds.train_y[keep],
                     val_x=ds.train_x[held], val_y=ds.train_y[held])
    return replace(ds, fingerprint=fingerprint(ds))


def check_splits(name: str, splits: Splits, num_classes: int) -> None:
    """Refuse splits that do not fit the registration: uint8 NCHW images, one int label per
    image, labels in ``[0, num_classes)``."""
    for split, x, y in (("train", splits.train_x, splits.train_y),
                        ("test", splits.test_x, splits.test_y)):
        if x.dtype != np.uint8 or x.ndim != 4 or len(x) != len(y):
            raise DataError(f"dataset {name!r}: {split} split has images {x.dtype} "
                            f"{tuple(x.shape)} for {len(y)} labels (want uint8 [N, C, H, W])")
        if len(y) and (int(np.min(y)) < 0 or int(np.max(y)) >= num_classes):
            raise DataError(f"dataset {name!r}: {split} labels outside [0, {num_classes})")


def env_root(name: str, fallback: Path | None = None) -> Callable[[Path | None], Path]:
    """Where dataset ``name`` is looked for: the given root, ``$CORETUNE_DATA/<name>``, the
    ``fallback``, or ``~/.coretune/data/<name>``."""

    def resolve(root: Path | None) -> Path:
        if root is not None:
            return root
        if os.environ.get(DATA_ROOT_ENV):
            return Path(os.environ[DATA_ROOT_ENV]) / name
        return fallback or Path.home() / ".coretune" / "data" / name

    return resolve
