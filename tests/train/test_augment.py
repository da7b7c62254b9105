import numpy as np
import torch

from coretune.spec import AugmentSpec
from coretune.train.augment import augment_batch, augment_views, view_params


def test_views_replay_exactly_and_vary_with_epoch_and_seed():
    spec = AugmentSpec(pad=4, flip=True)
    idx = np.arange(2000)
    a = view_params(3, 7, idx, spec)
    b = view_params(3, 7, idx, spec)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    c = view_params(3, 8, idx, spec)
    d = view_params(4, 7, idx, spec)
    assert (a[0] != c[0]).mean() > 0.8 and (a[1] != d[1]).mean() > 0.8
    # offsets cover [0, 2*pad] roughly uniformly; flips about half
    assert set(np.unique(a[0])) == set(range(9)) and set(np.unique(a[1])) == set(range(9))
    assert 0.45 < a[2].mean() < 0.55


def test_no_flip_when_spec_forbids_it():
    _, _, flip = view_params(0, 0, np.arange(1000), AugmentSpec(pad=1, flip=False))
    assert not flip.any()


def test_crop_and_flip_match_hand_worked_case():
    img = torch.arange(9, dtype=torch.uint8).view(1, 1, 3, 3)  # [[0,1,2],[3,4,5],[6,7,8]]
    # pad 1, offset (0, 0): the window starts one row/col into the zero border
    out = augment_batch(img, torch.tensor([0]), torch.tensor([0]), torch.tensor([False]), 1)
    assert out[0, 0].tolist() == [[0, 0, 0], [0, 0, 1], [0, 3, 4]]
    out = augment_batch(img, torch.tensor([2]), torch.tensor([1]), torch.tensor([False]), 1)
    assert out[0, 0].tolist() == [[3, 4, 5], [6, 7, 8], [0, 0, 0]]
    out = augment_batch(img, torch.tensor([1]), torch.tensor([1]), torch.tensor([True]), 1)
    assert out[0, 0].tolist() == [[2, 1, 0], [5, 4, 3], [8, 7, 6]]


def test_augment_views_is_a_function_of_seed_epoch_index():
    rng = np.random.default_rng(0)
    imgs = torch.as_tensor(rng.integers(0, 256, (6, 3, 8, 8)), dtype=torch.uint8)
    spec = AugmentSpec(pad=2, flip=True)
    idx = np.array([10, 11, 12, 13, 14, 15])
    full = augment_views(imgs, 5, 2, idx, spec)
    part = augment_views(imgs[2:4], 5, 2, idx[2:4], spec)  # same views when batched differently
    assert torch.equal(full[2:4], part)
    assert full.shape == imgs.shape and full.dtype == torch.uint8
