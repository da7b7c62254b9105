import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from coretune.spec import AugmentSpec, BudgetSpec, OptimizerSpec
from coretune.train.data import load_dataset, to_device
from coretune.train.evaluate import classification_metrics, held_out_evaluator, on_test_split
from coretune.train.labels import (
    HardLabels,
    LabelConfig,
    LabelInputs,
    TeacherSignal,
    make_label_source,
)
from coretune.train.loop import (
    Hooks,
    RngState,
    compile_mode_for,
    compile_student,
    init_model,
    make_optimizer,
    plan_steps,
    prepare_device,
    retain_freed_memory,
    train,
    train_steps,
)
from coretune.train.models import UnknownModelError, build_model, register_model


def Budget(unit="epochs", value=30, max_reports=20):  # noqa: N802 - the old positional form
    return BudgetSpec(unit=unit, value=value, max_reports=max_reports)


def OptimConfig(**kw):  # noqa: N802
    return OptimizerSpec(**kw)


@pytest.fixture(scope="module")
def digits():
    return to_device(load_dataset("digits"))


def _labels(data, mode="hard", teacher=None, **kw):
    return make_label_source(LabelConfig(mode, **kw), LabelInputs(data.train_y, teacher))


def test_plan_steps_hand_cases():
    # 100 samples, batch 32 → 4 steps/epoch; 10 epochs → 40 steps, reports capped at 5
    assert plan_steps(100, OptimConfig(batch_size=32), Budget("epochs", 10, 5)) == (
        32, 4, 40, [2, 4, 6, 8, 10])
    # tiny coreset: batch shrinks to n; 7 iterations over 3 samples → 7 epochs of 1 step
    assert plan_steps(3, OptimConfig(batch_size=32), Budget("iterations", 7, 20)) == (
        3, 1, 7, [1, 2, 3, 4, 5, 6, 7])


def test_a_last_batch_of_one_joins_the_batch_before(digits):
    # 65 samples, batch 32: two steps per epoch (32 and 33), never a batch of 1 (BatchNorm)
    assert plan_steps(65, OptimConfig(batch_size=32), Budget("epochs", 3, 3))[:3] == (32, 2, 6)
    sizes: list[int] = []
    model = init_model("mlp", {}, (1, 8, 8), 10, 0, "cpu")  # BatchNorm1d inside
    train(model, digits, np.arange(65), _labels(digits), [on_test_split(digits)],
          Budget("epochs", 3, 3), OptimConfig(batch_size=32), seed=0,
          hooks=Hooks(on_batch=lambda epoch, idx, logits: sizes.append(idx.numel())))
    assert sizes == [32, 33] * 3


def test_metrics_hand_worked():
    logits = torch.log(torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]]))
    labels = torch.tensor([0, 1, 1])
    m = classification_metrics(logits, labels, bins=10)
    assert m["test_acc"] == pytest.approx(2 / 3)
    assert m["test_nll"] == pytest.approx(-(math.log(0.9) + math.log(0.4) + math.log(0.7)) / 3)
    # bins: 0.9 → bin 9 (acc 1), 0.6 → bin 6 (acc 0), 0.7 → bin 7 (acc 1)
    assert m["test_ece"] == pytest.approx((0.1 + 0.6 + 0.3) / 3)
    assert m["test_top5"] == 1.0
    assert set(classification_metrics(logits, labels, prefix="val")) == {
        "val_acc", "val_top5", "val_nll", "val_ece"}


@pytest.mark.parametrize("arch", ["mlp", "small_cnn", "resnet18", "resnet34", "resnet50", "vgg16",
                                  "vit_small"])
def test_models_build_and_run(arch):
    model = build_model(arch, (3, 32, 32), 7)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_unknown_model_and_arguments():
    with pytest.raises(UnknownModelError, match="available"):
        build_model("resnet9000", (1, 8, 8), 10)
    with pytest.raises(UnknownModelError, match="width_typo"):
        build_model("mlp", (1, 8, 8), 10, {"width_typo": 3})
    with pytest.raises(UnknownModelError, match="timm has no model"):
        build_model("timm/does_not_exist", (1, 8, 8), 10)


def test_mlp_arguments_shape_the_network():
    plain = build_model("mlp", (1, 8, 8), 10, {"hidden": [32], "batchnorm": False})
    assert [type(m).__name__ for m in plain] == ["Flatten", "Linear", "ReLU", "Linear"]
    assert plain[1].out_features == 32
    default = build_model("mlp", (1, 8, 8), 10)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in default) == 2


