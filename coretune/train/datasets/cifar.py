"""CIFAR-10/100 (Krizhevsky 2009) from their python pickles, and CIFAR-100N.

- ``cifar10`` / ``cifar100`` — the python-pickle batches (``cifar-10-batches-py/``,
  ``cifar-100-python/``), read directly; ``--download`` asks torchvision to fetch them.
- ``cifar100n`` — CIFAR-100 images with the human noisy labels of CIFAR-N (Wei et al.,
  ICLR 2022) from ``CIFAR-100_human.pt`` beside them (key ``noisy_label``; its
  ``clean_label`` must equal CIFAR-100's labels).
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
from coretune.train.safe_load import load_array_pickle, load_torch_arrays

CIFAR = {"cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)],
                     ["test_batch"], b"labels", 10),
         "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels", 100)}
CIFAR_AUGMENT = AugmentSpec(pad=4, flip=True)


def _missing(name: str, path: Path, what: str) -> DatasetMissingError:
    return DatasetMissingError(f"dataset {name!r}: {what} not found under {path}. Put the "
                               f"files there, pass --data-root, or set ${DATA_ROOT_ENV}.")


def read_cifar(name: str, root: Path, dataset: str | None = None) -> tuple[np.ndarray, ...]:
    """(train_x, train_y, test_x, test_y) from CIFAR's python pickles under ``root``."""
    folder, train, test, key, _ = CIFAR[name]
    dataset = dataset or name
    base = root / folder

    def read(files: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for f in files:
            if not (base / f).exists():
                raise _missing(dataset, root, f"{folder}/{f}")
            batch = load_array_pickle(base / f)  # arrays only: no code runs from the file
            if not isinstance(batch, dict) or b"data" not in batch or key not in batch:
                raise DataError(f"{base / f}: not a CIFAR batch (a dict with b'data' and "
                                f"{key!r})")
            xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(batch[key], dtype=np.int64))
        return np.concatenate(xs), np.concatenate(ys)

    return (*read(train), *read(test))


def _cifar(name: str):
    def load(root: Path | None, download: bool, spec: DataSpec) -> Splits:
        """CIFAR's python-pickle batches under the root (Krizhevsky 2009): 50,000 training
        and 10,000 test images of 32×32; ``--download`` lets torchvision fetch them."""
        root = dataset_root(name, root)
        if download:
            import torchvision.datasets as tvd

            cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
            cls(str(root), train=True, download=True)
            cls(str(root), train=False, download=True)
        return Splits(*read_cifar(name, root))

    return load


for _name in CIFAR:
    register_dataset(_name, env_root(_name), CIFAR[_name][4], CIFAR_AUGMENT)(_cifar(_name))


@register_dataset("cifar100n", env_root("cifar100n"), 100, CIFAR_AUGMENT)
def load_cifar100n(root: Path | None, download: bool, spec: DataSpec) -> Splits:
    """CIFAR-100 with CIFAR-N's human noisy training labels (the test split stays clean)."""
    root = dataset_root("cifar100n", root)
    trx, try_, tex, tey = read_cifar("cifar100", root, "cifar100n")
    label_file = root / "CIFAR-100_human.pt"
    if not label_file.exists():
        raise _missing("cifar100n", root, "CIFAR-100_human.pt (CIFAR-N's label file)")
    labels = load_torch_arrays(label_file)  # tensors and arrays only: no code runs
    if not isinstance(labels, dict) or "noisy_label" not in labels:
        raise DataError(f"dataset 'cifar100n': {label_file} holds no 'noisy_label'")
    noisy = np.asarray(labels["noisy_label"], dtype=np.int64)
    clean = np.asarray(labels.get("clean_label", try_), dtype=np.int64)
    if noisy.shape != try_.shape or not np.array_equal(clean, try_):
        raise DataError(f"dataset 'cifar100n': {label_file} does not match the CIFAR-100 "
                        f"training images under {root}")
    return Splits(trx, noisy, tex, tey)
