"""Synthetic sets from .npz files (coretune.train.synthetic_file): a round trip, and every
malformed file refused in one line that starts with the field, nothing unpickled."""

from __future__ import annotations

import hashlib
import io
import pickle
import zipfile

import numpy as np
import pytest

from coretune.errors import DataError, DataMissingError
from coretune.train.synthetic_file import (
    load_synthetic_npz,
    parse_synthetic_npz,
    save_synthetic_npz,
    synthetic_npz_bytes,
)

SHAPE = dict(channels=3, height=8, width=8, num_classes=5)


def arrays(n: int = 6):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)
    labels = np.arange(n) % 5
    soft = rng.dirichlet(np.ones(5), n).astype(np.float32)
    return images, labels, soft


def raw_npz(**members) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **members)
    return buf.getvalue()


def refused(data: bytes, match: str, **shape):
    with pytest.raises(DataError) as info:
        parse_synthetic_npz(data, **{**SHAPE, **shape}, field="synthetic.file")
    message = str(info.value)
    assert message.startswith("synthetic.file: "), message
    assert "\n" not in message
    assert match in message, message
    return message


@pytest.mark.parametrize("with_soft", [False, True])
def test_round_trip(tmp_path, with_soft):
    images, labels, soft = arrays()
    path = tmp_path / "set.npz"
    digest = save_synthetic_npz(path, images, labels, soft if with_soft else None)
    got = load_synthetic_npz(path, **SHAPE)
    assert np.array_equal(got.images, images) and got.images.dtype == np.uint8
    assert np.array_equal(got.labels, labels) and got.labels.dtype == np.int64
    if with_soft:
        assert np.array_equal(got.soft_labels, soft) and got.soft_labels.dtype == np.float32
    else:
        assert got.soft_labels is None
    assert got.sha256 == digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(got) == 6


def test_equal_arrays_give_equal_bytes(tmp_path):
    images, labels, soft = arrays()
    a = save_synthetic_npz(tmp_path / "a.npz", images, labels, soft)
    b = save_synthetic_npz(tmp_path / "b.npz", images.copy(), labels.astype(np.int32), soft)
    assert a == b
    assert synthetic_npz_bytes(images, labels) != synthetic_npz_bytes(images, labels, soft)


def test_files_written_by_numpy_are_read():
    images, labels, soft = arrays()
    got = parse_synthetic_npz(raw_npz(images=images, labels=labels.astype(np.uint8),
                                      soft_labels=soft.astype(np.float64)), **SHAPE)
    assert got.labels.dtype == np.int64 and got.soft_labels.dtype == np.float32


def test_a_missing_file_or_a_directory_is_refused(tmp_path):
    with pytest.raises(DataMissingError, match=r"^synthetic\.file: .*not found"):
        load_synthetic_npz(tmp_path / "nope.npz", **SHAPE)
    with pytest.raises(DataError, match=r"^synthetic\.file: .*cannot be read"):
        load_synthetic_npz(tmp_path, **SHAPE)


def test_the_path_is_named_and_the_field_is_the_callers(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"^datasets\[0\]\.file: not an \.npz archive.*bad\.npz"):
        load_synthetic_npz(path, **SHAPE, field="datasets[0].file")


def test_not_an_npz():
    refused(b"hello", "not an .npz archive")
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    refused(buf.getvalue(), "not an .npz archive (a single ndarray)")
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("images", b"raw bytes, no .npy")
    refused(zbuf.getvalue(), "missing labels")


def test_missing_and_unknown_keys():
    images, labels, soft = arrays()
    refused(raw_npz(labels=labels), "missing images")
    refused(raw_npz(images=images), "missing labels")
    refused(raw_npz(images=images, labels=labels, weights=soft), "unknown array(s) ['weights']")


def test_a_member_that_is_no_npy_is_refused():
    images, labels, _ = arrays()
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("images.npy", b"\x93NUMPY garbage")
        zf.writestr("labels.npy", b"")
    refused(zbuf.getvalue(), "images cannot be read")
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:  # entries without .npy come back as raw bytes
        zf.writestr("images", images.tobytes())
        zf.writestr("labels", labels.tobytes())
    refused(zbuf.getvalue(), "images is not a .npy array")


class Boom:
    ran = False

    def __reduce__(self):
        return (Boom._explode, ())

    @staticmethod
    def _explode():
        Boom.ran = True
        return "exploded"


def test_an_object_array_is_refused_without_running_it():
    images, labels, _ = arrays()
    evil = np.empty(6, dtype=object)
    evil[:] = [Boom() for _ in range(6)]
    data = raw_npz(images=images, labels=evil)
    assert b"_explode" in data  # the pickle is really in the file
    refused(data, "labels is an object array (pickled data is refused)")
    assert not Boom.ran
    pickle.loads(pickle.dumps(Boom()))  # and the payload would have run if unpickled
    assert Boom.ran


@pytest.mark.parametrize("change,match", [
    (dict(images=np.zeros((6, 3, 8, 8), np.float32)),
     "images has dtype float32, expected uint8"),
    (dict(images=np.zeros((6, 8, 8), np.uint8)), "images has 3 dimensions"),
    (dict(images=np.zeros((6, 1, 8, 8), np.uint8)), "images are (1, 8, 8) (C, H, W)"),
    (dict(images=np.zeros((6, 3, 8, 9), np.uint8)), "the dataset's are (3, 8, 8)"),
    (dict(images=np.zeros((0, 3, 8, 8), np.uint8), labels=np.zeros(0, np.int64)),
     "images is empty"),
    (dict(labels=np.zeros((6, 1), np.int64)), "labels has 2 dimensions"),
    (dict(labels=np.zeros(6, np.float32)), "labels has dtype float32"),
    (dict(labels=np.zeros(5, np.int64)), "labels has 5 entries for 6 images"),
    (dict(labels=np.array([0, 1, 2, 3, 4, 5])), "labels has 1 value(s) outside [0, 5), e.g. 5"),
    (dict(labels=np.array([0, -1, 2, 3, 4, 0])), "outside [0, 5), e.g. -1"),
    (dict(soft_labels=np.zeros(6, np.float32)), "soft_labels has 1 dimensions"),
    (dict(soft_labels=np.zeros((6, 5), np.int64)), "soft_labels has dtype int64"),
    (dict(soft_labels=np.zeros((5, 5), np.float32)), "soft_labels has 5 rows for 6 images"),
    (dict(soft_labels=np.zeros((6, 4), np.float32)),
     "soft_labels has 4 columns, the dataset has 5 classes"),
    (dict(soft_labels=np.full((6, 5), np.nan, np.float32)), "30 non-finite"),
])
def test_each_malformed_field_is_refused_by_name(change, match):
    images, labels, soft = arrays()
    members = dict(images=images, labels=labels, soft_labels=soft)
    members.update(change)
    refused(raw_npz(**members), match)


def test_the_writer_refuses_non_uint8_images(tmp_path):
    images, labels, _ = arrays()
    with pytest.raises(ValueError, match="uint8"):
        save_synthetic_npz(tmp_path / "x.npz", images.astype(np.float32), labels)
    assert not (tmp_path / "x.npz").exists()
