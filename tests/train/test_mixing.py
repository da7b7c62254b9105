"""CutMix within a student's batch (coretune/train/mixing.py): the shared batch order, the
rolls, λ and the boxes against their declared distributions, and losses mixed by area."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from coretune.spec import AugmentSpec, BudgetSpec, CutMixSpec, OptimizerSpec
from coretune.train.augment import view_keys
from coretune.train.labels import (
    LABEL_SOURCES,
    HardLabels,
    LabelConfig,
    LabelInputs,
    TeacherSignal,
    check_mixing,
    make_label_source,
)
from coretune.train.loop import plan_steps
from coretune.train.mixing import (
    BatchMix,
    batch_bounds,
    batch_rolls,
    batch_slice,
    box_keep,
    cutmix_boxes,
    cutmix_lambdas,
    epoch_order,
    epoch_partners,
    epoch_seed,
    mix_batches,
    paste,
)


# ------------------------------------------------------------------ the batch order
def test_the_batch_order_is_the_loops_as_before():
    """One permutation function and one batch cut for the loop, the fused students and the
    teacher service; the permutation is the one the loop always drew."""
    for seed, epoch, n in ((0, 0, 10), (3, 7, 1437), (2**32 - 1, 199, 33)):
        old = torch.randperm(n, generator=torch.Generator().manual_seed(
            (seed * 1_000_003 + epoch * 7919 + 17) % (2**63 - 1)))
        assert torch.equal(epoch_order(seed, epoch, n), old)
        assert epoch_seed(seed, epoch) == (seed * 1_000_003 + epoch * 7919 + 17) % (2**63 - 1)
    for n, batch in ((100, 32), (65, 32), (3, 32), (1, 8), (97, 96), (128, 128)):
        bs, spe = batch_bounds(n, batch)
        assert (bs, spe) == plan_steps(n, OptimizerSpec(batch_size=batch),
                                       BudgetSpec(unit="epochs", value=1))[:2]
        sizes = [len(range(n)[batch_slice(b, bs, spe, n)]) for b in range(spe)]
        assert sum(sizes) == n and (n == 1 or min(sizes) >= 2)  # never a batch of one


# ------------------------------------------------------------------ partners
def test_rolls_are_never_zero_and_cover_the_batch():
    for size in (2, 3, 7, 128):
        rolls = np.concatenate([batch_rolls([s], e, b, size)
                                for s in range(5) for e in range(10) for b in range(20)])
        assert rolls.min() >= 1 and rolls.max() <= size - 1
        assert set(rolls.tolist()) == set(range(1, size)) or size == 128
        assert np.array_equal(rolls[:20], np.concatenate(
            [batch_rolls([0], 0, b, size) for b in range(20)]))  # replayable
    assert batch_rolls([0, 1], 3, 4, 1).tolist() == [0, 0]  # a batch of one mixes nothing
    assert len(set(batch_rolls(range(50), 0, 0, 128).tolist())) > 20  # per seed


def test_each_partner_is_in_its_own_batch_and_never_itself():
    n, batch, seed, epoch = 203, 32, 4, 6
    partner = epoch_partners(seed, epoch, n, batch)
    order = epoch_order(seed, epoch, n).numpy()
    bs, spe = batch_bounds(n, batch)
    for b in range(spe):
        pos = order[batch_slice(b, bs, spe, n)]
        assert set(partner[pos]) == set(pos)  # a permutation of the batch (a roll)
        assert (partner[pos] != pos).all()
        r = batch_rolls([seed], epoch, b, len(pos))[0]
        assert np.array_equal(partner[pos], pos[(np.arange(len(pos)) + r) % len(pos)])


# ------------------------------------------------------------------ λ and the boxes
@pytest.mark.parametrize("alpha", [1.0, 0.5, 2.0])
def test_lambda_follows_beta_alpha_alpha(alpha):
    keys = view_keys(1, 2, np.arange(20_000))
    on, lam = cutmix_lambdas(keys, CutMixSpec(alpha=alpha))
    assert on.all() and ((lam >= 0) & (lam <= 1)).all()
    assert stats.kstest(lam, stats.beta(alpha, alpha).cdf).pvalue > 1e-3
    assert stats.kstest(lam, stats.beta(alpha * 2, alpha).cdf).pvalue < 1e-6  # it can tell


def test_cutmix_is_applied_with_probability_p():
    keys = view_keys(0, 0, np.arange(20_000))
    on, lam = cutmix_lambdas(keys, CutMixSpec(p=0.3))
    assert abs(on.mean() - 0.3) < 0.02 and (lam[~on] == 1.0).all()
    boxes = cutmix_boxes(keys, 16, 16, CutMixSpec(p=0.3))
    assert (boxes[~on] == 0).all() and (box_keep(boxes, 16, 16)[~on] == 1.0).all()
    assert not cutmix_lambdas(keys, CutMixSpec(p=0.0))[0].any()


def _rand_bbox(h: int, w: int, lam: float, cy: int, cx: int) -> tuple[int, int, int, int]:
    """The references' rand_bbox, one box at a time, rows from H and columns from W."""
    cut = (1.0 - lam) ** 0.5
    ch, cw = int(h * cut), int(w * cut)
    clip = lambda v, hi: min(max(v, 0), hi)  # noqa: E731
    return (clip(cy - ch // 2, h), clip(cx - cw // 2, w), clip(cy + ch // 2, h),
            clip(cx + cw // 2, w))


@pytest.mark.parametrize("h,w", [(32, 32), (8, 8), (24, 40)])
def test_boxes_are_rand_bbox_of_area_one_minus_lambda_up_to_clipping(h, w):
    keys = view_keys(5, 1, np.arange(5000))
    spec = CutMixSpec()
    _, lam = cutmix_lambdas(keys, spec)
    boxes = cutmix_boxes(keys, h, w, spec)
    centre = (boxes[:, :2] + boxes[:, 2:]) // 2
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert ((boxes[:, 0] >= 0) & (boxes[:, 2] <= h) & (boxes[:, 1] >= 0)
            & (boxes[:, 3] <= w)).all()
    assert (area <= (1 - lam) * h * w + 1e-9).all()  # truncation and clipping only shrink it
    cut = np.sqrt(1 - lam)
    inside = ((boxes[:, 0] > 0) & (boxes[:, 2] < h) & (boxes[:, 1] > 0) & (boxes[:, 3] < w))
    assert inside.mean() > 0.1
    lower = np.maximum(h * cut - 2, 0) * np.maximum(w * cut - 2, 0)  # sides lose < 2 pixels
    assert (area[inside] >= lower[inside] - 1e-9).all()
    # exactly rand_bbox, given the centre the key drew (recovered where it is unclipped)
    for i in np.flatnonzero(inside)[:200]:
        cy, cx = int(centre[i, 0]), int(centre[i, 1])
        assert tuple(boxes[i]) == _rand_bbox(h, w, float(lam[i]), cy, cx)
    keep = box_keep(boxes, h, w)
    assert np.array_equal(keep, 1 - area / (h * w))


def test_paste_by_hand():
    views = torch.arange(2 * 16, dtype=torch.uint8).view(2, 1, 4, 4)
    partner = 100 + views
    out = paste(views, partner, np.array([[1, 0, 3, 2], [0, 0, 0, 0]]))
    expected = views.clone()
    expected[0, :, 1:3, 0:2] = partner[0, :, 1:3, 0:2]
    assert torch.equal(out, expected)


def test_mix_batches_pair_each_students_views_in_its_own_batch():
    rng = np.random.default_rng(0)
    k, size = 3, 5
    views = torch.as_tensor(rng.integers(0, 256, (k * size, 2, 6, 6)), dtype=torch.uint8)
    keys = view_keys(0, 2, np.arange(k * size)).reshape(k, size)
    spec = CutMixSpec()
    mixed, mix = mix_batches(views, keys, [7, 8, 9], 2, 1, spec)
    boxes = cutmix_boxes(keys.reshape(-1), 6, 6, spec)
    for j, seed in enumerate((7, 8, 9)):
        r = batch_rolls([seed], 2, 1, size)[0]
        assert mix.partner[j].tolist() == [(i + r) % size for i in range(size)]
        own = views[j * size:(j + 1) * size]
        expected = paste(own, own[mix.partner[j]], boxes[j * size:(j + 1) * size])
        assert torch.equal(mixed[j * size:(j + 1) * size], expected)
    assert np.allclose(mix.keep.numpy().reshape(-1), box_keep(boxes, 6, 6))
    again, _ = mix_batches(views, keys, [7, 8, 9], 2, 1, spec)
    assert torch.equal(again, mixed)


# ------------------------------------------------------------------ losses mixed by area
def test_hard_labels_mixed_by_area_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    y = torch.tensor([0, 2])
    mix = BatchMix(partner=torch.tensor([1, 0]), keep=torch.tensor([0.75, 0.5]))
    logp = F.log_softmax(logits, dim=1)
    # view 0 keeps 3/4 of itself (class 0), 1/4 from view 1 (class 2); view 1 half and half
    expected = -(0.75 * logp[0, 0] + 0.25 * logp[0, 2] + 0.5 * logp[1, 2] + 0.5 * logp[1, 0]) / 2
    hard = HardLabels(y)
    got = hard.loss(logits, torch.arange(2), torch.arange(2), 0, None, mix=mix)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    # kd's CE term (λ < 1) is mixed the same way; its KL is against the teacher's output
    teacher = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    source = make_label_source(
        LabelConfig("kd", tau=2.0, lam=0.25),
        LabelInputs(y, TeacherSignal(view_logits=lambda s, e, i: teacher[None].numpy())))
    source.begin_segment(0, np.array([0]), np.arange(2))
    p_t = F.softmax(teacher / 2.0, dim=1)
    kl = (p_t * (p_t.log() - F.log_softmax(logits / 2.0, dim=1))).sum(1).mean()
    kd = source.loss(logits, torch.arange(2), torch.arange(2), 0, None, mix=mix)
    assert kd.item() == pytest.approx(0.75 * expected.item() + 0.25 * 4.0 * kl.item(), rel=1e-5)
    # smoothing: the smoothed rows mixed by area
    smooth = make_label_source(LabelConfig("smooth", eps=0.3), LabelInputs(y))
    rows = torch.full((2, 3), 0.1)
    rows[0, 0], rows[1, 2] = 0.8, 0.8
    target = torch.stack([0.75 * rows[0] + 0.25 * rows[1], 0.5 * rows[1] + 0.5 * rows[0]])
    assert smooth.loss(logits, torch.arange(2), torch.arange(2), 0, None, mix=mix).item() == \
        pytest.approx(-(target * logp).sum(1).mean().item(), rel=1e-6)


def test_a_batch_that_keeps_everything_is_the_plain_loss():
    logits = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3])
    mix = BatchMix(torch.tensor([1, 2, 3, 0]), torch.ones(4))
    hard = HardLabels(y)
    args = (logits, torch.arange(4), torch.arange(4), 0, None)
    assert hard.loss(*args, mix=mix).item() == pytest.approx(hard.loss(*args).item(), rel=1e-6)


def test_which_label_modes_take_cutmix():
    on = AugmentSpec(cutmix=CutMixSpec())
    for mode in ("hard", "smooth", "kd", "pseudo"):
        check_mixing(mode, on)
    with pytest.raises(ValueError, match="'soft' keeps one fixed teacher label per image"):
        check_mixing("soft", on)
    check_mixing("soft", AugmentSpec(pad=4))  # no cutmix: nothing to refuse
    check_mixing("soft", None)
    with LABEL_SOURCES.temporary():
        from coretune.train.labels import register_label_source

        register_label_source("mine")(lambda cfg, inputs: HardLabels(inputs.targets))
        with pytest.raises(ValueError, match="mixes=True"):
            check_mixing("mine", on)
