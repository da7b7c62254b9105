"""A plugin dataset: scikit-learn's digits with the training labels permuted (seeded).

Same images, different ground truth: a label-free selector must not notice."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from coretune.spec import AugmentSpec, DataSpec
from coretune.train.data import dataset_info, register_dataset


@register_dataset("digits_permuted", default_root=lambda root: Path("sklearn://load_digits"),
                  num_classes=10, augment=AugmentSpec(pad=1), test_fraction=0.2)
def _load(root, download, spec: DataSpec):
    """digits' splits with the training labels permuted by a fixed seed."""
    splits = dataset_info("digits").loader(root, download, spec)
    perm = np.random.default_rng(1234).permutation(len(splits.train_y))
    return splits._replace(train_y=splits.train_y[perm])
