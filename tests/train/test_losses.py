"""The losses of hard, smoothed, fixed-soft and online-distillation labels against
hand-worked values (Eq. 2, 4–6 of the soft-label paper), through the label sources the
training loop calls and through the loss functions they call."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from coretune.spec import DataSpec, TrialSpec
from coretune.train.labels import (
    LabelConfig,
    LabelInputs,
    TeacherSignal,
    get_label_source,
    make_label_source,
)
from coretune.train.losses import (
    SMOOTHING_CONVENTIONS,
    cross_entropy,
    distillation_loss,
    smoothed_targets,
    soft_targets,
)

LABEL_MODES = ("hard", "smooth", "soft", "kd")


def source_loss(mode: str, logits: torch.Tensor, y: torch.Tensor,
                teacher: torch.Tensor | None = None, weights: torch.Tensor | None = None,
                tau: float = 1.0, lam: float = 1.0, eps: float = 0.0,
                smoothing: str = "uniform") -> torch.Tensor:
    """The loss of label source ``mode`` on one batch holding every sample (positions =
    indices): fixed soft labels bound to the teacher's logits, online KD served the same
    logits as the one view of epoch 0."""
    signal = None
    if teacher is not None:
        signal = TeacherSignal(fixed_logits=teacher,
                               view_logits=lambda seed, epochs, idx: teacher[None].expand(
                                   len(epochs), *teacher.shape))
    cfg = LabelConfig(mode=mode, tau=tau, lam=lam, eps=eps, smoothing=smoothing, args={})
    source = make_label_source(cfg, LabelInputs(y, signal))
    idx = torch.arange(len(y), device=logits.device)  # as the loop's: on the model's device
    source.bind(idx, 0)
    source.begin_segment(0, np.array([0]), idx.cpu().numpy())
    return source.loss(logits, idx, idx, 0, weights)

LN3 = math.log(3.0)
# log-partition of logits [2, 0, 0]
LZ = math.log(math.exp(2.0) + 2.0)


def _kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


def _close(actual: torch.Tensor, expected: float, tol: float = 1e-6) -> None:
    assert actual.dtype == torch.float32
    assert actual.item() == pytest.approx(expected, abs=tol, rel=tol)


def test_public_constants() -> None:
    assert SMOOTHING_CONVENTIONS == ("uniform", "paper")


# --- hard labels (Eq. 5) --------------------------------------------------------------


def test_hard_ce_hand_worked() -> None:
    logits, y = torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0])
    expected = -math.log(math.exp(2.0) / (math.exp(2.0) + 2.0))
    _close(source_loss("hard", logits, y), expected)
    _close(cross_entropy(logits, y), expected)
    _close(F.cross_entropy(logits, y), expected)


def test_hard_matches_torch_and_probability_targets() -> None:
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(16, 10, generator=g), torch.randint(0, 10, (16,), generator=g)
    ref = F.cross_entropy(logits, y)
    torch.testing.assert_close(cross_entropy(logits, y), ref)
    torch.testing.assert_close(cross_entropy(logits, F.one_hot(y, 10).float()), ref)
    probs = torch.softmax(torch.randn(16, 10, generator=g), dim=-1)
    torch.testing.assert_close(cross_entropy(logits, probs), F.cross_entropy(logits, probs))


# --- label smoothing (Eq. 2 and PyTorch's convention) ---------------------------------


def test_smoothed_targets_hand_worked() -> None:
    y = torch.tensor([0, 2])
    uni = smoothed_targets(y, 4, 0.2, "uniform")
    assert uni.dtype == torch.float32 and uni.shape == (2, 4)
    torch.testing.assert_close(uni[0], torch.tensor([0.85, 0.05, 0.05, 0.05]))
    torch.testing.assert_close(uni[1], torch.tensor([0.05, 0.05, 0.85, 0.05]))
    paper = smoothed_targets(y, 4, 0.2, "paper")
    third = 0.2 / 3
    torch.testing.assert_close(paper[0], torch.tensor([0.8, third, third, third]))
    torch.testing.assert_close(paper[1], torch.tensor([third, third, 0.8, third]))
    torch.testing.assert_close(uni.sum(-1), torch.ones(2))
    torch.testing.assert_close(paper.sum(-1), torch.ones(2))
    assert torch.equal(smoothed_targets(y, 4, 0.2), uni)  # default convention is uniform


def test_smooth_loss_hand_worked() -> None:
    logits, y = torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0])
    # log p = [2 - LZ, -LZ, -LZ]
    # uniform eps=0.3, K=3: targets [0.8, 0.1, 0.1] -> CE = LZ - 1.6
    _close(source_loss("smooth", logits, y, eps=0.3), LZ - 1.6)
    # paper eps=0.3, K=3: targets [0.7, 0.15, 0.15] -> CE = LZ - 1.4
    _close(source_loss("smooth", logits, y, eps=0.3, smoothing="paper"), LZ - 1.4)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5])
def test_smooth_uniform_matches_torch_label_smoothing(eps: float) -> None:
    g = torch.Generator().manual_seed(1)
    logits, y = torch.randn(32, 7, generator=g), torch.randint(0, 7, (32,), generator=g)
    loss = source_loss("smooth", logits, y, eps=eps, smoothing="uniform")
    torch.testing.assert_close(loss, F.cross_entropy(logits, y, label_smoothing=eps))


def test_smooth_conventions_differ_for_positive_eps_and_agree_at_zero() -> None:
    g = torch.Generator().manual_seed(2)
    logits, y = torch.randn(8, 5, generator=g), torch.randint(0, 5, (8,), generator=g)

    def loss(eps: float, conv: str) -> torch.Tensor:
        return source_loss("smooth", logits, y, eps=eps, smoothing=conv)

    assert not torch.allclose(loss(0.2, "uniform"), loss(0.2, "paper"))
    torch.testing.assert_close(loss(0.0, "uniform"), loss(0.0, "paper"))
    torch.testing.assert_close(loss(0.0, "paper"), F.cross_entropy(logits, y))


# --- soft labels / distillation (Eq. 4-6) ---------------------------------------------

STUDENT = torch.tensor([[0.0, 0.0]])
TEACHER = torch.tensor([[LN3, 0.0]])  # softmax -> [0.75, 0.25]
Y0 = torch.tensor([0])
KL_T1 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)


def test_soft_targets_hand_worked() -> None:
    torch.testing.assert_close(soft_targets(TEACHER, 1.0), torch.tensor([[0.75, 0.25]]))
    s3 = math.sqrt(3.0)  # tau=2: logits [ln3 / 2, 0] -> exp -> [sqrt 3, 1]
    expected = torch.tensor([[s3 / (s3 + 1), 1 / (s3 + 1)]])
    torch.testing.assert_close(soft_targets(TEACHER, 2.0), expected)


@pytest.mark.parametrize("mode", ["soft", "kd"])
def test_distillation_lambda_mixing_hand_worked(mode: str) -> None:
    def loss(lam: float, tau: float = 1.0) -> torch.Tensor:
        return source_loss(mode, STUDENT, Y0, TEACHER, tau=tau, lam=lam)

    _close(loss(1.0), KL_T1)
    _close(loss(0.0), math.log(2.0))  # plain CE of uniform student on class 0
    _close(loss(0.5), 0.5 * math.log(2.0) + 0.5 * KL_T1)
    s3 = math.sqrt(3.0)
    p_t2 = [s3 / (s3 + 1), 1 / (s3 + 1)]
    _close(loss(1.0, tau=2.0), 4.0 * _kl(p_t2, [0.5, 0.5]))


def test_distillation_tau_uses_tempered_kl_and_untempered_ce() -> None:
    student, y = torch.tensor([[1.0, 0.0]]), torch.tensor([1])
    ce = math.log(math.e + 1.0)  # -log(1 / (e + 1)) at tau=1
    s3, r = math.sqrt(3.0), math.exp(0.5)  # tau=2: teacher [ln3/2, 0], student [1/2, 0]
    kl = _kl([s3 / (s3 + 1), 1 / (s3 + 1)], [r / (r + 1), 1 / (r + 1)])
    loss = distillation_loss(student, y, TEACHER, tau=2.0, lam=0.5)
    _close(loss, 0.5 * ce + 0.5 * 4.0 * kl)


@pytest.mark.parametrize("tau", [0.5, 1.0, 4.0])
def test_kl_zero_when_student_equals_teacher(tau: float) -> None:
    z = torch.randn(6, 9, generator=torch.Generator().manual_seed(3))
    y = torch.zeros(6, dtype=torch.long)
    loss = distillation_loss(z, y, z.clone(), tau=tau, lam=1.0)
    assert abs(loss.item()) < 1e-5


def test_teacher_with_zero_probability_class_is_finite() -> None:
    teacher = torch.tensor([[0.0, float("-inf")]])  # p_t = [1, 0]
    _close(distillation_loss(STUDENT, Y0, teacher, tau=1.0, lam=1.0), math.log(2.0))


def test_lambda_zero_ignores_teacher_values() -> None:
    teacher = torch.full((1, 2), float("nan"))
    _close(distillation_loss(STUDENT, Y0, teacher, tau=1.0, lam=0.0), math.log(2.0))


def test_no_gradient_into_teacher() -> None:
    student = STUDENT.clone().requires_grad_(True)
    teacher = TEACHER.clone().requires_grad_(True)
    source_loss("kd", student, Y0, teacher, tau=2.0, lam=0.5).backward()
    assert teacher.grad is None
    assert student.grad is not None and torch.isfinite(student.grad).all()
    assert student.grad.abs().sum() > 0


# --- per-sample weights ---------------------------------------------------------------


def test_weighted_mean_hand_worked() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    y = torch.tensor([0, 1])
    l0, l1 = LZ - 2.0, math.log(3.0)  # per-sample CE
    w = torch.tensor([3.0, 1.0])
    _close(cross_entropy(logits, y, w), (3 * l0 + 1 * l1) / 4)
    _close(source_loss("hard", logits, y, weights=w), (3 * l0 + l1) / 4)
    _close(cross_entropy(logits, y, torch.ones(2)), (l0 + l1) / 2)


def test_weighted_distillation_hand_worked() -> None:
    student = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    teacher = torch.tensor([[LN3, 0.0], [0.0, 0.0]])  # second sample: KL = 0
    y = torch.tensor([0, 0])
    w = torch.tensor([1.0, 3.0])
    _close(distillation_loss(student, y, teacher, 1.0, 1.0, w), KL_T1 / 4)


@pytest.mark.parametrize("mode", LABEL_MODES)
def test_all_ones_weights_equal_unweighted(mode: str) -> None:
    g = torch.Generator().manual_seed(4)
    logits, y = torch.randn(10, 6, generator=g), torch.randint(0, 6, (10,), generator=g)
    teacher = torch.randn(10, 6, generator=g)
    kw = {"tau": 2.0, "lam": 0.3, "eps": 0.1}
    torch.testing.assert_close(
        source_loss(mode, logits, y, teacher, weights=torch.ones(10), **kw),
        source_loss(mode, logits, y, teacher, **kw),
    )


# --- label settings: validated once, in the trial spec ----------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tau": 0.0}, "tau"),
        ({"tau": -1.0}, "tau"),
        ({"tau": float("nan")}, "tau"),
        ({"lam": -0.1}, "lam"),
        ({"lam": 1.1}, "lam"),
        ({"lam": float("nan")}, "lam"),
        ({"eps": -0.1}, "eps"),
        ({"eps": 1.0}, "eps"),
        ({"smoothing": "gaussian"}, "smoothing"),
    ],
)
def test_label_settings_validation(kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        TrialSpec(sweep="s", dataset=DataSpec(name="digits"), arch="mlp", selector="random",
                  ratio=0.5, **kwargs)


def test_label_modes_and_which_need_a_teacher() -> None:
    with pytest.raises(ValueError, match="mixup"):
        get_label_source("mixup")
    assert {m: "teacher" in get_label_source(m).needs for m in LABEL_MODES} == {
        "hard": False,
        "smooth": False,
        "soft": True,
        "kd": True,
    }


@pytest.mark.parametrize("mode", ["soft", "kd"])
def test_teacher_mode_without_teacher_raises(mode: str) -> None:
    with pytest.raises(ValueError, match="teacher"):
        source_loss(mode, STUDENT, Y0, None)


def test_smoothed_targets_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="eps"):
        smoothed_targets(Y0, 3, 1.0)
    with pytest.raises(ValueError, match="convention"):
        smoothed_targets(Y0, 3, 0.1, "other")


# --- precision / device ---------------------------------------------------------------


@pytest.mark.parametrize("mode", LABEL_MODES)
def test_bf16_autocast_cpu_gives_float32_finite_loss(mode: str) -> None:
    g = torch.Generator().manual_seed(5)
    layer = torch.nn.Linear(8, 5)
    x, y = torch.randn(4, 8, generator=g), torch.randint(0, 5, (4,), generator=g)
    teacher = torch.randn(4, 5, generator=g).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layer(x)
        assert logits.dtype == torch.bfloat16
        loss = source_loss(mode, logits, y, teacher, tau=2.0, lam=0.5, eps=0.1)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    g = torch.Generator().manual_seed(6)
    logits, y = torch.randn(8, 4, generator=g), torch.randint(0, 4, (8,), generator=g)
    teacher, w = torch.randn(8, 4, generator=g), torch.rand(8, generator=g)
    for mode in LABEL_MODES:
        kw = {"tau": 2.0, "lam": 0.5, "eps": 0.1, "smoothing": "paper"}
        cpu = source_loss(mode, logits, y, teacher, w, **kw)
        gpu = source_loss(mode, logits.cuda(), y.cuda(), teacher.cuda(), w.cuda(), **kw)
        torch.testing.assert_close(gpu.cpu(), cpu)