def test_optimizer_flags():
    model = build_model("mlp", (1, 8, 8), 10)
    opt, _ = make_optimizer(model, OptimConfig(), 10)
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-4, 0.0]
    assert opt.param_groups[0]["nesterov"]
    opt, _ = make_optimizer(model, OptimConfig(nesterov=False, decay_norm_and_bias=True), 10)
    assert len(opt.param_groups) == 1 and not opt.param_groups[0]["nesterov"]
    assert len(opt.param_groups[0]["params"]) == len(list(model.parameters()))
    opt, _ = make_optimizer(model, OptimConfig(momentum=0.0), 10)
    assert not opt.param_groups[0]["nesterov"]  # Nesterov needs momentum


def test_training_learns_digits_and_reports(digits):
    reports = []
    model = init_model("mlp", {}, (1, 8, 8), 10, 0, "cpu")
    res = train(model, digits, np.arange(0, 1437, 2), _labels(digits), [on_test_split(digits)],
                Budget("epochs", 8, 4), OptimConfig(lr=0.05, batch_size=64), seed=0,
                hooks=Hooks(on_report=reports.append))
    assert [r["epoch"] for r in reports] == [1, 2, 3, 4] and reports[-1]["final"]
    assert res.metrics["test_acc"] > 0.9
    assert res.epochs_run == pytest.approx(8.0)


def test_training_is_deterministic_and_leaves_global_rng_alone(digits):
    def run():
        model = init_model("mlp", {}, (1, 8, 8), 10, 3, "cpu")
        return train(model, digits, np.arange(200), _labels(digits), [on_test_split(digits)],
                     Budget("iterations", 30, 1), OptimConfig(lr=0.05, batch_size=32),
                     seed=3).metrics["test_nll"]
    torch.manual_seed(123)
    before = torch.get_rng_state()
    assert run() == run()
    assert torch.equal(torch.get_rng_state(), before)


@register_model("_dropout_mlp")
def _dropout_mlp(input_shape, num_classes, p: float = 0.5):
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 64), nn.ReLU(), nn.Dropout(p),
                         nn.Linear(64, num_classes))


def test_interleaved_students_match_students_trained_alone(digits):
    """Each student owns its RNG: dropout draws do not depend on who else trains."""
    def student(seed):
        model = init_model("_dropout_mlp", {}, (1, 8, 8), 10, seed, "cpu")
        return train_steps(model, digits, np.arange(seed, 600, 2), _labels(digits),
                           [on_test_split(digits)], Budget("epochs", 4, 4),
                           OptimConfig(lr=0.05, batch_size=32), seed,
                           rng=RngState(seed, torch.device("cpu")))

    alone = [[m["test_nll"] for m in student(s)] for s in (0, 1)]
    a, b = student(0), student(1)
    together = [[], []]
    for ma, mb in zip(a, b, strict=True):
        together[0].append(ma["test_nll"])
        together[1].append(mb["test_nll"])
    assert together == alone
    assert alone[0] != alone[1]


def test_input_noise_changes_training_but_replays(digits):
    def run(noise):
        model = init_model("mlp", {}, (1, 8, 8), 10, 0, "cpu")
        return train(model, digits, np.arange(300), _labels(digits), [on_test_split(digits)],
                     Budget("iterations", 20, 1), OptimConfig(lr=0.05, batch_size=32), 0,
                     augment=AugmentSpec(pad=1, noise_std=noise)).metrics["test_nll"]
    assert run(0.5) == run(0.5) != run(0.0)


def test_pseudo_labels_with_held_out_evaluator(digits):
    """A student trained on pseudo-labels (here a fixed relabelling of the classes) and
    scored on a held-out split labelled with them learns the pseudo-labels, not the truth."""
    pseudo = (digits.train_y.numpy() + 3) % 10
    rng = np.random.default_rng(0)
    order = rng.permutation(len(pseudo))
    train_pos, held_pos = np.sort(order[:1200]), np.sort(order[1200:])
    labels = make_label_source(LabelConfig("pseudo"),
                               LabelInputs(digits.train_y, artifacts={"pseudo_labels": pseudo}))
    held = held_out_evaluator(digits, held_pos, pseudo[held_pos], name="val")
    model = init_model("mlp", {}, (1, 8, 8), 10, 0, "cpu")
    res = train(model, digits, train_pos, labels, [held, on_test_split(digits)],
                Budget("epochs", 10, 2), OptimConfig(lr=0.05, batch_size=64), 0)
    assert res.metrics["val_acc"] > 0.9  # the held-out pseudo-labelled split
    assert res.metrics["test_acc"] < 0.05  # ground truth disagrees with every pseudo-label
    with pytest.raises(ValueError, match="pseudo_labels"):
        make_label_source(LabelConfig("pseudo"), LabelInputs(digits.train_y))


