"""Fashion-MNIST (Xiao et al. 2017) from LeCun's idx files, e.g. Debian's
``dataset-fashion-mnist`` under ``/usr/share/datasets/fashion-mnist``."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from coretune.errors import DataError
from coretune.spec import AugmentSpec, DataSpec
from coretune.train.data import (
    DATA_ROOT_ENV,
    DatasetMissingError,
    Splits,
    dataset_root,
    env_root,
    register_dataset,
)

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
         "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (optionally gzipped) as a numpy array (LeCun's MNIST format)."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte idx file")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims.tolist()} but holds {data.size} bytes")
    return data.reshape(dims)


def _find_idx(root: Path, stem: str) -> Path | None:
    for cand in (root / stem, root / (stem + ".gz")):
        if cand.exists():
            return cand
    return None


@register_dataset("fashion_mnist", default_root=env_root("fashion_mnist", FASHION_MNIST_ROOT),
                  num_classes=10, augment=AugmentSpec(pad=2, flip=True))
def load_fashion_mnist(root: Path | None, download: bool, spec: DataSpec) -> Splits:
    """The four idx files (plain or gzipped) under the dataset's root."""
    root = dataset_root("fashion_mnist", root)
    found = {k: _find_idx(root, stem) for k, stem in FILES.items()}
    missing = [FILES[k] for k, v in found.items() if v is None]
    if missing:
        raise DatasetMissingError(
            f"dataset 'fashion_mnist': {', '.join(missing)} not found under {root}. "
            "Install Debian's package (apt-get install dataset-fashion-mnist), or put the "
            f"idx files there, or pass root= / set ${DATA_ROOT_ENV}.")
    arr = {k: read_idx(v) for k, v in found.items()}  # type: ignore[arg-type]
    return Splits(arr["train_x"][:, None], arr["train_y"].astype(np.int64),
                  arr["test_x"][:, None], arr["test_y"].astype(np.int64))
