import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from coretune.train.data import (
    DatasetMissingError,
    UnknownDatasetError,
    load_dataset,
    to_device,
)
from coretune.train.datasets.fashion_mnist import read_idx
from tests.train.formats import write_fashion_mnist


def test_digits_is_real_and_split_stratified():
    ds = load_dataset("digits")
    assert ds.train_x.dtype == np.uint8 and ds.train_x.shape[1:] == (1, 8, 8)
    assert len(ds.train_y) + len(ds.test_y) == 1797
    assert ds.train_x.max() == 255 and ds.train_x.min() == 0
    train_share = np.bincount(ds.train_y) / len(ds.train_y)
    test_share = np.bincount(ds.test_y) / len(ds.test_y)
    assert np.abs(train_share - test_share).max() < 0.01
    again = load_dataset("digits")
    assert np.array_equal(ds.train_y, again.train_y)  # fixed split


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_reads_idx_files(tmp_path, gz):
    written = write_fashion_mnist(tmp_path, np.random.default_rng(0), 6, 3, gz=gz)
    assert (tmp_path / f"train-images-idx3-ubyte{'.gz' if gz else ''}").exists()
    ds = load_dataset("fashion_mnist", tmp_path)
    assert np.array_equal(ds.train_x, written.train_x)
    assert np.array_equal(ds.train_y, written.train_y)
    assert np.array_equal(ds.test_y, written.test_y)
    assert ds.input_shape == (1, 28, 28)


def test_idx_with_wrong_size_is_rejected(tmp_path):
    path = tmp_path / "bad-idx"
    path.write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 10) + b"\x00" * 4)
    with pytest.raises(ValueError, match="header says"):
        read_idx(path)


def test_missing_dataset_names_path_and_remedy(tmp_path):
    with pytest.raises(DatasetMissingError) as err:
        load_dataset("fashion_mnist", tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value) and "dataset-fashion-mnist" in str(err.value)
    with pytest.raises(DatasetMissingError, match=str(tmp_path)):
        load_dataset("cifar10", tmp_path)


def test_unknown_dataset():
    with pytest.raises(UnknownDatasetError, match="available: .*digits"):
        load_dataset("imagenet-21k-typo")


def test_to_device_normalises_with_train_statistics():
    ds = load_dataset("digits")
    data = to_device(ds)
    x = data.normalize(data.train_x)
    assert torch.allclose(x.mean(), torch.tensor(0.0), atol=1e-4)
    assert torch.allclose(x.std(), torch.tensor(1.0), atol=1e-2)


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_debian_package():
    ds = load_dataset("fashion_mnist")
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert np.bincount(ds.train_y).tolist() == [6000] * 10
