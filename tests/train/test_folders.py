"""Datasets from files: CIFAR pickles, CIFAR-100N labels, ImageFolder and Tiny ImageNet
layouts (decoded once, memory-mapped), injected label noise; missing files named."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from coretune.spec import DataSpec, LabelNoiseSpec
from coretune.train.data import DatasetMissingError, load_dataset, noisy_labels


def _pickle(path, data, labels, key):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump({b"data": data.reshape(len(data), -1), key: list(labels)}, fh)


@pytest.fixture
def cifar100_root(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (50, 3, 32, 32), dtype=np.uint8)
    test = rng.integers(0, 256, (20, 3, 32, 32), dtype=np.uint8)
    ytr, yte = np.arange(50) % 100, np.arange(20) % 100
    _pickle(tmp_path / "cifar-100-python" / "train", train, ytr, b"fine_labels")
    _pickle(tmp_path / "cifar-100-python" / "test", test, yte, b"fine_labels")
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
    torch.save({"noisy_label": noisy, "clean_label": ytr}, root / "CIFAR-100_human.pt")
    ds = load_dataset("cifar100n", root)
    assert np.array_equal(ds.train_y, noisy) and ds.name == "cifar100n"
    torch.save({"noisy_label": noisy, "clean_label": noisy}, root / "CIFAR-100_human.pt")
    with pytest.raises(ValueError, match="does not match"):
        load_dataset("cifar100n", root)


def _png(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 16), colour).save(path)


def test_tiny_imagenet_layout_is_decoded_once_and_memory_mapped(tmp_path, monkeypatch):
    monkeypatch.setenv("CORETUNE_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "tiny"
    wnids = [f"n{i:08d}" for i in range(200)]
    for i, w in enumerate(wnids[:3]):
        for j in range(2):
            _png(root / "train" / w / "images" / f"{w}_{j}.JPEG", (i * 80, 10, 10))
    for w in wnids[3:]:  # the other classes: one image each
        _png(root / "train" / w / "images" / f"{w}_0.JPEG", (5, 5, 5))
    _png(root / "val" / "images" / "val_0.JPEG", (160, 10, 10))
    (root / "val" / "val_annotations.txt").write_text(f"val_0.JPEG\t{wnids[2]}\t0\t0\t1\t1\n")
    ds = load_dataset(DataSpec(name="tiny_imagenet", image_size=16), root)
    assert ds.train_x.shape == (6 + 197, 3, 16, 16) and ds.test_y.tolist() == [2]
    assert isinstance(ds.train_x, np.memmap) or isinstance(ds.train_x.base, np.memmap)
    assert ds.train_x[2, 0, 0, 0] == 80 and ds.test_x[0, 0, 0, 0] == 160
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
