"""FKD's τ-independent top-k teacher logits (:mod:`coretune.train.topk`) and the ``soft``/
``kd`` label sources' ``topk`` argument: hand-worked cases and brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from coretune.errors import PluginArgumentError
from coretune.search_spaces.schema import expand, parse_spec
from coretune.spec import DataSpec, TrialSpec
from coretune.train.labels import (
    LabelConfig,
    LabelInputs,
    TeacherSignal,
    get_label_source,
    make_label_source,
)
from coretune.train.losses import distillation_loss
from coretune.train.topk import TopKLogits, as_teacher_logits

TAUS = (0.5, 2.0, 4.0, 10.0)


def random_logits(n: int = 64, c: int = 20, seed: int = 0) -> torch.Tensor:
    return 3.0 * torch.randn(n, c, generator=torch.Generator().manual_seed(seed))


def top_positions(full: torch.Tensor, k: int) -> torch.Tensor:
    return full.topk(k, dim=-1).indices


# ---------------------------------------------------------------------- hand-worked
def test_hand_worked_rest_value():
    """z = [2, 1, 0, −1], k = 2: LSE_rest = log(1 + e⁻¹), z_rest = LSE_rest − log 2."""
    packed = TopKLogits.compress(torch.tensor([[2.0, 1.0, 0.0, -1.0]]), 2)
    z_rest = math.log(1 + math.exp(-1)) - math.log(2)
    assert packed.indices.tolist() == [[0, 1]]
    assert torch.allclose(packed.dense(), torch.tensor([[2.0, 1.0, z_rest, z_rest]]))
    # equal rest logits are stored exactly: [2, 1, 0, 0, 0] comes back as it went in
    same = TopKLogits.compress(torch.tensor([[0.0, 2.0, 0.0, 1.0, 0.0]]), 2)
    assert torch.allclose(same.dense(), torch.tensor([[0.0, 2.0, 0.0, 1.0, 0.0]]), atol=1e-6)


# ---------------------------------------------------------------------- brute force
@pytest.mark.parametrize("k", [1, 3, 7])
def test_top_k_probabilities_are_exact_at_tau_one(k):
    full = random_logits()
    dense = TopKLogits.compress(full, k).dense()
    top = top_positions(full, k)
    p_full, p_dense = full.softmax(-1), dense.softmax(-1)
    assert torch.allclose(p_dense.gather(-1, top), p_full.gather(-1, top), rtol=1e-2,
                          atol=1e-4)  # float16 logits
    assert torch.allclose(p_dense.sum(-1), torch.ones(len(full)), atol=1e-6)
    # the rest's total mass at τ = 1 is exact as well
    rest_full = 1 - p_full.gather(-1, top).sum(-1)
    rest_dense = 1 - p_dense.gather(-1, top).sum(-1)
    assert torch.allclose(rest_dense, rest_full, rtol=1e-2, atol=1e-5)


@pytest.mark.parametrize("tau", TAUS)
def test_top_k_ratios_are_exact_at_every_tau(tau):
    full, k = random_logits(), 4
    dense = TopKLogits.compress(full, k).dense()
    top = top_positions(full, k)
    p_full, p_dense = (full / tau).softmax(-1), (dense / tau).softmax(-1)
    ratio_full = p_full.gather(-1, top[:, 1:]) / p_full.gather(-1, top[:, :1])
    ratio_dense = p_dense.gather(-1, top[:, 1:]) / p_dense.gather(-1, top[:, :1])
    assert torch.allclose(ratio_dense, ratio_full, rtol=2e-2)
    assert torch.allclose(p_dense.sum(-1), torch.ones(len(full)), atol=1e-6)


@pytest.mark.parametrize("tau", TAUS)
def test_rest_mass_bounds_the_truth_by_the_power_mean_inequality(tau):
    """m·exp(z_rest/τ) ≥ Σ_rest exp(z_i/τ) for τ > 1, ≤ for τ < 1 (in float64)."""
    full, k = random_logits(n=200).double(), 3
    packed = TopKLogits.compress(full, k)
    rest = torch.ones_like(full, dtype=torch.bool).scatter(-1, top_positions(full, k), False)
    true_log_mass = torch.where(rest, full / tau, -math.inf).logsumexp(-1)
    approx_log_mass = math.log(full.shape[1] - k) + packed.rest_logit().double() / tau
    gap = approx_log_mass - true_log_mass
    assert (gap > 0).all() if tau > 1 else (gap < 0).all()
    # and so the compressed targets' tail probability is larger (smaller) than the teacher's
    tail = rest.double()
    tail_full = ((full / tau).softmax(-1) * tail).sum(-1)
    tail_dense = ((packed.dense().double() / tau).softmax(-1) * tail).sum(-1)
    assert (tail_dense > tail_full).all() if tau > 1 else (tail_dense < tail_full).all()


@pytest.mark.parametrize("k", [20, 25])
def test_k_at_least_c_is_exact(k):
    full = torch.randint(-40, 40, (16, 20)).float() / 4  # exact in float16
    packed = TopKLogits.compress(full, k)
    assert packed.k == 20 and torch.isneginf(packed.rest_lse).all()
    assert torch.equal(packed.dense(), full)


def test_index_dtype_follows_the_class_count():
    assert TopKLogits.compress(torch.randn(2, 32767), 3).indices.dtype == torch.int16
    wide = TopKLogits.compress(torch.randn(2, 32768), 3)
    assert wide.indices.dtype == torch.int32
    assert wide.indices.max() < 32768 and wide.dense().shape == (2, 32768)


def test_nbytes_is_at_least_fifty_times_smaller_than_fp32_logits():
    n, c, k = 1000, 1000, 10
    packed = TopKLogits.compress(torch.randn(n, c), k)
    assert packed.nbytes == n * (k * (2 + 2) + 4)
    assert 4 * c * n / packed.nbytes >= 50  # 4000 / 44 ≈ 91×


def test_rows_epochs_and_devices():
    full = random_logits(n=12).reshape(3, 4, 20)  # [E, n, C] views of a segment
    packed = TopKLogits.compress(full, 5)
    pos = torch.tensor([3, 0])
    assert packed.shape == (3, 4, 20) and len(packed) == 3
    assert torch.equal(packed[1].dense(pos), packed.dense()[1][pos])
    assert torch.equal(packed.select(np.array([2, 0])).dense(), packed.dense()[[2, 0]])
    assert torch.equal(packed.to("cpu").dense(), packed.dense())
    assert as_teacher_logits(packed, None, torch.device("cpu")) is not packed  # moved copy
    assert isinstance(as_teacher_logits(full, 5, torch.device("cpu")), TopKLogits)
    assert torch.equal(as_teacher_logits(full.numpy(), None, torch.device("cpu")), full)


# ---------------------------------------------------------------------- label sources
def teacher_case(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, 10, (50,), generator=g)
    teacher = torch.randint(-16, 16, (50, 10), generator=g).float() / 4  # exact in float16
    return targets, teacher


def bound_loss(mode: str, args: dict, targets, teacher, views=None, tau=4.0, lam=0.7):
    """The loss of a bound label source on one batch of a 20-image coreset."""
    source = make_label_source(LabelConfig(mode=mode, tau=tau, lam=lam, args=args),
                               LabelInputs(targets, TeacherSignal(teacher, views)))
    indices = torch.arange(5, 25)
    source.bind(indices, 0)
    source.begin_segment(0, np.array([0, 1]), indices.numpy())
    pos = torch.tensor([0, 3, 7, 19])
    student = torch.randn(4, 10, generator=torch.Generator().manual_seed(1))
    return source.loss(student, indices[pos], pos, 1, None), student, indices[pos]


def test_without_topk_soft_and_kd_are_bit_identical_to_the_plain_loss():
    targets, teacher = teacher_case()
    views = teacher.reshape(1, 50, 10) + torch.arange(2.0).reshape(2, 1, 1)  # [E=2, 50, C]
    loss, student, idx = bound_loss("soft", {}, targets, teacher)
    assert torch.equal(loss, distillation_loss(student, targets[idx], teacher[idx], 4.0, 0.7))
    loss, student, idx = bound_loss("kd", {}, targets, None,
                                    views=lambda s, e, i: views[:, i].numpy())
    assert torch.equal(loss, distillation_loss(student, targets[idx], views[1][idx], 4.0, 0.7))


def test_soft_topk_equals_full_at_k_c_and_is_close_at_k_3():
    targets, teacher = teacher_case()
    full = bound_loss("soft", {}, targets, teacher)[0]
    assert torch.equal(bound_loss("soft", {"topk": 10}, targets, teacher)[0], full)
    # hand case: a teacher that is sure of one class, hesitant between two, flat elsewhere
    peaked = torch.tensor([6.0, 3.0, 2.5, 0.5, 0.25, 0.0, -0.25, -0.5, 0.0, 0.25]).repeat(50, 1)
    full = bound_loss("soft", {}, targets, peaked, tau=1.0)[0]
    approx = bound_loss("soft", {"topk": 3}, targets, peaked, tau=1.0)[0]
    assert torch.isclose(approx, full, rtol=2e-3)


def test_kd_topk_takes_compressed_or_dense_views_alike():
    targets, teacher = teacher_case()
    views = teacher.reshape(1, 50, 10) * torch.tensor([1.0, 2.0]).reshape(2, 1, 1)
    dense = bound_loss("kd", {"topk": 3}, targets, None,
                       views=lambda s, e, i: views[:, i].numpy())[0]
    sent = bound_loss("kd", {"topk": 3}, targets, None,
                      views=lambda s, e, i: TopKLogits.compress(views[:, i], 3))[0]
    assert torch.equal(dense, sent)
    assert not torch.equal(dense, bound_loss("kd", {}, targets, None,
                                             views=lambda s, e, i: views[:, i])[0])


@pytest.mark.parametrize("mode", ["soft", "kd"])
@pytest.mark.parametrize("args,needle", [
    ({"topk": 0}, "argument 'topk' should be greater than or equal to 1 (got 0)"),
    ({"topk": "x"}, "argument 'topk' should be a valid integer (got 'x')"),
    ({"top_k": 3}, "takes no argument(s) ['top_k']; it accepts ['topk']"),
])
def test_bad_topk_is_refused_in_one_line(mode, args, needle):
    with pytest.raises(PluginArgumentError) as err:
        get_label_source(mode).validate_args(args)
    assert needle in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------- keys
def test_a_trial_without_topk_keeps_its_id_and_one_with_topk_gets_another():
    def soft_trial(**label_args):
        return TrialSpec(sweep="s", dataset=DataSpec(name="digits"), arch="mlp",
                         selector="random", ratio=0.1, label_mode="soft", tau=4.0, lam=1.0,
                         label_args=label_args)

    assert soft_trial().trial_id("digits:0123abcd") == "3c9fc681082d"  # as before topk
    assert soft_trial(topk=3).trial_id("digits:0123abcd") != "3c9fc681082d"
    spec = parse_spec({"name": "s", "datasets": "digits", "archs": "mlp", "ratios": [0.1],
                       "selectors": [{"name": "random"}],
                       "label_modes": [{"mode": "soft", "tau": 4.0, "lam": 1.0},
                                       {"mode": "soft", "tau": 4.0, "lam": 1.0,
                                        "args": {"topk": 3}}]})
    plain, topk = expand(spec)
    assert plain.label_args == {} and topk.label_args == {"topk": 3}  # kept as written
    assert plain.trial_id("fp") != topk.trial_id("fp")
