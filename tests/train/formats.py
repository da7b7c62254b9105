"""Writers of tiny datasets in each registered dataset's own on-disk format.

Shared by the loader tests (``tests/train/test_data.py``, ``tests/train/test_folders.py``)
and the registry contract (``tests/test_registries.py``): each ``write_<format>`` puts a
few images where the loader looks for them and returns what it wrote, so a test can
compare what the loader read with what is on disk. :data:`WRITERS` maps every dataset
registered with files to the writer of its format (``digits`` is embedded: it has none).
Each format is encoded by the package's one writer of it
(:mod:`coretune.train.datasets.fake`); these tiny variants choose the pixels and labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coretune.train.datasets.cifar import CIFAR
from coretune.train.datasets.fake import (
    save_image,
    wnids,
    write_cifar100n_labels,
    write_cifar_pickle,
    write_idx,
    write_stl10_split,
)
from coretune.train.datasets.fashion_mnist import FILES as IDX_FILES
from coretune.train.datasets.stl10 import SIDE as STL10_SIDE


@dataclass(frozen=True)
class Written:
    """What a writer put on disk: the labels of each split and, where the loader returns
    the images as stored (not decoded and resized), the images too (uint8 NCHW)."""

    train_y: np.ndarray
    test_y: np.ndarray
    train_x: np.ndarray | None = None
    test_x: np.ndarray | None = None


# ------------------------------------------------------------------ idx (Fashion-MNIST)
def write_fashion_mnist(root: Path, rng: np.random.Generator, n_train: int = 6,
                        n_test: int = 3, gz: bool = True) -> Written:
    """The four idx files (gzipped or plain) of 28×28 grey images, labels 0–9."""
    root.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        y = rng.integers(0, 10, n).astype(np.int64)
        write_idx(root / f"{IDX_FILES[f'{split}_x']}{suffix}", x)
        write_idx(root / f"{IDX_FILES[f'{split}_y']}{suffix}", y)
        out[split] = (x[:, None], y)
    return Written(out["train"][1], out["test"][1], out["train"][0], out["test"][0])


# ------------------------------------------------------------------ CIFAR python pickles
def write_cifar(root: Path, name: str, rng: np.random.Generator, per_batch: int = 4,
                n_test: int = 5) -> Written:
    """CIFAR-10's five training batches and test batch, or CIFAR-100's train and test."""
    folder, train, test, key, classes = CIFAR[name]
    out = {}
    for split, files, n in (("train", train, per_batch), ("test", test, n_test)):
        xs, ys = [], []
        for f in files:
            x = rng.integers(0, 256, (n, 3, 32, 32)).astype(np.uint8)
            y = rng.integers(0, classes, n).astype(np.int64)
            write_cifar_pickle(root / folder / f, x, y, key)
            xs.append(x)
            ys.append(y)
        out[split] = (np.concatenate(xs), np.concatenate(ys))
    return Written(out["train"][1], out["test"][1], out["train"][0], out["test"][0])


def write_cifar100n(root: Path, rng: np.random.Generator) -> Written:
    """CIFAR-100's pickles plus CIFAR-N's human labels (each clean label shifted by one)."""
    clean = write_cifar(root, "cifar100", rng)
    noisy = (clean.train_y + 1) % 100
    write_cifar100n_labels(root, noisy, clean.train_y)
    return Written(noisy, clean.test_y, clean.train_x, clean.test_x)


# ------------------------------------------------------------------ STL-10 binaries
def write_stl10(root: Path, rng: np.random.Generator, n_train: int = 4, n_test: int = 3
                ) -> Written:
    """``stl10_binary/{train,test}_{X,y}.bin`` with labels 0–9 stored as 1–10."""
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (n, 3, STL10_SIDE, STL10_SIDE)).astype(np.uint8)
        y = np.arange(n, dtype=np.int64) % 10
        y[-1] = 9  # the highest label, stored as 10
        write_stl10_split(root / "stl10_binary", split, x, y)
        out[split] = (x, y)
    return Written(out["train"][1], out["test"][1], out["train"][0], out["test"][0])


# ------------------------------------------------------------------ image folders
def write_png(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (20, 16)
              ) -> None:
    """A one-colour RGB PNG of ``size`` (width, height) at ``path`` (any suffix)."""
    pixels = np.asarray(colour, np.uint8)[:, None, None]
    save_image(path, np.broadcast_to(pixels, (3, size[1], size[0])), "PNG")


def write_tiny_imagenet(root: Path, num_classes: int = 200, with_images: int = 3,
                        other_classes_empty: bool = True) -> Written:
    """Tiny ImageNet's layout: ``train/<wnid>/images/*.JPEG`` (PNG bytes: the loader
    decodes by content), ``val/images/`` and ``val/val_annotations.txt``.

    Every class has a folder; the first ``with_images`` hold two images each (class ``i``
    red value ``40·i``), the others none or (``other_classes_empty=False``) one each. The
    validation split is one image of class 2 and one of the last class."""
    ids = wnids(num_classes)
    train_y = []
    for i, w in enumerate(ids):
        folder = root / "train" / w / "images"
        folder.mkdir(parents=True, exist_ok=True)
        n = 2 if i < with_images else (0 if other_classes_empty else 1)
        for j in range(n):
            write_png(folder / f"{w}_{j}.JPEG", (40 * i % 256, 10, 10))
        train_y += [i] * n
    val = [("val_0.JPEG", 2), ("val_1.JPEG", num_classes - 1)]
    for f, c in val:
        write_png(root / "val" / "images" / f, (7 * c % 256, 20, 20))
    (root / "val" / "val_annotations.txt").write_text(
        "".join(f"{f}\t{ids[c]}\t0\t0\t1\t1\n" for f, c in val))
    return Written(np.asarray(train_y, np.int64), np.asarray([c for _, c in val], np.int64))


def write_image_folder(root: Path, num_classes: int, with_images: int = 3) -> Written:
    """torchvision's ``ImageFolder`` layout ``train/<class>/*.png`` and ``val/<class>/``:
    a folder per class (the loader counts them), images in the first ``with_images``."""
    classes = wnids(num_classes)
    train_y, test_y = [], []
    for i, c in enumerate(classes):
        (root / "train" / c).mkdir(parents=True, exist_ok=True)
        if i < with_images:
            for j in range(2):
                write_png(root / "train" / c / f"{c}_{j}.png", (40 * i % 256, 30, 30))
            write_png(root / "val" / c / f"{c}_val.png", (40 * i % 256, 60, 60))
            train_y += [i, i]
            test_y.append(i)
    last = classes[-1]  # the highest label, in the validation split only
    write_png(root / "val" / last / f"{last}_val.png", (1, 2, 3))
    test_y.append(num_classes - 1)
    return Written(np.asarray(train_y, np.int64), np.asarray(test_y, np.int64))


#: ``writer(root, rng) -> Written`` of every registered dataset that is read from files
WRITERS: dict[str, Callable[[Path, np.random.Generator], Written]] = {
    "fashion_mnist": lambda root, rng: write_fashion_mnist(root, rng),
    "cifar10": lambda root, rng: write_cifar(root, "cifar10", rng),
    "cifar100": lambda root, rng: write_cifar(root, "cifar100", rng),
    "cifar100n": write_cifar100n,
    "stl10": write_stl10,
    "tiny_imagenet": lambda root, rng: write_tiny_imagenet(root),
    "imagenet1k": lambda root, rng: write_image_folder(root, 1000),
}
#: datasets decoded from image files (resized to ``image_size``; images not compared)
DECODED = frozenset({"tiny_imagenet", "imagenet1k"})
