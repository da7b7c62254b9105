"""Datasets from files: CIFAR pickles, CIFAR-100N labels, ImageFolder and Tiny ImageNet
layouts (decoded once, memory-mapped), injected label noise; missing files named."""

from __future__ import annotations

import numpy as np
import pytest

from coretune.spec import DataSpec, LabelNoiseSpec
from coretune.train.data import DatasetMissingError, load_dataset, noisy_labels
from tests.train.formats import write_cifar100n_labels, write_cifar_pickle, write_tiny_imagenet


@pytest.fixture
def cifar100_root(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (50, 3, 32, 32), dtype=np.uint8)
    test = rng.integers(0, 256, (20, 3, 32, 32), dtype=np.uint8)
    ytr, yte = np.arange(50) % 100, np.arange(20) % 100
    write_cifar_pickle(tmp_path / "cifar-100-python" / "train", train, ytr, b"fine_labels")
    write_cifar_pickle(tmp_path / "cifar-100-python" / "test", test, yte, b"fine_labels")
    return tmp_path, train, ytr


def test_cifar_pickles_are_read_as_they_are(cifar100_root):
    root, train, ytr = cifar100_root
    ds = load_dataset("cifar100", root)
    assert np.array_equal(ds.train_x, train) and np.array_equal(ds.train_y, ytr)
    assert ds.test_x.shape == (20, 3, 32, 32) and ds.num_classes == 100
    with pytest.raises(DatasetMissingError, match="cifar-10-batches-py/data_batch_1"):
        load_dataset("cifar10", root)


def test_cifar100n_takes_the_human_labels(cifar100_root):
    root, _, ytr = cifar100_root
    with pytest.raises(DatasetMissingError, match="CIFAR-100_human.pt"):
        load_dataset("cifar100n", root)
    noisy = (ytr + 1) % 100
    write_cifar100n_labels(root, noisy, ytr)
    ds = load_dataset("cifar100n", root)
    assert np.array_equal(ds.train_y, noisy) and ds.name == "cifar100n"
    write_cifar100n_labels(root, noisy, noisy)
    with pytest.raises(ValueError, match="does not match"):
        load_dataset("cifar100n", root)


def test_tiny_imagenet_layout_is_decoded_once_and_memory_mapped(tmp_path, monkeypatch):
    monkeypatch.setenv("CORETUNE_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "tiny"
    # three classes of two images (red 40·class), the other 197 one image each
    written = write_tiny_imagenet(root, other_classes_empty=False)
    ds = load_dataset(DataSpec(name="tiny_imagenet", image_size=16), root)
    assert ds.train_x.shape == (6 + 197, 3, 16, 16) and ds.test_y.tolist() == [2, 199]
    assert np.array_equal(ds.train_y, written.train_y)
    assert isinstance(ds.train_x, np.memmap) or isinstance(ds.train_x.base, np.memmap)
    assert ds.train_x[2, 0, 0, 0] == 40 and ds.test_x[0, 0, 0, 0] == 14
    assert len(list((tmp_path / "cache" / "decoded").glob("*.npy"))) == 2
    again = load_dataset(DataSpec(name="tiny_imagenet", image_size=16), root)
    assert again.fingerprint == ds.fingerprint
    with pytest.raises(DatasetMissingError, match="train/"):
        load_dataset("imagenet1k", tmp_path / "nowhere")


@pytest.mark.parametrize("kind", ["symmetric", "pairwise"])
def test_label_noise_flips_exactly_the_rate(kind):
    y = np.arange(1000) % 10
    noisy = noisy_labels(y, 10, LabelNoiseSpec(kind=kind, rate=0.3, seed=1))
    flipped = noisy != y
    assert flipped.sum() == 300
    if kind == "pairwise":
        assert ((noisy[flipped] - y[flipped]) % 10 == 1).all()
    ds = load_dataset(DataSpec(name="digits", label_noise={"kind": kind, "rate": 0.2}))
    clean = load_dataset("digits")
    assert (ds.train_y != clean.train_y).mean() == pytest.approx(0.2, abs=1e-3)
    assert np.array_equal(ds.test_y, clean.test_y) and ds.fingerprint != clean.fingerprint
