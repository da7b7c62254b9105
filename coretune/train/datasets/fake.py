"""Stand-in data of the real shapes, written in each dataset's own on-disk format.

``coretune data fake NAME --root DIR`` (:func:`write_fake`) writes a registered dataset
where its loader looks — Fashion-MNIST's gzipped idx files, CIFAR-10/100's python
pickles, CIFAR-N's ``CIFAR-100_human.pt``, STL-10's column-major binaries, Tiny
ImageNet's ``train/<wnid>/images`` + ``val_annotations.txt`` tree and ImageNet's
``train/<class>/`` ``val/<class>/`` tree of JPEGs (all 1,000 classes) — so the real
loaders, decoders, memory maps and fingerprints run on it. Every class has a fixed random
smooth colour pattern; each image is that pattern, shifted a few pixels, blended with a
smooth pattern of its own, jittered in gain and offset and noised, so a linear model or a
small CNN learns it well above chance. A rehearsal aid, never a benchmark: accuracies on
it say nothing about a method.

The format encoders (:func:`write_idx`, :func:`write_cifar_pickle`,
:func:`write_cifar100n_labels`, :func:`write_stl10_split`, :func:`save_image`) are the
one place each format is written; the tests' tiny writers use them too.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import shutil
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coretune.errors import PathError, UsageError
from coretune.spec import LabelNoiseSpec
from coretune.train.data import DATASETS, UnknownDatasetError, noisy_labels
from coretune.train.datasets.cifar import CIFAR
from coretune.train.datasets.fashion_mnist import FILES as IDX_FILES
from coretune.train.datasets.stl10 import FOLDER as STL10_FOLDER
from coretune.train.datasets.stl10 import SIDE as STL10_SIDE

#: datasets that ship inside a package: nothing to fake
EMBEDDED = frozenset({"digits"})
#: CIFAR-N's human labels are faked by flipping this share of the clean ones
CIFAR100N_NOISE = 0.2
MANIFEST = "CORETUNE_FAKE_{name}.json"
NOTE = "stand-in data written by `coretune data fake`: a rehearsal aid, never a benchmark"
STL10_CLASSES = "airplane bird car cat deer dog horse monkey ship truck".split()

# ------------------------------------------------------------------ format encoders


def write_idx(path: Path, array: np.ndarray) -> Path:
    """LeCun's idx format (magic ``00 00 08 ndim``, big-endian uint32 dims, uint8 data),
    gzipped when ``path`` ends in ``.gz``."""
    array = np.asarray(array)
    raw = (struct.pack(">BBBB", 0, 0, 8, array.ndim)
           + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw, mtime=0) if path.suffix == ".gz" else raw)
    return path


def write_cifar_pickle(path: Path, data: np.ndarray, labels, key: bytes) -> Path:
    """One CIFAR batch: a pickled dict with ``b"data"`` (N × 3072 uint8, CHW-flattened),
    the labels under ``key`` (a list of ints), ``b"batch_label"`` and ``b"filenames"``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(data, dtype=np.uint8)
    batch = {b"batch_label": path.name.encode(), key: np.asarray(labels).tolist(),
             b"data": data.reshape(len(data), -1),
             b"filenames": [f"fake_{i:05d}.png".encode() for i in range(len(data))]}
    with open(path, "wb") as fh:
        pickle.dump(batch, fh, protocol=4)  # 5 rebuilds arrays by _frombuffer
    return path


def write_cifar100n_labels(root: Path, noisy: np.ndarray, clean: np.ndarray) -> Path:
    """CIFAR-N's ``CIFAR-100_human.pt``: the human ``noisy_label`` and the ``clean_label``
    (numpy arrays, as CIFAR-N ships them)."""
    import torch

    path = root / "CIFAR-100_human.pt"
    torch.save({"clean_label": np.asarray(clean), "noisy_label": np.asarray(noisy)}, path)
    return path