def test_kd_uses_per_view_teacher_logits(digits):
    asked = []

    def view_logits(seed, epochs, idx):
        asked.append((seed, list(epochs), len(idx)))
        return np.zeros((len(epochs), len(idx), 10), dtype=np.float32)

    model = build_model("mlp", (1, 8, 8), 10)
    train(model, digits, np.arange(64),
          _labels(digits, "kd", TeacherSignal(view_logits=view_logits), tau=2.0, lam=1.0),
          [on_test_split(digits)], Budget("epochs", 4, 2), OptimConfig(batch_size=32), seed=1)
    # one request per report segment, covering every epoch once
    assert asked == [(1, [0, 1], 64), (1, [2, 3], 64)]


def test_teacher_modes_require_a_teacher(digits):
    for mode in ("soft", "kd"):
        with pytest.raises(ValueError, match="teacher"):
            _labels(digits, mode)
    assert isinstance(_labels(digits), HardLabels)


def test_a_nan_loss_stops_training_and_says_where(digits):
    class NanAfter(HardLabels):
        calls = 0

        def loss(self, logits, idx, pos, epoch, weights):
            NanAfter.calls += 1
            loss = super().loss(logits, idx, pos, epoch, weights)
            return loss * float("nan") if NanAfter.calls > 25 else loss

    model = init_model("mlp", {}, (1, 8, 8), 10, 0, "cpu")
    reports = list(train_steps(model, digits, np.arange(320), NanAfter(digits.train_y),
                               [on_test_split(digits)], Budget("epochs", 10, 5),
                               OptimConfig(lr=0.05, batch_size=32), 0))
    # 10 steps per epoch, reports every 2 epochs (20 steps): step 25 is the first NaN
    assert [r["diverged_at_step"] for r in reports] == [None, 25]
    assert not reports[-1]["final"] and reports[-1]["step"] == 40  # stopped at that report
    assert math.isnan(reports[-1]["train_loss"]) and reports[-1]["test_acc"] == 0.0
    assert NanAfter.calls == 40


def test_metrics_of_non_finite_logits_do_not_crash():
    logits = torch.tensor([[float("nan"), 0.0], [1.0, 0.0], [float("inf"), 0.0]])
    m = classification_metrics(logits, torch.tensor([0, 0, 0]))
    assert m["test_acc"] == pytest.approx(1 / 3) and math.isnan(m["test_nll"])


def test_compile_auto_compiles_on_cuda_only_and_a_named_mode_everywhere():
    assert compile_mode_for("auto", "cuda") == "reduce-overhead"
    assert compile_mode_for("auto", torch.device("cuda", 0)) == "reduce-overhead"
    assert compile_mode_for("auto", "cpu") is None
    assert compile_mode_for(None, "cuda") is None
    assert compile_mode_for("max-autotune", "cpu") == "max-autotune"
    model = nn.Linear(2, 2)
    assert compile_student(model, "auto", "cpu") is model  # nothing compiled on a CPU
    assert compile_student(model, None, "cuda") is model
    compiled = compile_student(model, "default", "cpu")  # a named mode compiles anywhere
    assert compiled is not model and compiled._orig_mod is model


def test_the_sweep_default_is_compile_auto():
    from coretune.search_spaces.schema import SweepSpec

    assert SweepSpec.model_fields["compile"].default == "auto"


def test_optimizers_use_fused_kernels_on_cuda_and_for_stacked_students():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    stacked = [torch.zeros(2, 3, 4, requires_grad=True), torch.zeros(2, 3, requires_grad=True)]
    for name in ("sgd", "adamw"):
        opt, _ = make_optimizer(model, OptimizerSpec(name=name), total_steps=10)
        assert not opt.defaults.get("fused")  # a solo student on a CPU: torch's default
        opt, _ = make_optimizer(stacked, OptimizerSpec(name=name), total_steps=10, stacked=1)
        assert opt.defaults["fused"]
    if torch.cuda.is_available():
        for name in ("sgd", "adamw"):
            opt, _ = make_optimizer(model.cuda(), OptimizerSpec(name=name), total_steps=10)
            assert opt.defaults["fused"]


def test_a_cpu_process_keeps_freed_memory_for_reuse():
    import resource

    prepare_device(torch.device("cpu"))
    assert retain_freed_memory()  # glibc (Linux): mallopt took every setting
    blocks = [torch.ones(2**19) for _ in range(4)]  # 2 MB each, touched: now the heap's
    del blocks
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):  # allocate, touch and free the same large blocks, as a step does
        blocks = [torch.ones(2**19) for _ in range(4)]
        del blocks
    # 20 rounds of 8 MB: 40,960 page faults if every block is mapped afresh (40,401 with
    # glibc's defaults, 512 with the setting)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before < 2_000
