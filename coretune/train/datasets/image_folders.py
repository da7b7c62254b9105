"""Datasets in image-folder layouts, decoded once and memory-mapped.

``tiny_imagenet`` (``train/<wnid>/images/``, ``val/images`` + ``val_annotations.txt``) and
``imagenet1k`` (torchvision's ``ImageFolder`` layout ``train/<class>/``, ``val/<class>/``)
are decoded once at ``image_size`` (default 64) into a uint8 ``.npy`` under
``$CORETUNE_CACHE/decoded/`` and memory-mapped, so a large dataset is paged in as it is
read, not loaded whole.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
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

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
DEFAULT_SIZE = 64


def _missing(name: str, path: Path, what: str) -> DatasetMissingError:
    return DatasetMissingError(f"dataset {name!r}: {what} not found under {path}. Put the "
                               f"files there, pass --data-root, or set ${DATA_ROOT_ENV}.")


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


def _folder_dataset(name: str, num_classes: int):
    def load(root: Path | None, download: bool, spec: DataSpec) -> Splits:
        """An image-folder tree (``train/<class>/``, ``val/``) decoded once at
        ``image_size`` into a memory-mapped uint8 array."""
        root = dataset_root(name, root)
        size = spec.image_size or DEFAULT_SIZE
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
            raise DataError(f"dataset {name!r}: {root / 'train'} has {len(classes)} classes, "
                             f"expected {num_classes}")
        return Splits(decode_images(train_files, size, f"{name}-train"), train_y,
                      decode_images(test_files, size, f"{name}-val"), test_y)

    return load


def folder_augment(spec: DataSpec) -> AugmentSpec:
    """Random crops with zero padding of 1/8 of the decoded side (8 px at 64 px), flips."""
    return AugmentSpec(pad=max(1, (spec.image_size or DEFAULT_SIZE) // 8), flip=True)


for _name, _k in (("tiny_imagenet", 200), ("imagenet1k", 1000)):
    register_dataset(_name, env_root(_name), _k, folder_augment, image_size=DEFAULT_SIZE)(
        _folder_dataset(_name, _k))
