"""SL+KD views (RandomResizedCrop + CutMix) between the student's loop and the teacher
service: the teacher labels exactly the mixed image the student trains on, each shared view
once, and students whose coresets differ never get one another's views."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coretune.artifacts.graph import Node, build
from coretune.artifacts.store import ArtifactStore
from coretune.artifacts.teacher import TeacherService
from coretune.spec import (
    AugmentOpSpec,
    AugmentSpec,
    BudgetSpec,
    CutMixSpec,
    DataSpec,
    OptimizerSpec,
    RecipeSpec,
)
from coretune.train.data import load_dataset, to_device
from coretune.train.evaluate import on_test_split, predict_logits
from coretune.train.fused import FusedStudent, train_fused
from coretune.train.labels import (
    LabelConfig,
    LabelInputs,
    TeacherSignal,
    ViewTeacherLabels,
    make_label_source,
)
from coretune.train.loop import init_model, train
from coretune.train.mixing import batch_bounds, batch_slice, epoch_partners

RECIPE = RecipeSpec(arch="mlp", optimizer=OptimizerSpec(lr=0.05, batch_size=64),
                    budget=BudgetSpec(unit="epochs", value=4))
AUG = AugmentSpec(pad=1, flip=True, cutmix=CutMixSpec(),
                  ops=[AugmentOpSpec(name="random_resized_crop", args={"scale_min": 0.3}),
                       AugmentOpSpec(name="cutout", args={"size": 2, "p": 0.5})])
OPT = OptimizerSpec(lr=0.05, batch_size=32)
BUDGET = BudgetSpec(unit="iterations", value=12, max_reports=2)  # 5 batches an epoch


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    ds = load_dataset("digits")
    store = ArtifactStore(tmp_path_factory.mktemp("cache"))
    node = Node("teacher", RECIPE.model_dump(mode="json"), (), DataSpec(name="digits"),
                ds.fingerprint)
    art, _ = build(node, store, ds)
    return ds, store, art


def _coreset(n: int, size: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


class _Recorder(torch.nn.Module):
    """The student MLP, keeping every training input it is given."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, x):
        if self.training:
            self.seen.append(x.detach().clone())
        return self.model(x)


