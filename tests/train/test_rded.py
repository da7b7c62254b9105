"""RDED / CA2D synthesis (coretune.train.rded): crop draws, resizing, scoring, selection and
stitching on hand-made cases, and the whole selection against a one-crop-at-a-time
reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coretune.errors import DataError, SpecError
from coretune.train.rded import (
    class_generator,
    crop_resize,
    draw_crop_boxes,
    random_pool,
    rded_select,
    score_crops,
    top_score_pool,
)


def normalize(u: torch.Tensor) -> torch.Tensor:
    return u.float() / 127.5 - 1.0


def bright_observer(x: torch.Tensor) -> torch.Tensor:
    """Two classes; class 0's logit grows with channel 0's mean, so its CE falls with it."""
    m = x[:, 0].mean(dim=(1, 2))
    return torch.stack([10 * m, -10 * m], dim=1)


def linear_observer(channels: int, size: int, classes: int, seed: int = 0):
    g = np.random.default_rng(seed)
    weight = g.normal(size=(channels * size * size, classes)).astype(np.float32) / size
    bias = g.normal(size=classes).astype(np.float32)

    def torch_obs(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ torch.from_numpy(weight) + torch.from_numpy(bias)

    def numpy_obs(x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[0], -1).astype(np.float64) @ weight + bias

    return torch_obs, numpy_obs


# ---------------------------------------------------------------- crop boxes


@pytest.mark.parametrize("shape,scale,ratio", [((32, 32), (0.08, 1.0), (1.0, 1.0)),
                                               ((24, 40), (0.08, 1.0), (3 / 4, 4 / 3)),
                                               ((16, 16), (0.5, 0.9), (3 / 4, 4 / 3))])
def test_crop_boxes_lie_inside_and_cover_the_scale_range(shape, scale, ratio):
    height, width = shape
    boxes = draw_crop_boxes(20000, height, width, scale, ratio,
                            torch.Generator().manual_seed(1)).numpy()
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (h >= 1).all() and (w >= 1).all()
    assert (top + h <= height).all() and (left + w <= width).all()
    full = height * width
    in_ratio = width / height  # torchvision's fallback when no draw fits: a centre crop
    fw, fh = ((width, round(width / ratio[0])) if in_ratio < ratio[0] else
              (round(height * ratio[1]), height) if in_ratio > ratio[1] else (width, height))
    drawn = ~((h == fh) & (w == fw) & (top == (height - fh) // 2) & (left == (width - fw) // 2))
    # each side is rounded from its exact value: within 0.5 px of it
    assert ((w + 0.5) * (h + 0.5) / full >= scale[0])[drawn].all()
    assert ((w - 0.5) * (h - 0.5) / full <= scale[1])[drawn].all()
    assert ((w + 0.5) / (h - 0.5) >= ratio[0])[drawn].all()
    assert ((w - 0.5) / (h + 0.5) <= ratio[1])[drawn].all()
    area = h * w / full
    biggest = min(scale[1], fw * fh / full)  # the largest box the ratio allows
    assert area.min() < scale[0] + 0.05 and area.max() > biggest - 0.1
    # positions spread over the whole image
    assert top.min() == 0 and left.min() == 0
    assert (top + h).max() == height and (left + w).max() == width


def test_square_crops_by_default():
    boxes = draw_crop_boxes(500, 32, 32, generator=torch.Generator().manual_seed(0))
    assert (boxes[:, 2] == boxes[:, 3]).all()


def test_crop_boxes_refuse_bad_scale():
    with pytest.raises(SpecError, match="scale"):
        draw_crop_boxes(3, 8, 8, (0.0, 1.0))
    with pytest.raises(SpecError, match="scale"):
        draw_crop_boxes(3, 8, 8, (0.5, 1.5))


# ---------------------------------------------------------------- resizing


def test_crop_resize_copies_a_box_of_the_output_size_exactly():
    imgs = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    boxes = torch.tensor([[3, 4, 16, 16], [0, 0, 32, 32], [16, 16, 16, 16]])
    out = crop_resize(imgs, torch.tensor([0, 1, 2]), boxes, (16, 16))
    assert torch.equal(out[0], imgs[0, :, 3:19, 4:20])
    assert torch.equal(out[2], imgs[2, :, 16:, 16:])
    # halving averages 2x2 blocks (rounded)
    block = imgs[1].float().view(3, 16, 2, 16, 2).mean(dim=(2, 4))
    assert (out[1].float() - block).abs().max() <= 0.5


def test_crop_resize_upsamples_like_interpolate_and_ignores_the_batch():
    imgs = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    boxes = torch.tensor([[5, 7, 9, 11], [0, 0, 32, 32]])
    out = crop_resize(imgs, torch.tensor([2, 0]), boxes, (20, 24))
    ref = F.interpolate(imgs[2:3, :, 5:14, 7:18].float(), size=(20, 24), mode="bilinear",
                        align_corners=False)
    assert (out[0].float() - ref[0]).abs().max() <= 1
    alone = crop_resize(imgs, torch.tensor([2]), boxes[:1], (20, 24))
    assert torch.equal(alone[0], out[0])


# ---------------------------------------------------------------- scoring


def test_score_crops_is_the_cross_entropy_of_the_true_label():
    x = torch.randn(10, 3, 4, 4)
    y = torch.randint(0, 2, (10,))
    ce = score_crops(x, y, bright_observer, batch_size=3)
    ref = F.cross_entropy(bright_observer(x), y, reduction="none")
    torch.testing.assert_close(ce, ref)


# ---------------------------------------------------------------- selection


def test_a_known_best_crop_wins():
    """One pool image has a bright 8x8 patch at (4, 6); with 8x8 crops the crop exactly on
    the patch is the only all-bright one, so it wins, and the factor-1 output is all bright."""
    pool = np.zeros((6, 3, 16, 16), np.uint8)
    pool[3, 0, 4:12, 6:14] = 255
    pool[[0, 1, 2, 4, 5], 0] = 40
    drawn = draw_crop_boxes(6 * 400, 16, 16, (0.25, 0.25), generator=class_generator(3, 0))
    assert [4, 6, 8, 8] in drawn[3 * 400:4 * 400].tolist()  # seed 3 draws the patch's box
    res = rded_select(pool, np.zeros(6, np.int64), bright_observer, normalize, ipc=1, factor=1,
                      num_crop=400, scale=(0.25, 0.25), seed=3)
    assert res.sources.tolist() == [[3]]
    assert res.boxes.tolist() == [[[4, 6, 8, 8]]]
    assert (res.images[0, 0] == 255).all() and (res.images[0, 1:] == 0).all()
    assert res.labels.tolist() == [0]


def test_the_best_image_wins_and_ranks_fill_tiles_in_order():
    """Whole-image crops (scale 1): the ranking is the brightness ranking; factor 2 puts
    ranks 0..3 of ipc=1 at the top-left, top-right, bottom-left, bottom-right quadrants."""
    levels = [10, 200, 90, 250, 30, 140]
    pool = np.stack([np.full((3, 8, 8), v, np.uint8) for v in levels])
    res = rded_select(pool, np.zeros(6, np.int64), bright_observer, normalize, ipc=1, factor=2,
                      num_crop=2, scale=(1.0, 1.0), seed=0)
    assert res.sources.tolist() == [[3, 1, 5, 2]]
    img = res.images[0]
    assert (img[:, :4, :4] == 250).all() and (img[:, :4, 4:] == 200).all()
    assert (img[:, 4:, :4] == 140).all() and (img[:, 4:, 4:] == 90).all()
    assert np.all(np.diff(res.losses[0]) > 0)


@pytest.mark.parametrize("size", [16, 17])
def test_factor_two_tiles_four_crops_in_their_quadrants(size):
    torch_obs, _ = linear_observer(3, size, 3)
    pool = np.random.default_rng(0).integers(0, 256, (30, 3, size, size), dtype=np.uint8)
    labels = np.repeat(np.arange(3), 10)
    ipc = 2
    res = rded_select(pool, labels, torch_obs, normalize, ipc=ipc, factor=2, num_crop=3,
                      seed=5, batch_size=7)
    assert res.images.shape == (3 * ipc, 3, size, size)
    assert res.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert (labels[res.sources] == res.labels[:, None]).all()
    first = (size + 1) // 2  # the first row/column of tiles takes the remainder
    spans = [(0, first), (first, size)]
    for t in range(res.images.shape[0]):
        for k in range(4):
            (r0, r1), (c0, c1) = spans[k // 2], spans[k % 2]
            want = crop_resize(torch.from_numpy(pool), torch.tensor([res.sources[t, k]]),
                               torch.from_numpy(res.boxes[t, k][None]), (r1 - r0, c1 - c0))
            assert np.array_equal(res.images[t, :, r0:r1, c0:c1], want[0].numpy()), (t, k)
    # within a class, rank k*ipc + t sits at output t, tile k: ascending when read k-major
    for c in range(3):
        ranked = res.losses[c * ipc:(c + 1) * ipc].T.ravel()
        assert np.all(np.diff(ranked) >= 0)


def reference_select(pool, labels, numpy_obs, ipc, factor, num_crop, scale, seed):
    """One crop at a time, numpy scoring: (sources, boxes, losses) per output and tile."""
    _, _, height, width = pool.shape
    th, tw = height // factor, width // factor
    need = ipc * factor**2
    out_src, out_box, out_ce = [], [], []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        boxes = draw_crop_boxes(members.size * num_crop, height, width, scale,
                                generator=class_generator(seed, int(c))).numpy()
        best = []
        for i, m in enumerate(members):
            crops = []
            for r in range(num_crop):
                box = boxes[i * num_crop + r]
                crop = crop_resize(torch.from_numpy(pool), torch.tensor([m]),
                                   torch.from_numpy(box[None]), (th, tw))[0].numpy()
                x = crop.astype(np.float64) / 127.5 - 1
                dh, dw = height - th, width - tw
                x = np.pad(x, ((0, 0), (dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2)))
                z = numpy_obs(x[None])[0]
                ce = np.log(np.exp(z - z.max()).sum()) + z.max() - z[c]
                crops.append((ce, r, box))
            ce, r, box = min(crops, key=lambda e: (e[0], e[1]))
            best.append((ce, i, m, box))
        best.sort(key=lambda e: (e[0], e[1]))
        best = best[:need]
        for t in range(ipc):
            tiles = [best[k * ipc + t] for k in range(factor**2)]
            out_src.append([e[2] for e in tiles])
            out_box.append([e[3] for e in tiles])
            out_ce.append([e[0] for e in tiles])
    return np.array(out_src), np.array(out_box), np.array(out_ce)


@pytest.mark.parametrize("factor,ipc", [(1, 3), (2, 1), (2, 2)])
def test_selection_matches_a_brute_force_reference(factor, ipc):
    size, classes = 12, 3
    torch_obs, numpy_obs = linear_observer(3, size, classes, seed=factor + ipc)
    rng = np.random.default_rng(7)
    pool = rng.integers(0, 256, (27, 3, size, size), dtype=np.uint8)
    labels = rng.permutation(np.repeat(np.arange(classes), 9))
    res = rded_select(pool, labels, torch_obs, normalize, ipc=ipc, factor=factor, num_crop=4,
                      seed=11, batch_size=5)
    src, box, ce = reference_select(pool, labels, numpy_obs, ipc, factor, 4, (0.08, 1.0), 11)
    assert np.array_equal(res.sources, src)
    assert np.array_equal(res.boxes, box)
    np.testing.assert_allclose(res.losses, ce, rtol=1e-4, atol=1e-4)


def test_deterministic_given_the_seed():
    torch_obs, _ = linear_observer(3, 8, 2)
    pool = np.random.default_rng(1).integers(0, 256, (16, 3, 8, 8), dtype=np.uint8)
    labels = np.repeat([0, 1], 8)
    kw = dict(ipc=1, factor=2, num_crop=3)
    a = rded_select(pool, labels, torch_obs, normalize, seed=0, **kw)
    b = rded_select(pool, labels, torch_obs, normalize, seed=0, batch_size=3, **kw)
    c = rded_select(pool, labels, torch_obs, normalize, seed=1, **kw)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.boxes, c.boxes)
    # a class's crops do not depend on the other classes in the pool
    only1 = rded_select(pool[8:], labels[8:], torch_obs, normalize, seed=0, **kw)
    assert np.array_equal(only1.boxes, a.boxes[1:])
    assert np.array_equal(only1.sources + 8, a.sources[1:])


def test_a_pool_smaller_than_ipc_times_factor_squared_is_refused():
    pool = np.zeros((7, 3, 8, 8), np.uint8)
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    with pytest.raises(DataError, match=r"class 1 has a pool of 3 images.*ipc\*factor\^2 = 4"):
        rded_select(pool, labels, bright_observer, normalize, ipc=1, factor=2, num_crop=2)
    with pytest.raises(SpecError, match="ipc"):
        rded_select(pool, labels, bright_observer, normalize, ipc=0, factor=1, num_crop=2)
    with pytest.raises(DataError, match="uint8"):
        rded_select(pool.astype(np.float32), labels, bright_observer, normalize, ipc=1,
                    factor=1, num_crop=1)


# ---------------------------------------------------------------- pools


def test_random_pool_is_seeded_per_class_and_capped():
    labels = np.repeat(np.arange(4), [10, 3, 7, 12])
    labels = np.random.default_rng(0).permutation(labels)
    a, b, c = random_pool(labels, 5, 0), random_pool(labels, 5, 0), random_pool(labels, 5, 1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.all(np.diff(a) > 0)
    assert np.bincount(labels[a]).tolist() == [5, 3, 5, 5]


def test_top_score_pool_keeps_the_highest_scores_per_class():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 40)
    scores = rng.normal(size=40).round(1)  # ties: the lower index first
    got = top_score_pool(labels, scores, 4)
    want = []
    for c in range(3):
        members = [i for i in range(40) if labels[i] == c]
        want += sorted(members, key=lambda i: (-scores[i], i))[:4]
    assert got.tolist() == sorted(want)
    with pytest.raises(DataError, match="non-finite"):
        top_score_pool(labels, np.where(np.arange(40) == 3, np.nan, scores), 4)