def write_stl10_split(folder: Path, split: str, images: np.ndarray, labels: np.ndarray
                      ) -> list[Path]:
    """``{split}_X.bin``: uint8 3×96×96 images, each channel column-major (the first 96
    bytes are column 0 of channel 0, top to bottom); ``{split}_y.bin``: labels 1–10."""
    folder.mkdir(parents=True, exist_ok=True)
    x_path, y_path = folder / f"{split}_X.bin", folder / f"{split}_y.bin"
    x_path.write_bytes(
        np.ascontiguousarray(np.asarray(images, np.uint8).transpose(0, 1, 3, 2)).tobytes())
    y_path.write_bytes((np.asarray(labels) + 1).astype(np.uint8).tobytes())
    return [x_path, y_path]


def save_image(path: Path, image: np.ndarray, fmt: str = "JPEG") -> Path:
    """A uint8 ``[3, H, W]`` image as an image file of ``fmt`` (any suffix: the folder
    loaders decode by content)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).save(
        buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    path.write_bytes(buf.getvalue())
    return path


def wnids(num_classes: int) -> list[str]:
    """WordNet-like class folder names ``n%08d``, in sorted order."""
    return [f"n{i:08d}" for i in range(num_classes)]


# ------------------------------------------------------------------ learnable images
GRID = 4  # a class pattern: a GRID × GRID random colour grid, smoothly upsampled
CLASS_WEIGHT = 0.5  # the rest of an image is a smooth random pattern of its own
NOISE = 0.08  # the std of per-pixel uniform noise, in [0, 1] intensity units
CHUNK = 256  # images drawn at a time (bounds the memory of large fakes)


def _weights(pos: np.ndarray, g: int) -> np.ndarray:
    """``[..., side, g]`` linear-interpolation weights of the positions ``pos`` (in grid
    cells, ``0 ≤ pos ≤ g − 1``) on a grid of ``g`` cells."""
    lo = np.minimum(pos.astype(np.int64), g - 2)
    w = (pos - lo)[..., None]
    cells = np.arange(g)
    return ((cells == lo[..., None]) * (1 - w) + (cells == lo[..., None] + 1) * w
            ).astype(np.float32)


def _upsample(grids: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``[N, C, g, g]`` grids sampled bilinearly at each image's ``[N, side]`` row and
    column positions (grid units): ``[N, C, side, side]``."""
    g = grids.shape[-1]
    return np.einsum("nij,ncjk,nlk->ncil", _weights(rows, g), grids, _weights(cols, g),
                     optimize=True)


