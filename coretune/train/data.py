"""Dataset registry: real image datasets as uint8 arrays, moved once to a trial's device.

Every dataset is held as ``uint8[N, C, H, W]`` images plus ``int64[N]`` labels for a fixed
train and test split. Nothing is downloaded unless the caller asks (``download=True``);
a missing dataset raises :class:`DatasetMissingError` naming the path looked at and how to
provide it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from coretune.spec import AugmentSpec, DataSpec

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
DATA_ROOT_ENV = "CORETUNE_DATA"


class DatasetMissingError(FileNotFoundError):
    """A registered dataset whose files are not where we looked."""


class UnknownDatasetError(ValueError):
    """A dataset name that is not registered."""


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

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    @property
    def mean(self) -> np.ndarray:
        """Per-channel mean of the training images in [0, 1]."""
        return self.train_x.mean(axis=(0, 2, 3), dtype=np.float64) / 255.0

    @property
    def std(self) -> np.ndarray:
        """Per-channel std of the training images in [0, 1] (floored to avoid zero)."""
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

    @property
    def device(self) -> torch.device:
        return self.train_x.device

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
        val_y=labels(ds.val_y),
    )


#: ``loader(root, download, spec) -> ImageDataset`` (train and test splits)
Loader = Callable[[Path | None, bool, DataSpec], ImageDataset]


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset: its loader, where it is looked for, and its defaults."""

    name: str
    loader: Loader
    default_root: Callable[[Path | None], Path]
    num_classes: int
    augment: AugmentSpec  # the default train-time augmentation
    test_fraction: float | None = None  # default split if there is no canonical test split


_DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(name: str, default_root: Callable[[Path | None], Path], num_classes: int,
                     augment: AugmentSpec, test_fraction: float | None = None
                     ) -> Callable[[Loader], Loader]:
    """Register ``loader(root, download, spec) -> ImageDataset`` under ``name``."""

    def decorate(fn: Loader) -> Loader:
        _DATASETS[name] = DatasetInfo(name, fn, default_root, num_classes, augment,
                                      test_fraction)
        return fn

    return decorate


def available_datasets() -> list[str]:
    return sorted(_DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    try:
        return _DATASETS[name]
    except KeyError:
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; available: {', '.join(available_datasets())}"
        ) from None


def dataset_root(name: str, root: str | Path | None = None) -> Path:
    """Where dataset ``name`` is looked for (``root``, else ``$CORETUNE_DATA/<name>``, ...)."""
    return dataset_info(name).default_root(Path(root) if root else None)


def check_data_spec(spec: DataSpec) -> None:
    """Refuse split options a dataset cannot honour (names the field)."""
    info = dataset_info(spec.name)
    if spec.test_fraction is not None and info.test_fraction is None:
        raise ValueError(f"dataset {spec.name!r} has a canonical test split; "
                         f"test_fraction must be unset, got {spec.test_fraction}")


