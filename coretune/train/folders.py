"""Datasets from the files users have: CIFAR pickles, CIFAR-100N labels, ImageFolder trees.

- ``cifar10`` / ``cifar100`` — the python-pickle batches (``cifar-10-batches-py/``,
  ``cifar-100-python/``), read directly; ``--download`` asks torchvision to fetch them.
- ``cifar100n`` — CIFAR-100 images with the human noisy labels of CIFAR-N (Wei et al.,
  ICLR 2022) from ``CIFAR-100_human.pt`` beside them (key ``noisy_label``; its
  ``clean_label`` must equal CIFAR-100's labels).
- ``tiny_imagenet`` (``train/<wnid>/images/``, ``val/images`` + ``val_annotations.txt``)
  and ``imagenet1k`` (torchvision's ``ImageFolder`` layout ``train/<class>/``,
  ``val/<class>/``) — decoded once at ``image_size`` (default 64) into a uint8 ``.npy``
  under ``$CORETUNE_CACHE/decoded/`` and memory-mapped, so a large dataset is paged in as
  it is read, not loaded whole.

A missing dataset raises :class:`~coretune.train.data.DatasetMissingError` naming the path.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from coretune.spec import AugmentSpec, DataSpec
from coretune.train.data import (
    DATA_ROOT_ENV,
    DatasetMissingError,
    ImageDataset,
    _env_root,
    dataset_root,
    register_dataset,
)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
CIFAR = {"cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)],
                     ["test_batch"], b"labels", 10),
         "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels", 100)}


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
            with open(base / f, "rb") as fh:
                batch = pickle.load(fh, encoding="bytes")  # noqa: S301 - the dataset's format
            xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(batch[key], dtype=np.int64))
        return np.concatenate(xs), np.concatenate(ys)

    return (*read(train), *read(test))


def _cifar(name: str):
    def load(root: Path | None, download: bool, spec: DataSpec) -> ImageDataset:
        root = dataset_root(name, root)
        if download:
            import torchvision.datasets as tvd

            cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
            cls(str(root), train=True, download=True)
            cls(str(root), train=False, download=True)
        trx, try_, tex, tey = read_cifar(name, root)
        return ImageDataset(name, trx, try_, tex, tey, CIFAR[name][4],
                            AugmentSpec(pad=4, flip=True))

    return load


for _name in CIFAR:
    register_dataset(_name, _env_root(_name), CIFAR[_name][4], AugmentSpec(pad=4, flip=True))(
        _cifar(_name))


@register_dataset("cifar100n", _env_root("cifar100n"), 100, AugmentSpec(pad=4, flip=True))
def _cifar100n(root: Path | None, download: bool, spec: DataSpec) -> ImageDataset:
    """CIFAR-100 with CIFAR-N's human noisy training labels (the test split stays clean)."""
    import torch

    root = dataset_root("cifar100n", root)
    trx, try_, tex, tey = read_cifar("cifar100", root, "cifar100n")
    label_file = root / "CIFAR-100_human.pt"
    if not label_file.exists():
        raise _missing("cifar100n", root, "CIFAR-100_human.pt (CIFAR-N's label file)")
    labels = torch.load(label_file, map_location="cpu", weights_only=False)
    noisy = np.asarray(labels["noisy_label"], dtype=np.int64)
    clean = np.asarray(labels.get("clean_label", try_), dtype=np.int64)
    if noisy.shape != try_.shape or not np.array_equal(clean, try_):
        raise ValueError(f"dataset 'cifar100n': {label_file} does not match the CIFAR-100 "
                         f"training images under {root}")
    return ImageDataset("cifar100n", trx, noisy, tex, tey, 100, AugmentSpec(pad=4, flip=True))


def decoded_dir() -> Path:
    base = os.environ.get("CORETUNE_CACHE") or str(Path.home() / ".cache" / "coretune")
    return Path(base) / "decoded"


def _decode(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)


def decode_images(files: list[Path], size: int, tag: str) -> np.ndarray:
    """``uint8 [N, 3, size, size]`` of ``files``, decoded once (threads) into a cached
    ``.npy`` keyed by the file list, then memory-mapped read-only."""
    key = hashlib.blake2b(digest_size=10)
    for f in files:
        key.update(str(f).encode())
        key.update(str(f.stat().st_size).encode())
    target = decoded_dir() / f"{tag}-{size}-{key.hexdigest()}.npy"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                        shape=(len(files), 3, size, size))
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            for i, img in enumerate(pool.map(lambda f: _decode(f, size), files,
                                             chunksize=64)):
                out[i] = img
        out.flush()
        del out
        os.replace(tmp, target)
    return np.load(target, mmap_mode="r")


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def image_folder(name: str, split: Path, classes: list[str] | None = None
                 ) -> tuple[list[Path], np.ndarray, list[str]]:
    """Files and labels of an ``ImageFolder`` tree ``split/<class>/*`` (classes sorted)."""
    if not split.is_dir():
        raise _missing(name, split.parent, f"folder {split.name}/")
    classes = classes or sorted(d.name for d in split.iterdir() if d.is_dir())
    files, labels = [], []
    for c, cls in enumerate(classes):
        sub = split / cls
        sub = sub / "images" if (sub / "images").is_dir() else sub
        found = _images(sub) if sub.is_dir() else []
        files += found
        labels += [c] * len(found)
    if not files:
        raise _missing(name, split, "images")
    return files, np.asarray(labels, dtype=np.int64), classes


def _folder_dataset(name: str, num_classes: int, default_size: int):
    def load(root: Path | None, download: bool, spec: DataSpec) -> ImageDataset:
        root = dataset_root(name, root)
        size = spec.image_size or default_size
        train_files, train_y, classes = image_folder(name, root / "train")
        annotations = root / "val" / "val_annotations.txt"
        if annotations.exists():  # Tiny ImageNet's validation layout
            index = {c: i for i, c in enumerate(classes)}
            rows = [line.split("\t")[:2] for line in annotations.read_text().splitlines()
                    if line.strip()]
            test_files = [root / "val" / "images" / f for f, _ in rows]
            test_y = np.asarray([index[c] for _, c in rows], dtype=np.int64)
        else:
            test_files, test_y, _ = image_folder(name, root / "val", classes)
        if len(classes) != num_classes:
            raise ValueError(f"dataset {name!r}: {root / 'train'} has {len(classes)} classes, "
                             f"expected {num_classes}")
        pad = max(1, size // 8)
        return ImageDataset(name, decode_images(train_files, size, f"{name}-train"), train_y,
                            decode_images(test_files, size, f"{name}-val"), test_y,
                            num_classes, AugmentSpec(pad=pad, flip=True))

    return load


for _name, _k in (("tiny_imagenet", 200), ("imagenet1k", 1000)):
    register_dataset(_name, _env_root(_name), _k, AugmentSpec(pad=8, flip=True))(
        _folder_dataset(_name, _k, 64))
