"""Stratified splits where scikit-learn refuses one: a class of one member (a pseudo-label
cluster of one in ELFS's β search) and fewer held-out samples than classes (CIFAR-100's
2 % validation split of a small stand-in) — both broke smoke rehearsals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from coretune.errors import DataError
from coretune.train.data import stratified_split


def test_where_scikit_learn_splits_the_split_is_its_own():
    labels = np.repeat(np.arange(10), 30)
    keep, held = stratified_split(labels, 0.1, 3)
    k, h = train_test_split(np.arange(300), test_size=0.1, stratify=labels, random_state=3)
    assert np.array_equal(keep, np.sort(k)) and np.array_equal(held, np.sort(h))


def _check(labels: np.ndarray, fraction: float, keep: np.ndarray, held: np.ndarray) -> None:
    assert len(held) == math.ceil(fraction * len(labels))
    assert np.array_equal(np.sort(np.concatenate([keep, held])), np.arange(len(labels)))
    assert set(labels[keep]) == set(labels)  # every class keeps a sample


def test_a_class_of_one_stays_in_the_kept_split():
    labels = np.concatenate([np.repeat(np.arange(9), 20), [9]])  # class 9: one member
    keep, held = stratified_split(labels, 0.1, 0)
    _check(labels, 0.1, keep, held)
    assert 9 not in labels[held]
    counts = np.bincount(labels[held], minlength=10)[:9]  # by shares: 2 each, one more
    assert sorted(counts.tolist()) == [2] * 8 + [3]  # (⌈18.1⌉ = 19)


def test_fewer_held_out_samples_than_classes():
    labels = np.repeat(np.arange(100), 5)[:490]  # 2 % of 490: ten samples, 100 classes
    keep, held = stratified_split(labels, 0.02, 0)
    _check(labels, 0.02, keep, held)
    assert len(set(labels[held])) == 10  # at most one per class
    again = stratified_split(labels, 0.02, 0)
    assert np.array_equal(again[1], held)  # seeded
    assert not np.array_equal(stratified_split(labels, 0.02, 1)[1], held)


def test_nothing_to_hold_out_is_refused():
    with pytest.raises(DataError, match="every class has one sample"):
        stratified_split(np.arange(5), 0.2, 0)