def stratified_split(labels: np.ndarray, fraction: float, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (kept, held-out) positions, ``fraction`` held out per class (scikit-learn)."""
    from sklearn.model_selection import train_test_split

    keep, held = train_test_split(np.arange(len(labels)), test_size=fraction, stratify=labels,
                                  random_state=seed)
    return np.sort(keep), np.sort(held)


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
    ds = dataset_info(spec.name).loader(Path(root) if root else None, download, spec)
    if spec.label_noise is not None:
        ds = replace(ds, train_y=noisy_labels(ds.train_y, ds.num_classes, spec.label_noise))
    if spec.val_fraction > 0:
        keep, held = stratified_split(ds.train_y, spec.val_fraction, spec.split_seed)
        ds = replace(ds, train_x=ds.train_x[keep], train_y=ds.train_y[keep],
                     val_x=ds.train_x[held], val_y=ds.train_y[held])
    return replace(ds, fingerprint=fingerprint(ds))


def _env_root(name: str, fallback: Path | None = None) -> Callable[[Path | None], Path]:
    def resolve(root: Path | None) -> Path:
        if root is not None:
            return root
        if os.environ.get(DATA_ROOT_ENV):
            return Path(os.environ[DATA_ROOT_ENV]) / name
        return fallback or Path.home() / ".coretune" / "data" / name

    return resolve


# ---------------------------------------------------------------- digits (embedded default)
@register_dataset("digits", default_root=lambda root: Path("sklearn://load_digits"),
                  num_classes=10, augment=AugmentSpec(pad=1), test_fraction=0.2)
def _load_digits(root: Path | None, download: bool, spec: DataSpec) -> ImageDataset:
    """scikit-learn's 1,797 real 8×8 handwritten digits; stratified seeded test split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # [N,1,8,8]
    labels = bunch.target.astype(np.int64)
    tr, te = stratified_split(labels, spec.test_fraction or 0.2, spec.split_seed)
    return ImageDataset("digits", images[tr], labels[tr], images[te], labels[te], 10,
                        AugmentSpec(pad=1))


# ---------------------------------------------------------------- Fashion-MNIST (idx files)
_FMNIST_FILES = {
    "train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (optionally gzipped) as a numpy array (LeCun's MNIST format)."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte idx file")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims.tolist()} but holds {data.size} bytes")
    return data.reshape(dims)


def _find_idx(root: Path, stem: str) -> Path | None:
    for cand in (root / stem, root / (stem + ".gz")):
        if cand.exists():
            return cand
    return None


@register_dataset("fashion_mnist", default_root=_env_root("fashion_mnist", FASHION_MNIST_ROOT),
                  num_classes=10, augment=AugmentSpec(pad=2, flip=True))
def _load_fashion_mnist(root: Path | None, download: bool, spec: DataSpec) -> ImageDataset:
    """Fashion-MNIST (Xiao et al. 2017) from idx files, e.g. Debian's dataset-fashion-mnist."""
    root = dataset_root("fashion_mnist", root)
    found = {k: _find_idx(root, stem) for k, stem in _FMNIST_FILES.items()}
    missing = [_FMNIST_FILES[k] for k, v in found.items() if v is None]
    if missing:
        raise DatasetMissingError(
            f"dataset 'fashion_mnist': {', '.join(missing)} not found under {root}. "
            "Install Debian's package (apt-get install dataset-fashion-mnist), or put the "
            f"idx files there, or pass root= / set ${DATA_ROOT_ENV}."
        )
    arr = {k: read_idx(v) for k, v in found.items()}  # type: ignore[arg-type]
    return ImageDataset("fashion_mnist", arr["train_x"][:, None], arr["train_y"].astype(np.int64),
                        arr["test_x"][:, None], arr["test_y"].astype(np.int64), 10,
                        AugmentSpec(pad=2, flip=True))


# ---------------------------------------------------------------- torchvision datasets
def _torchvision(name: str, cls_name: str, num_classes: int, augment: AugmentSpec,
                 split_kw: tuple[dict, dict]) -> Loader:
    def load(root: Path | None, download: bool, spec: DataSpec) -> ImageDataset:
        import torchvision.datasets as tvd

        root = dataset_root(name, root)
        cls = getattr(tvd, cls_name)
        try:
            parts = [cls(str(root), download=download, **kw) for kw in split_kw]
        except (RuntimeError, FileNotFoundError) as err:
            raise DatasetMissingError(
                f"dataset {name!r} not found under {root} ({err}). Put the torchvision "
                f"{cls_name} files there, pass root= or set ${DATA_ROOT_ENV}, or allow "
                "downloading explicitly (coretune sweep --download)."
            ) from None
        arrays = []
        for part in parts:
            x = np.asarray(part.data)
            x = x if x.shape[1] == 3 else x.transpose(0, 3, 1, 2)  # HWC → CHW
            y = np.asarray(getattr(part, "targets", None) if hasattr(part, "targets")
                           else part.labels, dtype=np.int64)
            arrays.append((np.ascontiguousarray(x, dtype=np.uint8), y))
        (trx, try_), (tex, tey) = arrays
        return ImageDataset(name, trx, try_, tex, tey, num_classes, augment)

    return load


for _name, _cls, _k, _aug, _kw in (  # CIFAR is read from its pickles in folders.py
        ("stl10", "STL10", 10, AugmentSpec(pad=12, flip=True),
         ({"split": "train"}, {"split": "test"})),):
    register_dataset(_name, _env_root(_name), _k, _aug)(_torchvision(_name, _cls, _k, _aug, _kw))

from coretune.train import folders  # noqa: E402,F401 - registers the folder datasets
