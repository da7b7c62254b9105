"""STL-10 (Coates et al. 2011) from its binary files, read directly.

``stl10_binary/{train,test}_X.bin`` hold uint8 images of 3×96×96 stored column-major
(each channel transposed), ``{train,test}_y.bin`` labels 1–10; the unlabelled split is not
used. ``--download`` lets torchvision fetch the archive into the root first.
"""

from __future__ import annotations

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

FOLDER = "stl10_binary"
SIDE = 96


def read_stl10_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``uint8 [N, 3, 96, 96]`` images and ``int64 [N]`` labels (0–9) of ``split``."""
    x_path, y_path = folder / f"{split}_X.bin", folder / f"{split}_y.bin"
    for path in (x_path, y_path):
        if not path.exists():
            raise DatasetMissingError(
                f"dataset 'stl10': {FOLDER}/{path.name} not found under {folder.parent}. Put "
                f"the files there, pass --data-root, set ${DATA_ROOT_ENV}, or --download.")
    raw = np.fromfile(x_path, dtype=np.uint8)
    if raw.size % (3 * SIDE * SIDE):
        raise DataError(f"{x_path}: {raw.size} bytes is not a whole number of 3×96×96 images")
    images = raw.reshape(-1, 3, SIDE, SIDE).transpose(0, 1, 3, 2)  # column-major → rows
    labels = np.fromfile(y_path, dtype=np.uint8).astype(np.int64) - 1
    if labels.size != images.shape[0]:
        raise DataError(f"{y_path}: {labels.size} labels for {images.shape[0]} images")
    return np.ascontiguousarray(images), labels


@register_dataset("stl10", env_root("stl10"), num_classes=10,
                  augment=AugmentSpec(pad=12, flip=True))
def load_stl10(root: Path | None, download: bool, spec: DataSpec) -> Splits:
    """The labelled train (5,000) and test (8,000) splits."""
    root = dataset_root("stl10", root)
    if download:
        import torchvision.datasets as tvd

        tvd.STL10(str(root), split="train", download=True)
    return Splits(*read_stl10_split(root / FOLDER, "train"),
                  *read_stl10_split(root / FOLDER, "test"))