class Painter:
    """Draws images of ``num_classes`` classes, ``channels`` × ``side`` × ``side``."""

    def __init__(self, rng: np.random.Generator, num_classes: int, channels: int, side: int):
        self.side, self.channels = side, channels
        self.patterns = rng.random((num_classes, channels, GRID, GRID), dtype=np.float32)

    def paint(self, rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
        """uint8 ``[N, C, side, side]`` images of ``labels``: the class pattern shifted by
        up to ``side / 16`` pixels each way, blended with a smooth 3 × 3 pattern of the
        image's own, gain and offset jittered, uniform noise of std :data:`NOISE`."""
        n, c, side = len(labels), self.channels, self.side
        pad = side / 16  # the class pattern spans side + 2·pad pixels; a view shows side
        shift = rng.uniform(0, 2 * pad, (2, n, 1)).astype(np.float32)
        scale = (GRID - 1) / (side - 1 + 2 * pad)
        px = np.arange(side, dtype=np.float32)
        x = _upsample(self.patterns[labels], (px + shift[0]) * scale, (px + shift[1]) * scale)
        own = np.broadcast_to(px * (2 / (side - 1)), (n, side))
        x = CLASS_WEIGHT * x + (1 - CLASS_WEIGHT) * _upsample(
            rng.random((n, c, 3, 3), dtype=np.float32), own, own)
        gain = 1 + 0.15 * rng.standard_normal((n, 1, 1, 1), dtype=np.float32)
        offset = 0.05 * rng.standard_normal((n, 1, 1, 1), dtype=np.float32)
        x = (x - 0.5) * gain + 0.5 + offset
        x += (rng.random(x.shape, dtype=np.float32) - 0.5) * (NOISE * 12 ** 0.5)
        return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)

    def chunks(self, rng: np.random.Generator, labels: np.ndarray) -> Iterator[np.ndarray]:
        for start in range(0, len(labels), CHUNK):
            yield self.paint(rng, labels[start:start + CHUNK])

    def paint_all(self, rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
        return np.concatenate(list(self.chunks(rng, labels)))


def balanced(rng: np.random.Generator, num_classes: int, per_class: int) -> np.ndarray:
    """``per_class`` labels of every class, shuffled (as CIFAR's and STL-10's files are)."""
    return rng.permutation(np.repeat(np.arange(num_classes, dtype=np.int64), per_class))


def _save_images(painter: Painter, rng: np.random.Generator, labels: np.ndarray,
                 paths: list[Path]) -> list[Path]:
    images = (image for chunk in painter.chunks(rng, labels) for image in chunk)
    return [save_image(path, image) for path, image in zip(paths, images, strict=True)]


# ------------------------------------------------------------------ one writer a dataset
#: ``writer(root, rng, per_class, test_per_class) -> the files written``
Writer = Callable[[Path, np.random.Generator, int, int], list[Path]]


def fake_fashion_mnist(root: Path, rng: np.random.Generator, n_train: int, n_test: int
                       ) -> list[Path]:
    """The four gzipped idx files of 28×28 grey images, labels 0–9."""
    painter, out = Painter(rng, 10, 1, 28), []
    for split, per in (("train", n_train), ("test", n_test)):
        y = balanced(rng, 10, per)
        x = painter.paint_all(rng, y)[:, 0]
        out.append(write_idx(root / f"{IDX_FILES[f'{split}_x']}.gz", x))
        out.append(write_idx(root / f"{IDX_FILES[f'{split}_y']}.gz", y))
    return out


def _cifar(name: str, root: Path, rng: np.random.Generator, n_train: int, n_test: int
           ) -> tuple[list[Path], np.ndarray]:
    """CIFAR's batches (training images split evenly over them): the files, train labels."""
    folder, train_files, test_files, key, k = CIFAR[name]
    painter, out, train_y = Painter(rng, k, 3, 32), [], None
    for files, per in ((train_files, n_train), (test_files, n_test)):
        y = balanced(rng, k, per)
        x = painter.paint_all(rng, y)
        train_y = y if train_y is None else train_y
        for f, part in zip(files, np.array_split(np.arange(len(y)), len(files)), strict=True):
            out.append(write_cifar_pickle(root / folder / f, x[part], y[part], key))
    return out, train_y


def fake_cifar(name: str) -> Writer:
    return lambda root, rng, n_train, n_test: _cifar(name, root, rng, n_train, n_test)[0]


def fake_cifar100n(root: Path, rng: np.random.Generator, n_train: int, n_test: int
                   ) -> list[Path]:
    """CIFAR-100's pickles (the same images as the ``cifar100`` fake of the seed) and a
    ``CIFAR-100_human.pt`` whose noisy labels flip :data:`CIFAR100N_NOISE` of the clean."""
    out, clean = _cifar("cifar100", root, rng, n_train, n_test)
    noise = LabelNoiseSpec(rate=CIFAR100N_NOISE, seed=int(rng.integers(2**31)))
    return [*out, write_cifar100n_labels(root, noisy_labels(clean, 100, noise), clean)]


def fake_stl10(root: Path, rng: np.random.Generator, n_train: int, n_test: int
               ) -> list[Path]:
    """``stl10_binary/{train,test}_{X,y}.bin`` (labels stored 1–10) and ``class_names.txt``."""
    painter, folder, out = Painter(rng, 10, 3, STL10_SIDE), root / STL10_FOLDER, []
    for split, per in (("train", n_train), ("test", n_test)):
        y = balanced(rng, 10, per)
        out += write_stl10_split(folder, split, painter.paint_all(rng, y), y)
    (folder / "class_names.txt").write_text("\n".join(STL10_CLASSES) + "\n")
    return [*out, folder / "class_names.txt"]


def fake_tiny_imagenet(root: Path, rng: np.random.Generator, n_train: int, n_test: int
                       ) -> list[Path]:
    """200 classes of 64×64 JPEGs: ``train/<wnid>/images/<wnid>_<i>.JPEG``,
    ``val/images/val_<i>.JPEG`` with ``val/val_annotations.txt``, and ``wnids.txt``."""
    ids, painter = wnids(200), Painter(rng, 200, 3, 64)
    train = [root / "train" / w / "images" / f"{w}_{j}.JPEG" for w in ids for j in range(n_train)]
    out = _save_images(painter, rng, np.repeat(np.arange(200), n_train), train)
    val_y = balanced(rng, 200, n_test)
    out += _save_images(painter, rng, val_y, [root / "val" / "images" / f"val_{i}.JPEG"
                                              for i in range(len(val_y))])
    (root / "val" / "val_annotations.txt").write_text("".join(
        f"val_{i}.JPEG\t{ids[c]}\t0\t0\t63\t63\n" for i, c in enumerate(val_y)))
    (root / "wnids.txt").write_text("\n".join(ids) + "\n")
    return [*out, root / "val" / "val_annotations.txt", root / "wnids.txt"]


def fake_imagenet1k(root: Path, rng: np.random.Generator, n_train: int, n_test: int
                    ) -> list[Path]:
    """All 1,000 classes of 64×64 JPEGs in torchvision's ``ImageFolder`` layout:
    ``train/<wnid>/<wnid>_<i>.JPEG`` and ``val/<wnid>/ILSVRC2012_val_<n>.JPEG``."""
    ids, painter = wnids(1000), Painter(rng, 1000, 3, 64)
    train = [root / "train" / w / f"{w}_{j}.JPEG" for w in ids for j in range(n_train)]
    val = [root / "val" / w / f"ILSVRC2012_val_{c * n_test + j + 1:08d}.JPEG"
           for c, w in enumerate(ids) for j in range(n_test)]
    return [*_save_images(painter, rng, np.repeat(np.arange(1000), n_train), train),
            *_save_images(painter, rng, np.repeat(np.arange(1000), n_test), val)]


@dataclass(frozen=True)
class Fake:
    """How one dataset is faked: its writer, the default images per class of the train
    and test split, the entries it owns at the root, and the stream its draws come from
    (``cifar100n`` draws ``cifar100``'s, so both fakes of a seed hold the same images)."""

    write: Writer
    per_class: int
    test_per_class: int
    entries: tuple[str, ...]
    stream: str

    def test_count(self, per_class: int) -> int:
        """Test images per class when the training split has ``per_class``: the default
        ratio, at least one."""
        return max(1, round(per_class * self.test_per_class / self.per_class))


_IDX_ENTRIES = tuple(f"{stem}{gz}" for stem in IDX_FILES.values() for gz in ("", ".gz"))
#: the fake of every registered dataset that is read from files
FAKES: dict[str, Fake] = {
    "fashion_mnist": Fake(fake_fashion_mnist, 50, 10, _IDX_ENTRIES, "fashion_mnist"),
    "cifar10": Fake(fake_cifar("cifar10"), 50, 10, (CIFAR["cifar10"][0],), "cifar10"),
    "cifar100": Fake(fake_cifar("cifar100"), 20, 5, (CIFAR["cifar100"][0],), "cifar100"),
    "cifar100n": Fake(fake_cifar100n, 20, 5, (CIFAR["cifar100"][0], "CIFAR-100_human.pt"),
                      "cifar100"),
    "stl10": Fake(fake_stl10, 20, 10, (STL10_FOLDER,), "stl10"),
    "tiny_imagenet": Fake(fake_tiny_imagenet, 20, 5, ("train", "val", "wnids.txt"),
                          "tiny_imagenet"),
    "imagenet1k": Fake(fake_imagenet1k, 2, 1, ("train", "val"), "imagenet1k"),
}


# ------------------------------------------------------------------ writing one dataset
@dataclass(frozen=True)
class FakeWritten:
    """What :func:`write_fake` wrote."""

    name: str
    root: Path
    files: int
    bytes: int
    per_class: int
    test_per_class: int
    seconds: float

    def summary(self) -> str:
        k = DATASETS.get(self.name).num_classes
        return (f"fake {self.name}: {k} classes × {self.per_class} train + "
                f"{self.test_per_class} test images, {self.files} files, "
                f"{self.bytes / 1e6:.1f} MB in {self.seconds:.1f} s under {self.root} "
                f"(read it with --data-root {self.root}; {NOTE})")


def fake_of(name: str) -> Fake:
    """The fake of dataset ``name``; refused, naming ``NAME``, if the name is unknown
    (:class:`UnknownDatasetError`), embedded or without a fake (``UsageError``)."""
    if name not in DATASETS:
        raise UnknownDatasetError(f"NAME: {DATASETS.unknown_message(name)}")
    if name in EMBEDDED:
        raise UsageError(f"NAME {name!r}: the dataset is embedded, it has no files to fake; "
                         f"fakes exist for {', '.join(sorted(FAKES))}")
    if name not in FAKES:
        raise UsageError(f"NAME {name!r}: no fake writer for this dataset; fakes exist for "
                         f"{', '.join(sorted(FAKES))}")
    return FAKES[name]


def _claim(name: str, root: Path, fake: Fake) -> None:
    """Remove what an earlier fake wrote of ``fake``'s entries; refuse (``PathError``) an
    entry at the root that no fake's manifest there owns: it may be the real dataset."""
    owned: set[str] = set()
    for manifest in root.glob(MANIFEST.format(name="*")):
        try:
            owned.update(json.loads(manifest.read_text()).get("entries", []))
        except (ValueError, AttributeError):
            continue
    for entry in fake.entries:
        path = root / entry
        if not (path.exists() or path.is_symlink()):
            continue
        if entry not in owned:
            raise PathError(f"--root {root}: {entry} is there and was not written by "
                            f"`coretune data fake` (it may be the real {name}); refusing to "
                            "overwrite it: pick another --root")
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def write_fake(name: str, root: str | Path, per_class: int | None = None,
               test_per_class: int | None = None, seed: int = 0) -> FakeWritten:
    """Write the fake of dataset ``name`` under ``root`` (the dataset's root, as
    ``--data-root`` takes it), deterministically from ``seed``.

    ``per_class`` training images of every class (default: the dataset's, see
    :data:`FAKES`) and ``test_per_class`` test images (default: the same ratio as the
    defaults, at least one). What an earlier fake wrote there is replaced; anything else
    in the dataset's place is refused. A ``CORETUNE_FAKE_<name>.json`` manifest says what
    was written and that it is fake."""
    fake = fake_of(name)
    per_class = fake.per_class if per_class is None else per_class
    test_per_class = fake.test_count(per_class) if test_per_class is None else test_per_class
    for field, value, least in (("--per-class", per_class, 1),
                                ("test_per_class", test_per_class, 1), ("--seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise UsageError(f"{field} must be a whole number ≥ {least}, got {value!r}")
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PathError(f"--root {root}: cannot make the folder ({err.strerror})") from None
    _claim(name, root, fake)
    manifest = root / MANIFEST.format(name=name)
    record = {"dataset": name, "note": NOTE, "seed": seed, "per_class": per_class,
              "test_per_class": test_per_class, "entries": list(fake.entries)}
    manifest.write_text(json.dumps(record, indent=1))  # first: a crash leaves it owned
    start = time.perf_counter()
    rng = np.random.default_rng([seed, zlib.crc32(fake.stream.encode())])
    files = fake.write(root, rng, per_class, test_per_class)
    seconds = time.perf_counter() - start
    size = sum(f.stat().st_size for f in files)
    manifest.write_text(json.dumps({**record, "files": len(files), "bytes": size}, indent=1))
    return FakeWritten(name, root, len(files), size, per_class, test_per_class, seconds)

