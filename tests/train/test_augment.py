import numpy as np
import pytest
import torch
import torch.nn as nn

from coretune.errors import SpecError
from coretune.registry import DuplicateNameError
from coretune.spec import AugmentOpSpec, AugmentSpec, TrialSpec
from coretune.train.augment import (
    AUGMENTATIONS,
    AugmentationArgumentError,
    UnknownAugmentationError,
    apply_ops,
    augment_batch,
    augment_views,
    check_augment,
    cutout,
    op_keys,
    register_augmentation,
    view_params,
)


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


# ------------------------------------------------------------------ augmentation ops
def _key(cy: int, cx: int, u: int = 0) -> int:
    """A view key whose cutout centre is (cy, cx) and whose apply draw is u / 2**24."""
    return cy | (cx << 20) | (u << 40)


def _cutout_loop(images: torch.Tensor, keys: np.ndarray, size: int, p: float) -> torch.Tensor:
    """Cutout one sample at a time, in plain Python (the reference)."""
    out = images.clone()
    _, _, h, w = images.shape
    for i, k in enumerate(int(k) for k in keys):
        if ((k >> 40) & 0xFFFFFF) >= p * 2**24:
            continue
        top = (k & 0xFFFFF) % h - size // 2
        left = ((k >> 20) & 0xFFFFF) % w - size // 2
        for r in range(max(0, top), min(h, top + size)):
            for c in range(max(0, left), min(w, left + size)):
                out[i, :, r, c] = 0
    return out


def test_cutout_boxes_hand_checked_from_keys():
    img = torch.full((3, 2, 6, 6), 200, dtype=torch.uint8)
    keys = np.array([_key(1, 4), _key(5, 0), _key(2, 2, u=2**23)], dtype=np.uint64)
    out = cutout(img, keys, size=3, p=0.5)
    zero = (out == 0).all(1)  # [B, H, W], channels alike
    # view 0: centre (1, 4), size 3 → rows 0–2, cols 3–5
    expected0 = torch.zeros(6, 6, dtype=torch.bool)
    expected0[0:3, 3:6] = True
    # view 1: centre (5, 0) → rows 4–6 and cols −1–1, clipped at the border: rows 4–5, cols 0–1
    expected1 = torch.zeros(6, 6, dtype=torch.bool)
    expected1[4:6, 0:2] = True
    assert torch.equal(zero[0], expected0) and torch.equal(zero[1], expected1)
    # view 2: its draw is exactly 0.5, not below p = 0.5: untouched; with p = 0.6 it is cut
    assert torch.equal(out[2], img[2]) and (out[out != 0] == 200).all()
    assert (cutout(img, keys, size=3, p=0.6)[2, :, 1:4, 1:4] == 0).all()
    assert torch.equal(cutout(img, keys, size=3, p=0.0), img)
    # an even size: rows [cy − size//2, cy − size//2 + size) = 3–6 clipped to 3–5
    even = cutout(img[:1], np.array([_key(5, 2)], dtype=np.uint64), size=4)
    assert (even[0, :, 3:6, 0:4] == 0).all() and int((even[0, 0] == 0).sum()) == 3 * 4


