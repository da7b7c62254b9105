"""``coretune data fake``: every dataset read from files has a fake in its own format, read
back by the real registered loader, with the shapes, class counts and labels asked for,
learnable above chance, the same bytes from the same seed, and real data never
overwritten."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from coretune.cli import main
from coretune.errors import PathError, UnknownNameError, UsageError
from coretune.spec import DataSpec
from coretune.train.data import DATASETS, load_dataset
from coretune.train.datasets.fake import CIFAR100N_NOISE, EMBEDDED, FAKES, fake_of, write_fake
from tests.train.formats import DECODED

#: small (train, test) images per class, so each dataset writes and loads in about a second
SMALL = {"fashion_mnist": (20, 5), "cifar10": (20, 5), "cifar100": (5, 2), "cifar100n": (5, 2),
         "stl10": (10, 4), "tiny_imagenet": (4, 2), "imagenet1k": (1, 1)}
FILE_BASED = [n for n in DATASETS.names() if n not in EMBEDDED]


@pytest.fixture(autouse=True)
def _decoded_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CORETUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CORETUNE_DATA", raising=False)


def nearest_class_mean(ds, side: int = 8) -> float:
    """Test accuracy of the nearest class mean of ``side`` × ``side`` block-averaged images:
    a linear classifier of the pixels, fit on the training split."""
    def features(x: np.ndarray) -> np.ndarray:
        n, c, h, _ = x.shape
        f = h // side
        blocks = np.asarray(x[:, :, :f * side, :f * side], np.float32)
        return blocks.reshape(n, c, side, f, side, f).mean((3, 5)).reshape(n, -1)

    train, test = features(ds.train_x), features(ds.test_x)
    means = np.stack([train[ds.train_y == c].mean(0) for c in range(ds.num_classes)])
    dist = (test ** 2).sum(1)[:, None] - 2 * test @ means.T + (means ** 2).sum(1)[None]
    return float((dist.argmin(1) == ds.test_y).mean())


def test_every_dataset_read_from_files_has_a_fake():
    assert set(FAKES) <= set(DATASETS.names()) - EMBEDDED, "a fake of no registered dataset"
    for name in EMBEDDED:
        with pytest.raises(UsageError, match=f"NAME '{name}'.*embedded"):
            fake_of(name)


@pytest.mark.parametrize("name", FILE_BASED)
def test_the_real_loader_reads_the_fake_and_it_is_learnable(name, tmp_path):
    fake = fake_of(name)  # a dataset read from files without a fake fails here
    per_class, test_per_class = SMALL.get(name, (fake.per_class, fake.test_per_class))
    root = tmp_path / name
    written = write_fake(name, root, per_class, test_per_class, seed=0)
    assert written.files > 0 and written.bytes > 0
    ds = load_dataset(DataSpec(name=name), root)
    k = DATASETS.get(name).num_classes
    assert ds.num_classes == k
    for x, y, per in ((ds.train_x, ds.train_y, per_class),
                      (ds.test_x, ds.test_y, test_per_class)):
        assert x.dtype == np.uint8 and x.ndim == 4 and x.shape[1] in (1, 3)
        assert x.shape[2] == x.shape[3] and len(x) == len(y) == k * per
        assert y.dtype == np.int64 and 0 <= y.min() and y.max() < k
        assert 40 < x.mean() < 215 and x.std() > 20  # neither blank nor saturated
    clean = ds.train_y
    if name == "cifar100n":  # the human labels: an exact share of the clean ones flipped
        clean = load_dataset("cifar100", root).train_y
        assert (ds.train_y != clean).mean() == pytest.approx(CIFAR100N_NOISE, abs=0.01)
    assert (np.bincount(clean, minlength=k) == per_class).all()
    assert (np.bincount(ds.test_y, minlength=k) == test_per_class).all()
    if name in DECODED:
        assert isinstance(ds.train_x, np.memmap) or isinstance(ds.train_x.base, np.memmap)
    assert load_dataset(DataSpec(name=name), root).fingerprint == ds.fingerprint
    accuracy = nearest_class_mean(ds)
    assert accuracy > (10 if k >= 1000 else 3) / k, (name, accuracy)


def test_imagenet1k_at_its_defaults_has_every_class_and_stays_small(tmp_path):
    root = tmp_path / "imagenet1k"
    written = write_fake("imagenet1k", root)
    assert (written.per_class, written.test_per_class) == (2, 1)
    assert written.files == 3000 and written.bytes < 50e6, written
    assert len(list((root / "train").iterdir())) == len(list((root / "val").iterdir())) == 1000
    assert all(p.name.endswith(".JPEG") for p in (root / "val" / "n00000999").iterdir())
    ds = load_dataset("imagenet1k", root)
    assert ds.train_x.shape == (2000, 3, 64, 64) and ds.test_x.shape == (1000, 3, 64, 64)
    assert nearest_class_mean(ds) > 10 / 1000


def _contents(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith("CORETUNE_FAKE_")}


@pytest.mark.parametrize("name", sorted(set(FAKES) - {"imagenet1k"}))  # its writer: tiny's
def test_the_same_seed_writes_the_same_bytes(name, tmp_path):
    per_class, test_per_class = SMALL[name]
    a, b, c = (_contents(write_fake(name, tmp_path / d, per_class, test_per_class, seed).root)
               for d, seed in (("a", 0), ("b", 0), ("c", 1)))
    assert a == b and len(a) > 1
    assert a.keys() == c.keys() and a != c


def test_cifar100n_holds_the_images_of_cifar100_of_the_same_seed(tmp_path):
    write_fake("cifar100", tmp_path / "c100", 2, 1, seed=3)
    write_fake("cifar100n", tmp_path / "c100n", 2, 1, seed=3)
    plain, noisy = _contents(tmp_path / "c100"), _contents(tmp_path / "c100n")
    assert noisy.keys() - plain.keys() == {"CIFAR-100_human.pt"}
    assert all(noisy[f] == plain[f] for f in plain)


def test_a_fake_replaces_its_own_files_and_refuses_anything_else(tmp_path):
    root = tmp_path / "tiny"
    write_fake("tiny_imagenet", root, 2, 1)
    write_fake("tiny_imagenet", root, 1, 1)  # the earlier fake's extra images go
    assert len(load_dataset("tiny_imagenet", root).train_y) == 200
    write_fake("cifar10", root, 1, 1)  # a second dataset beside it
    assert len(load_dataset("cifar10", root).train_y) == 10
    write_fake("cifar100", root / "c", 1, 1)
    write_fake("cifar100n", root / "c", 1, 1)  # cifar100's fake owns the pickles: replaced
    real = tmp_path / "real"
    (real / "cifar-10-batches-py").mkdir(parents=True)
    (real / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"the real thing")
    with pytest.raises(PathError, match="cifar-10-batches-py is there and was not written"):
        write_fake("cifar10", real, 1, 1)
    assert (real / "cifar-10-batches-py" / "data_batch_1").read_bytes() == b"the real thing"
    assert not list(real.glob("CORETUNE_FAKE_*"))
    with pytest.raises(PathError, match="cannot make the folder"):
        write_fake("cifar10", real / "cifar-10-batches-py" / "data_batch_1", 1, 1)


def test_cli_writes_a_fake_and_refuses_a_name_without_files(capsys, tmp_path):
    root = tmp_path / "c10"
    assert main(["data", "fake", "cifar10", "--root", str(root), "--per-class", "3"]) == 0
    out = capsys.readouterr().out
    assert "fake cifar10: 10 classes × 3 train + 1 test images" in out
    assert "never a benchmark" in out and f"--data-root {root}" in out
    assert (root / "cifar-10-batches-py" / "data_batch_5").exists()
    assert len(load_dataset("cifar10", root).train_y) == 30
    for name, needle in (("digits", "NAME 'digits': the dataset is embedded"),
                         ("nosuch", "NAME: unknown dataset 'nosuch'")):
        assert main(["data", "fake", name, "--root", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / name).exists()
    assert main(["data", "fake", "cifar10", "--root", str(root), "--per-class", "0"]) == 2
    assert "--per-class must be a whole number ≥ 1, got 0" in capsys.readouterr().err
    with pytest.raises(UnknownNameError):
        fake_of("cifar_10")