class _RecordedKD(ViewTeacherLabels):
    """Online KD that keeps each batch's (epoch, positions, mix, teacher rows)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.batches = []

    def loss(self, logits, idx, pos, epoch, weights, mix=None):
        self.batches.append((epoch, pos.clone(), mix, self.segment[epoch][pos].clone()))
        return super().loss(logits, idx, pos, epoch, weights, mix=mix)


def _student(ds, svc, seed: int, coreset: np.ndarray):
    data = to_device(ds)
    model = _Recorder(init_model("mlp", {}, ds.input_shape, ds.num_classes, seed, "cpu"))
    labels = _RecordedKD(data.train_y, lambda s, e, i: svc.view_logits(s, e, i, AUG, None,
                                                                       OPT.batch_size),
                         tau=4.0, lam=0.5)
    train(model, data, coreset, labels, [], BUDGET, OPT, seed, augment=AUG)
    return data, model, labels


def test_the_teacher_labels_the_mixed_view_the_student_trains_on(teacher):
    ds, store, art = teacher
    svc = TeacherService(ds, store.uri, art.key)
    coreset = _coreset(len(ds.train_y), 150, 0)
    data, model, labels = _student(ds, svc, 3, coreset)
    _, again, _ = _student(ds, svc, 3, coreset)  # a replay: the same bytes, step by step
    assert len(model.seen) == 12 and all(torch.equal(a, b)
                                         for a, b in zip(model.seen, again.seen, strict=True))
    bs, spe = batch_bounds(150, OPT.batch_size)
    views = {e: svc.views(3, e, coreset, AUG, OPT.batch_size) for e in (0, 1, 2)}
    for step, (x, (epoch, pos, mix, rows)) in enumerate(zip(model.seen, labels.batches,
                                                             strict=True)):
        b = step % spe
        assert len(pos) == len(range(150)[batch_slice(b, bs, spe, 150)])
        # the service's view of each position is, bit for bit, what the student saw
        assert torch.equal(x, data.normalize(views[epoch][pos]))
        # its partner is the loop's: the same batch, rolled
        partner = epoch_partners(3, epoch, 150, OPT.batch_size)
        assert np.array_equal(partner[pos.numpy()], pos[mix.partner].numpy())
        # and the teacher's logits the loss used are of that mixed view
        direct = predict_logits(svc.model, svc.data, views[epoch][pos]).numpy()
        assert np.allclose(rows.numpy(), direct, atol=2e-2)
    mixed = sum(int((b[2].keep < 1).sum()) for b in labels.batches)
    assert mixed > 0.8 * 12 * 32  # p = 1: nearly every view is mixed (some boxes clip to 0)


def test_shared_views_are_computed_once_and_other_coresets_never_collide(teacher):
    ds, store, art = teacher
    svc = TeacherService(ds, store.uri, art.key)
    n = len(ds.train_y)
    a, b = _coreset(n, 150, 0), _coreset(n, 150, 1)
    epochs = np.arange(3)

    def ask(coreset):
        return svc.view_logits(3, epochs, coreset, AUG, None, OPT.batch_size)

    first = ask(a)
    assert svc.views_computed == 3 * 150
    assert np.array_equal(ask(a), first) and svc.views_computed == 3 * 150  # replayed: shared
    # b shares some indices with a (same seed, epoch, index) but not their partners
    shared, in_a, in_b = np.intersect1d(a, b, return_indices=True)
    assert len(shared) > 5
    other = ask(b)
    for e in epochs:
        direct = predict_logits(svc.model, svc.data,
                                svc.views(3, int(e), b, AUG, OPT.batch_size)).numpy()
        assert np.allclose(other[e], direct, atol=2e-2)  # b's own mixed views
        pa = a[epoch_partners(3, int(e), 150, OPT.batch_size)][in_a]
        pb = b[epoch_partners(3, int(e), 150, OPT.batch_size)][in_b]
        differ = pa != pb
        assert differ.mean() > 0.5
        # other partners: other images (a box over blank background in both may not be)
        gap = np.abs(other[e][in_b[differ]] - first[e][in_a[differ]]).max(axis=1)
        assert (gap > 1e-3).mean() > 0.75
    # a again: exactly its first answer (recomputing the entries b replaced)
    before = svc.views_computed
    assert np.array_equal(ask(a), first) and svc.views_computed > before
    # another batch size is another pairing: never served from the cache entries above
    assert not np.allclose(svc.view_logits(3, epochs, a, AUG, None, 16), first, atol=1e-3)


def test_cutmix_views_need_the_batch_size(teacher):
    ds, store, art = teacher
    svc = TeacherService(ds, store.uri, art.key)
    with pytest.raises(ValueError, match="batch size"):
        svc.view_logits(0, np.arange(1), np.arange(10), AUG)
    # without cutmix the batch size is not needed, and views are as before
    plain = AugmentSpec(pad=1, flip=True)
    assert np.array_equal(svc.view_logits(0, np.arange(1), np.arange(10), plain),
                          svc.view_logits(0, np.arange(1), np.arange(10), plain, None, 7))


@pytest.mark.parametrize("mode", ["hard", "kd"])
def test_fused_students_with_cutmix_train_as_they_would_alone(teacher, mode):
    ds, store, art = teacher
    svc = TeacherService(ds, store.uri, art.key)
    data = to_device(ds)
    seeds, n = [0, 1, 2], len(ds.train_y)
    coresets = [_coreset(n, 150, s) for s in seeds]
    budget = BudgetSpec(unit="iterations", value=12, max_reports=3)

    def labels():
        signal = TeacherSignal(view_logits=lambda s, e, i: svc.view_logits(
            s, e, i, AUG, None, OPT.batch_size))
        return make_label_source(LabelConfig(mode, tau=4.0, lam=0.5),
                                 LabelInputs(data.train_y, signal))

    evaluators = [on_test_split(data)]
    fused = [FusedStudent(init_model("mlp", {}, (1, 8, 8), 10, s, "cpu"), c, labels(), s)
             for s, c in zip(seeds, coresets, strict=True)]
    reports = list(train_fused(fused, data, evaluators, budget, OPT, AUG))
    for j, (s, c) in enumerate(zip(seeds, coresets, strict=True)):
        alone = train(init_model("mlp", {}, (1, 8, 8), 10, s, "cpu"), data, c, labels(),
                      evaluators, budget, OPT, s, augment=AUG)
        mine = [r[j] for r in reports]
        assert [m["step"] for m in mine] == [m["step"] for m in alone.curves]
        for m, a in zip(mine, alone.curves, strict=True):
            assert m["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
            assert m["test_nll"] == pytest.approx(a["test_nll"], rel=1e-5)
