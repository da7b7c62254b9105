"""Data files in pickle formats are read without running code from them."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from coretune.errors import DataError
from coretune.train.data import load_dataset
from coretune.train.safe_load import load_array_pickle, load_torch_arrays
from tests.train.formats import write_cifar100n_labels, write_cifar_pickle


class _MakesADirectory:
    """What a crafted file holds: unpickling it calls ``os.mkdir(path)``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


def _cifar100(root, train_batch) -> None:
    x = np.zeros((4, 3, 32, 32), np.uint8)
    write_cifar_pickle(root / "cifar-100-python" / "test", x, [0, 1, 2, 3], b"fine_labels")
    (root / "cifar-100-python").mkdir(parents=True, exist_ok=True)
    with open(root / "cifar-100-python" / "train", "wb") as fh:
        pickle.dump(train_batch, fh)


def test_a_crafted_cifar_batch_is_refused_before_its_code_runs(tmp_path):
    marker = tmp_path / "ran"
    _cifar100(tmp_path, {b"data": _MakesADirectory(marker), b"fine_labels": [0]})
    with pytest.raises(DataError, match=r"cifar-100-python/train: refused to load "
                                        r"(posix|os)\.mkdir"):
        load_dataset("cifar100", tmp_path)
    assert not marker.exists()


def test_a_pickle_that_is_not_a_cifar_batch_is_refused(tmp_path):
    _cifar100(tmp_path, [1, 2, 3])
    with pytest.raises(DataError, match="not a CIFAR batch"):
        load_dataset("cifar100", tmp_path)
    (tmp_path / "cifar-100-python" / "train").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="not a readable pickle"):
        load_dataset("cifar100", tmp_path)


def test_real_cifar_batches_with_arrays_and_bytes_still_load(tmp_path):
    batch = {b"batch_label": b"training batch 1 of 1", b"fine_labels": [3, 1],
             b"data": np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072),
             b"filenames": [b"a.png", b"b.png"]}
    (tmp_path / "b").write_bytes(pickle.dumps(batch, protocol=2))  # as Python 2 wrote them
    got = load_array_pickle(tmp_path / "b")
    assert got[b"fine_labels"] == [3, 1] and np.array_equal(got[b"data"], batch[b"data"])


def test_a_crafted_cifar_n_label_file_is_refused_before_its_code_runs(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"noisy_label": _MakesADirectory(marker)}, tmp_path / "evil.pt")
    with pytest.raises(DataError, match="evil.pt: refused to load it"):
        load_torch_arrays(tmp_path / "evil.pt")
    assert not marker.exists()
    write_cifar100n_labels(tmp_path, np.arange(3), np.arange(3))  # arrays: accepted
    labels = load_torch_arrays(tmp_path / "CIFAR-100_human.pt")
    assert labels["noisy_label"].tolist() == [0, 1, 2]
    torch.save({"noisy_label": torch.arange(3, dtype=torch.int16)}, tmp_path / "t.pt")
    assert load_torch_arrays(tmp_path / "t.pt")["noisy_label"].tolist() == [0, 1, 2]