@pytest.mark.parametrize("size,p", [(1, 1.0), (3, 0.5), (4, 1.0), (10, 0.7), (20, 1.0)])
def test_cutout_matches_a_per_sample_loop(size, p):
    rng = np.random.default_rng(size)
    img = torch.as_tensor(rng.integers(1, 256, (64, 3, 7, 9)), dtype=torch.uint8)
    keys = rng.integers(0, 2**63, 64, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    out = cutout(img, keys, size=size, p=p)
    assert out.dtype == torch.uint8 and out.shape == img.shape
    assert torch.equal(out, _cutout_loop(img, keys, size, p))


def test_ops_replay_from_keys_and_draw_per_position():
    rng = np.random.default_rng(0)
    img = torch.as_tensor(rng.integers(1, 256, (8, 3, 16, 16)), dtype=torch.uint8)
    keys = rng.integers(0, 2**63, 8, dtype=np.uint64)
    ops = [AugmentOpSpec(name="cutout", args={"size": 4}),
           AugmentOpSpec(name="cutout", args={"size": 4})]
    once = apply_ops(img, keys, ops)
    assert torch.equal(once, apply_ops(img.clone(), keys.copy(), ops))  # same keys, same views
    assert torch.equal(once[3:5], apply_ops(img[3:5], keys[3:5], ops))  # batching is irrelevant
    # the two cutouts draw from different keys (position-mixed), so they cut different boxes
    assert not np.array_equal(op_keys(keys, 0), op_keys(keys, 1))
    assert int((once == 0).sum()) > int((apply_ops(img, keys, ops[:1]) == 0).sum())


def _digits_with_ops():
    from coretune.train.data import load_dataset

    spec = AugmentSpec(pad=1, flip=True, ops=[AugmentOpSpec(name="cutout", args={"size": 3})])
    return load_dataset("digits"), spec


class _Recorder(nn.Module):
    """An MLP that keeps every (normalised) training input it is given."""

    def __init__(self, d: int, k: int):
        super().__init__()
        self.lin = nn.Linear(d, k)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.seen.append(x.detach().clone())
        return self.lin(x.flatten(1))


def _student_views(data, spec, seed, indices):
    """(epoch, dataset indices, normalised input) of each batch the training loop made."""
    from coretune.spec import BudgetSpec, OptimizerSpec
    from coretune.train.labels import HardLabels
    from coretune.train.loop import Hooks, train

    batches: list[tuple[int, torch.Tensor]] = []
    model = _Recorder(64, 10)
    train(model, data, indices, HardLabels(data.train_y), [], BudgetSpec(unit="iterations",
          value=6, max_reports=2), OptimizerSpec(lr=0.01, batch_size=16), seed, augment=spec,
          hooks=Hooks(on_batch=lambda e, idx, _: batches.append((e, idx.clone()))))
    return [(e, idx, x) for (e, idx), x in zip(batches, model.seen, strict=True)]


def test_the_training_loop_view_is_augment_views_view():
    from coretune.train.data import to_device

    ds, spec = _digits_with_ops()
    data = to_device(ds)
    batches = _student_views(data, spec, 7, np.arange(40, 80))
    assert len(batches) == 6 and {e for e, _, _ in batches} == {0, 1}  # 3 steps an epoch
    cut = 0
    for epoch, idx, x in batches:
        views = augment_views(data.train_x[idx], 7, epoch, idx.numpy(), spec)
        assert torch.equal(x, data.normalize(views))
        plain = augment_views(data.train_x[idx], 7, epoch, idx.numpy(),
                              AugmentSpec(pad=1, flip=True))
        cut += int((views != plain).any(3).any(2).any(1).sum())
    assert cut > 0  # cutout did change views


def test_teacher_view_logits_are_of_the_students_view(tmp_path):
    from coretune.artifacts.graph import Node, build
    from coretune.artifacts.store import ArtifactStore
    from coretune.artifacts.teacher import TeacherService
    from coretune.spec import BudgetSpec, DataSpec, OptimizerSpec, RecipeSpec
    from coretune.train.data import to_device

    ds, spec = _digits_with_ops()
    recipe = RecipeSpec(arch="mlp", optimizer=OptimizerSpec(lr=0.05, batch_size=64),
                        budget=BudgetSpec(unit="epochs", value=1))
    store = ArtifactStore(tmp_path / "cache")
    node = Node("teacher", recipe.model_dump(mode="json"), (), DataSpec(name="digits"),
                ds.fingerprint)
    art, _ = build(node, store, ds)
    svc = TeacherService(ds, store.uri, art.key)
    epoch, idx, x = _student_views(to_device(ds), spec, 3, np.arange(100, 148))[-1]
    got = svc.view_logits(3, np.array([epoch]), idx.numpy(), spec)[0]
    with torch.no_grad():
        expected = svc.model.eval()(x).float().numpy()
    assert np.allclose(got, expected, atol=2e-2)  # the teacher caches float16
    # without the ops the teacher's views (and cache slot) differ
    plain = svc.view_logits(3, np.array([epoch]), idx.numpy(), AugmentSpec(pad=1, flip=True))[0]
    assert not np.allclose(plain, got, atol=2e-2)


def _spec_with(**fields):
    import yaml

    from tests.conftest import TINY_SPEC

    data = yaml.safe_load(TINY_SPEC.format(name="aug"))
    for key, value in fields.items():
        if key in ("teacher", "dynamics"):
            data[key] = {**data[key], "augment": value}
        else:
            data[key] = value
    return data


def test_unknown_op_name_refused_with_did_you_mean(write_spec):
    from coretune.search_spaces.schema import load_spec, parse_spec

    path = write_spec("aug", replace={
        "budget: {unit": "augment: {pad: 1, ops: [{name: cutuot}]}\nbudget: {unit"})
    with pytest.raises(SpecError, match=r"field 'augment': ops\.0: unknown augmentation "
                                        r"'cutuot'; did you mean 'cutout'\?"):
        load_spec(path)
    for recipe in ("teacher", "dynamics"):
        with pytest.raises(SpecError, match=rf"field '{recipe}': augment\.ops\.1: unknown "
                                            r"augmentation 'cut_out'; did you mean 'cutout'"):
            parse_spec(_spec_with(**{recipe: {"ops": [{"name": "cutout"},
                                                      {"name": "cut_out"}]}}))
    with pytest.raises(UnknownAugmentationError):
        check_augment(AugmentSpec(ops=[AugmentOpSpec(name="nope")]))


@pytest.mark.parametrize("args,message", [
    ({"size": 0}, r"argument 'size' should be greater than or equal to 1"),
    ({"size": "8"}, r"argument 'size' should be a valid integer"),
    ({"size": 2.5}, r"argument 'size' should be a valid integer"),
    ({"p": 1.5}, r"argument 'p' should be less than or equal to 1"),
    ({"p": True}, r"argument 'p' should be a valid number"),
    ({"length": 8}, r"takes no argument\(s\) \['length'\]; it accepts \['p', 'size'\]"),
])
def test_wrong_op_arguments_refused(args, message):
    from coretune.search_spaces.schema import parse_spec

    ops = [{"name": "cutout", "args": args}]
    with pytest.raises(SpecError, match=r"field 'augment': ops\.0: augmentation 'cutout'.*"
                                        + message):
        parse_spec(_spec_with(augment={"ops": ops}))
    with pytest.raises(AugmentationArgumentError):
        check_augment(AugmentSpec(ops=[AugmentOpSpec(name="cutout", args=args)]))


def test_op_structure_refused_before_the_registries():
    from coretune.search_spaces.schema import parse_spec

    with pytest.raises(SpecError, match=r"augment\.ops\.0\.size"):
        parse_spec(_spec_with(augment={"ops": [{"name": "cutout", "size": 8}]}))
    with pytest.raises(SpecError, match=r"augment\.ops"):
        parse_spec(_spec_with(augment={"ops": "cutout"}))


def test_valid_ops_accepted_and_expanded():
    from coretune.search_spaces.schema import expand, parse_spec

    spec = parse_spec(_spec_with(augment={"pad": 1, "ops": [
        {"name": "cutout", "args": {"size": 4, "p": 0.5}}]}))
    trials = expand(spec)
    assert all(t.augment.ops == [AugmentOpSpec(name="cutout", args={"size": 4, "p": 0.5})]
               for t in trials)


def test_duplicate_registration_refused():
    before = AUGMENTATIONS.names()  # cutout, and any plugin op another test imported
    with AUGMENTATIONS.temporary():
        with pytest.raises(DuplicateNameError, match="'cutout' is already registered by "
                                                     "coretune.train.augment:cutout"):
            @register_augmentation("cutout")
            def cutout(images, keys):  # noqa: ANN001 - a clash on purpose
                return images

        @register_augmentation("twice")
        def first(images: torch.Tensor, keys: np.ndarray) -> torch.Tensor:
            return images

        with pytest.raises(DuplicateNameError, match="'twice' is already registered"):
            @register_augmentation("twice")
            def second(images: torch.Tensor, keys: np.ndarray) -> torch.Tensor:
                return images
        assert "twice" in AUGMENTATIONS
    assert "twice" not in AUGMENTATIONS and AUGMENTATIONS.names() == before
    assert "cutout" in before


def test_an_op_must_return_uint8_of_the_same_shape():
    with AUGMENTATIONS.temporary():
        @register_augmentation("to_float")
        def to_float(images: torch.Tensor, keys: np.ndarray) -> torch.Tensor:
            return images.float()

        img = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
        with pytest.raises(TypeError, match="'to_float' returned torch.float32"):
            apply_ops(img, np.arange(2, dtype=np.uint64), [AugmentOpSpec(name="to_float")])


def test_ops_at_their_default_change_no_key():
    """The key rule: ``ops: []`` (the default) leaves every trial id and artifact key as it
    was before the field existed (ids below computed with the spec module before it)."""
    from coretune.search_spaces.schema import expand, parse_spec
    from coretune.spec import DataSpec, RecipeSpec, content_key

    def make(augment: AugmentSpec) -> TrialSpec:
        return TrialSpec(sweep="s", dataset=DataSpec(name="digits"), arch="mlp",
                         selector="random", ratio=0.1, augment=augment,
                         teacher=RecipeSpec(arch="mlp", augment=AugmentSpec(pad=2, ops=[])),
                         label_mode="kd", tau=4.0, lam=0.9)

    trial = make(AugmentSpec(pad=1, flip=True, ops=[]))
    assert trial.trial_id("fp0") == "3fb695be6540"
    assert content_key("teacher", 1, trial.teacher.key_dump(), None, "fp0") == \
        "teacher-150a487d75c177719d063727"
    assert AugmentSpec(pad=1).key_dump() == {"pad": 1, "flip": False, "noise_std": 0.0}
    with_op = make(AugmentSpec(pad=1, flip=True, ops=[AugmentOpSpec(name="cutout")]))
    assert with_op.trial_id("fp0") != trial.trial_id("fp0")
    # through the YAML layer: no ops and ``ops: []`` plan the same students
    ids = [[t.trial_id("fp") for t in expand(parse_spec(_spec_with(**kw)))]
           for kw in ({"augment": {"pad": 1}, "teacher": {"pad": 2}},
                      {"augment": {"pad": 1, "ops": []}, "teacher": {"pad": 2, "ops": []}})]
    assert ids[0] == ids[1]
