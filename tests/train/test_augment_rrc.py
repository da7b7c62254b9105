"""The random_resized_crop op (coretune/train/augment.py): boxes from each view's key in the
declared scale and ratio ranges, an exact fixed-point bilinear resize, replayable views."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coretune.spec import AugmentOpSpec, AugmentSpec
from coretune.train.augment import (
    AUGMENTATIONS,
    AugmentationArgumentError,
    apply_ops,
    check_augment,
    op_keys,
    random_resized_crop,
    rrc_boxes,
    view_keys,
)
from coretune.train.rded import crop_resize


@pytest.mark.parametrize("h,w,scale,ratio", [
    (64, 64, (0.08, 1.0), (3 / 4, 4 / 3)),  # torchvision's defaults
    (32, 32, (0.5, 1.0), (1.0, 1.0)),  # RDED's square crops at factor 2
    (24, 40, (0.2, 0.6), (0.5, 2.0)),
])
def test_boxes_follow_the_declared_scale_and_ratio(h, w, scale, ratio):
    keys = view_keys(3, 4, np.arange(6000))
    boxes = rrc_boxes(keys, h, w, scale, ratio)
    top, left, bh, bw = boxes.T
    assert ((top >= 0) & (left >= 0) & (bh >= 1) & (bw >= 1)).all()
    assert ((top + bh <= h) & (left + bw <= w)).all()  # inside the image
    frac, aspect = bh * bw / (h * w), bw / bh
    # sides are rounded to whole pixels: the area and ratio hold up to that rounding
    slack_area = (bh + bw + 1) / (h * w)
    assert (frac >= scale[0] - slack_area).all() and (frac <= scale[1] + slack_area).all()
    assert (aspect >= ratio[0] * (1 - 1 / bh) - 1e-9).all()
    assert (aspect <= ratio[1] * (1 + 1 / bh) + 1e-9).all()
    # the area fraction spans the range (not a few values)
    assert frac.min() < scale[0] + 0.05 and frac.max() > scale[1] - 0.05
    if ratio[0] < ratio[1]:
        assert aspect.min() < ratio[0] * 1.15 and aspect.max() > ratio[1] / 1.15
    # same keys, same boxes; another epoch, other boxes
    assert np.array_equal(boxes, rrc_boxes(keys, h, w, scale, ratio))
    other = rrc_boxes(view_keys(3, 5, np.arange(6000)), h, w, scale, ratio)
    assert (other != boxes).any(axis=1).mean() > 0.8


def test_area_fraction_is_uniform_where_every_draw_fits():
    """Square crops of scale ≤ 1 always fit: s ~ U(scale) up to the rounding of the side."""
    from scipy import stats

    boxes = rrc_boxes(view_keys(0, 0, np.arange(4000)), 256, 256, (0.1, 0.9), (1.0, 1.0))
    frac = boxes[:, 2] * boxes[:, 3] / 256**2
    assert stats.kstest(frac, stats.uniform(0.1, 0.8).cdf).pvalue > 1e-3


def test_resize_is_bilinear_within_one_level_and_exact_for_the_full_box():
    rng = np.random.default_rng(0)
    img = torch.as_tensor(rng.integers(0, 256, (200, 3, 32, 32)), dtype=torch.uint8)
    keys = view_keys(0, 1, np.arange(200))
    out = random_resized_crop(img, keys)
    assert out.dtype == torch.uint8 and out.shape == img.shape
    boxes = torch.as_tensor(rrc_boxes(keys, 32, 32, (0.08, 1.0), (3 / 4, 4 / 3)))
    reference = torch.cat([F.interpolate(img[i:i + 1, :, t:t + bh, s:s + bw].float(), (32, 32),
                                         mode="bilinear", align_corners=False)
                           for i, (t, s, bh, bw) in enumerate(boxes.tolist())])
    diff = (out.float() - reference).abs()
    assert diff.max() <= 1.0 and diff.mean() < 0.3
    # the float resize RDED's synthesis uses agrees to one grey level as well
    assert (out.int() - crop_resize(img, torch.arange(200), boxes, (32, 32)).int()).abs().max() <= 1
    # a box of the whole image is a copy
    whole = random_resized_crop(img[:50], keys[:50], scale_min=1.0, ratio_min=1.0, ratio_max=1.0)
    assert torch.equal(whole, img[:50])


def test_views_replay_and_do_not_depend_on_the_batch():
    rng = np.random.default_rng(1)
    img = torch.as_tensor(rng.integers(0, 256, (16, 1, 8, 8)), dtype=torch.uint8)
    keys = view_keys(2, 3, np.arange(16))
    ops = [AugmentOpSpec(name="random_resized_crop", args={"scale_min": 0.25}),
           AugmentOpSpec(name="cutout", args={"size": 2})]
    full = apply_ops(img, keys, ops)
    assert torch.equal(full, apply_ops(img.clone(), keys.copy(), ops))
    assert torch.equal(full[5:9], apply_ops(img[5:9], keys[5:9], ops))
    assert not torch.equal(full, img)
    assert not np.array_equal(op_keys(keys, 0), keys)  # the op draws from its position's key


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_views_are_bit_identical_on_cpu_and_gpu():
    rng = np.random.default_rng(2)
    img = torch.as_tensor(rng.integers(0, 256, (256, 3, 64, 64)), dtype=torch.uint8)
    keys = view_keys(0, 0, np.arange(256))
    cpu = random_resized_crop(img, keys)
    gpu = random_resized_crop(img.cuda(), keys)
    assert torch.equal(cpu, gpu.cpu())


def test_arguments_are_checked_together():
    info = AUGMENTATIONS.get("random_resized_crop")
    info.validate_args({"scale_min": 0.5, "ratio_min": 1.0, "ratio_max": 1.0})
    with pytest.raises(AugmentationArgumentError, match="scale_min 0.5 is above scale_max 0.4"):
        info.validate_args({"scale_min": 0.5, "scale_max": 0.4})
    with pytest.raises(AugmentationArgumentError, match="ratio_min 2.0 is above ratio_max"):
        info.validate_args({"ratio_min": 2.0})
    with pytest.raises(AugmentationArgumentError, match="scale_min"):
        info.validate_args({"scale_min": 0.0})
    with pytest.raises(AugmentationArgumentError, match=r"^augment\.ops\.1: .*scale_max"):
        check_augment(AugmentSpec(ops=[AugmentOpSpec(name="cutout"),
                                       AugmentOpSpec(name="random_resized_crop",
                                                     args={"scale_min": 0.9,
                                                           "scale_max": 0.5})]),
                      "augment.ops")
