"""scikit-learn's 1,797 real 8×8 handwritten digits: the embedded default dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from coretune.spec import AugmentSpec, DataSpec
from coretune.train.data import Splits, register_dataset, stratified_split


@register_dataset("digits", default_root=lambda root: Path("sklearn://load_digits"),
                  num_classes=10, augment=AugmentSpec(pad=1), test_fraction=0.2)
def load_digits(root: Path | None, download: bool, spec: DataSpec) -> Splits:
    """UCI digits as scikit-learn ships them (0–16 scaled to 0–255); a stratified, seeded
    test split of ``test_fraction`` (default 0.2)."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # [N,1,8,8]
    labels = bunch.target.astype(np.int64)
    tr, te = stratified_split(labels, spec.test_fraction or 0.2, spec.split_seed)
    return Splits(images[tr], labels[tr], images[te], labels[te])
