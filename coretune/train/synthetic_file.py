"""Synthetic sets as ``.npz`` files: images from any distillation method, checked, no code run.

A synthetic set (SRe2L, RDED, DATM, … or coretune's own :mod:`coretune.train.rded`) is a
dataset of its own to the rest of coretune: uint8 images ``[n, C, H, W]`` with hard labels
``[n]`` and, optionally, one soft label per image ``[n, K]``. The file is an uncompressed or
deflated ``.npz`` with exactly the arrays

- ``images``: uint8, 4-d, ``(C, H, W)`` the dataset's own;
- ``labels``: any integer dtype, 1-d, values in ``[0, K)`` (read as int64);
- ``soft_labels`` (optional): float, ``[n, K]``, finite (read as float32). Whether rows are
  logits or probabilities is the consumer's convention; this module only checks shape.

It is read with ``allow_pickle=False``: an object array (a pickle) is refused before
anything in it is called. Every refusal is a one-line :class:`~coretune.errors.DataError`
(:class:`~coretune.errors.DataMissingError` for a missing file) starting with the field
that named the file. The set's ``sha256`` is of the bytes that were parsed, so it can enter
a content key; :func:`save_synthetic_npz` writes byte-identical files for identical arrays
(fixed zip timestamps), so a rebuilt set keeps its key.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coretune.errors import DataError, DataMissingError
from coretune.storage import write_atomic

REQUIRED = ("images", "labels")
OPTIONAL = ("soft_labels",)
#: zip entries carry this timestamp, so equal arrays give equal bytes (and an equal sha256)
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class SyntheticSet:
    """A checked synthetic set: ``images`` uint8 ``[n, C, H, W]``, ``labels`` int64 ``[n]``,
    ``soft_labels`` float32 ``[n, K]`` or None, and the SHA-256 of the file's bytes."""

    images: np.ndarray
    labels: np.ndarray
    soft_labels: np.ndarray | None
    sha256: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _member(npz: np.lib.npyio.NpzFile, key: str, fail: Callable[[str], DataError]
            ) -> np.ndarray:
    """Read one array; a pickled (object) array or an entry that is no ``.npy`` is refused."""
    try:
        arr = npz[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise fail(f"{key} is an object array (pickled data is refused)") from None
        raise fail(f"{key} cannot be read: {_one_line(exc)}") from None
    except Exception as exc:  # a damaged zip entry or .npy header
        raise fail(f"{key} cannot be read: {_one_line(exc)}") from None
    if not isinstance(arr, np.ndarray):
        raise fail(f"{key} is not a .npy array")
    return arr


def parse_synthetic_npz(data: bytes, *, channels: int, height: int, width: int,
                        num_classes: int, field: str = "synthetic.file",
                        where: str = "") -> SyntheticSet:
    """Check and read the bytes of a synthetic-set ``.npz`` (see the module) against the
    dataset's image shape ``(channels, height, width)`` and ``num_classes``; ``where`` (a
    path) is appended to messages."""
    suffix = f" ({where})" if where else ""

    def fail(message: str) -> DataError:
        return DataError(f"{field}: {message}{suffix}")

    try:
        npz = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:
        raise fail(f"not an .npz archive ({_one_line(exc)})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise fail(f"not an .npz archive (a single {type(npz).__name__})")
    with npz:
        keys = set(npz.files)
        missing = [k for k in REQUIRED if k not in keys]
        if missing:
            raise fail(f"missing {', '.join(missing)} (has {sorted(keys) or 'no arrays'})")
        extra = sorted(keys - set(REQUIRED) - set(OPTIONAL))
        if extra:
            raise fail(f"unknown array(s) {extra}; expected {list(REQUIRED + OPTIONAL)}")
        arrays = {k: _member(npz, k, fail) for k in (*REQUIRED, *OPTIONAL) if k in keys}
    images, labels = arrays["images"], arrays["labels"]
    soft = arrays.get("soft_labels")
    if images.ndim != 4:
        raise fail(f"images has {images.ndim} dimensions {images.shape}, expected 4 "
                   "[n, C, H, W]")
    if images.dtype != np.uint8:
        raise fail(f"images has dtype {images.dtype}, expected uint8")
    if images.shape[1:] != (channels, height, width):
        raise fail(f"images are {images.shape[1:]} (C, H, W), the dataset's are "
                   f"{(channels, height, width)}")
    n = images.shape[0]
    if n == 0:
        raise fail("images is empty")
    if labels.ndim != 1:
        raise fail(f"labels has {labels.ndim} dimensions {labels.shape}, expected 1 [n]")
    if labels.dtype.kind not in "iu":
        raise fail(f"labels has dtype {labels.dtype}, expected an integer dtype")
    if labels.shape[0] != n:
        raise fail(f"labels has {labels.shape[0]} entries for {n} images")
    if labels.min() < 0 or labels.max() >= num_classes:
        bad = labels[(labels < 0) | (labels >= num_classes)]
        raise fail(f"labels has {bad.size} value(s) outside [0, {num_classes}), e.g. "
                   f"{bad[0]}")
    if soft is not None:
        if soft.ndim != 2:
            raise fail(f"soft_labels has {soft.ndim} dimensions {soft.shape}, expected 2 "
                       "[n, K]")
        if soft.dtype.kind != "f":
            raise fail(f"soft_labels has dtype {soft.dtype}, expected a float dtype")
        if soft.shape[0] != n:
            raise fail(f"soft_labels has {soft.shape[0]} rows for {n} images")
        if soft.shape[1] != num_classes:
            raise fail(f"soft_labels has {soft.shape[1]} columns, the dataset has "
                       f"{num_classes} classes")
        if not np.isfinite(soft).all():
            raise fail(f"soft_labels has {int((~np.isfinite(soft)).sum())} non-finite "
                       "value(s)")
        soft = np.ascontiguousarray(soft, dtype=np.float32)
    return SyntheticSet(images=np.ascontiguousarray(images),
                        labels=np.ascontiguousarray(labels, dtype=np.int64),
                        soft_labels=soft, sha256=hashlib.sha256(data).hexdigest())


def load_synthetic_npz(path: str | os.PathLike, *, channels: int, height: int, width: int,
                       num_classes: int, field: str = "synthetic.file") -> SyntheticSet:
    """Read and check the synthetic set at ``path`` (see :func:`parse_synthetic_npz`).

    The file is read once; its bytes are hashed and parsed, so ``sha256`` is of what was
    checked."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise DataMissingError(f"{field}: {str(path)!r} not found") from None
    except OSError as exc:
        raise DataError(f"{field}: {str(path)!r} cannot be read ({_one_line(exc)})") from None
    return parse_synthetic_npz(data, channels=channels, height=height, width=width,
                               num_classes=num_classes, field=field, where=str(path))


def synthetic_npz_bytes(images: np.ndarray, labels: np.ndarray,
                        soft_labels: np.ndarray | None = None) -> bytes:
    """The ``.npz`` bytes of a synthetic set (deflated, fixed timestamps: equal arrays give
    equal bytes). ``images`` must be uint8 ``[n, C, H, W]``; labels are written as int64
    and soft labels as float32."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 [n, C, H, W], got {images.dtype} "
                         f"{images.shape}")
    arrays = {"images": images, "labels": np.asarray(labels, dtype=np.int64)}
    if soft_labels is not None:
        arrays["soft_labels"] = np.asarray(soft_labels, dtype=np.float32)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def save_synthetic_npz(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray,
                       soft_labels: np.ndarray | None = None) -> str:
    """Write a synthetic set to ``path`` atomically; returns the file's SHA-256."""
    data = synthetic_npz_bytes(images, labels, soft_labels)
    write_atomic(path, data)
    return hashlib.sha256(data).hexdigest()
