"""The checkpoint_scores kind (CAD-Prune's compute-aligned proxy) without Ray: the student's
compute worked by hand, the recording points, R points of p_y and EL2N on real digits,
and its key — the students' budget and ratio change it, their seed does not."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
import torch

from coretune.artifacts.checkpoint_scores import (
    CheckpointRecorder,
    aligned_recipe,
    checkpoint_params,
    checkpoint_scores_of,
    images_per_step,
    record_checkpoint_scores,
    record_steps,
)
from coretune.artifacts.graph import need_nodes, node_for
from coretune.artifacts.store import ArtifactStore
from coretune.artifacts.teacher import train_full
from coretune.errors import SpecError
from coretune.search_spaces.schema import expand, parse_spec
from coretune.selectors import budget_for
from coretune.selectors.compute_aware import cad_proxy
from coretune.spec import AugmentSpec, BudgetSpec, DataSpec, DynamicsSpec, OptimizerSpec, TrialSpec
from coretune.train.data import load_dataset, to_device
from coretune.train.evaluate import predict_logits
from coretune.train.loop import Hooks, plan_steps

OPT = OptimizerSpec(lr=0.05, batch_size=32)


def _recipe(unit: str = "epochs", value: int = 30, batch: int = 32) -> DynamicsSpec:
    return DynamicsSpec(arch="mlp", optimizer=OPT.model_copy(update={"batch_size": batch}),
                        budget=BudgetSpec(unit=unit, value=value, max_reports=1),
                        augment=AugmentSpec())


def test_the_students_compute_by_hand():
    # N = 1000 at ratio 0.1: a coreset of 100; batch 32 → 4 steps an epoch (32, 32, 32, 4)
    proxy, images, n_sel = aligned_recipe(_recipe("epochs", 30), 1000, 0.1)
    assert n_sel == 100 and images == 30 * 100  # K = 3 full-data epochs
    assert proxy.budget == BudgetSpec(unit="iterations", value=120, max_reports=1)
    assert proxy.optimizer.batch_size == 32 and proxy.arch == "mlp"
    # batch 128 > 100: the student's batch is its whole coreset, one step an epoch
    proxy, images, _ = aligned_recipe(_recipe("epochs", 30, batch=128), 1000, 0.1)
    assert images == 3000 and proxy.budget.value == 30 and proxy.optimizer.batch_size == 100
    # 50 iterations: 12 epochs of 4 steps (1,200 images), then 2 full batches (64)
    proxy, images, _ = aligned_recipe(_recipe("iterations", 50), 1000, 0.1)
    assert images == 1264 and proxy.budget.value == 50


def test_recording_points_equally_spaced_in_images_seen():
    # n = 10 at batch 4: steps of 4, 4, 2 images; 6 steps see 4, 8, 10, 14, 18, 20
    assert images_per_step(10, 4, 3, 6).tolist() == [4, 8, 10, 14, 18, 20]
    recipe = DynamicsSpec(optimizer=OPT.model_copy(update={"batch_size": 4}),
                          budget=BudgetSpec(unit="iterations", value=6))
    # R = 4 targets 5, 10, 15, 20 images: the first steps that reach them
    steps, seen = record_steps(10, recipe, 4)
    assert steps.tolist() == [2, 3, 5, 6] and seen.tolist() == [8, 10, 18, 20]
    steps, _ = record_steps(10, recipe, 12)  # more points than steps: some share a step
    assert steps[-1] == 6 and np.all(np.diff(steps) >= 0)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_the_kind_records_r_points_of_p_y_and_el2n(digits):
    n = len(digits.train_y)
    built = record_checkpoint_scores(digits, _recipe("epochs", 20), ratio=0.2)
    p, e = built.arrays["p_true"], built.arrays["el2n"]
    n_sel = budget_for(n, 0.2)
    meta = built.meta
    assert meta["points"] == 8 and p.shape == e.shape == (8, n)  # K ≈ 4: R = 8
    assert meta["coreset_size"] == n_sel and meta["student_images"] == 20 * n_sel
    assert meta["steps_run"] == plan_steps(n_sel, OPT, BudgetSpec(value=20))[2]
    seen = built.arrays["images_seen"]
    assert np.all(np.diff(seen) > 0) and seen[-1] == meta["proxy_images"]
    assert abs(seen[-1] - meta["student_images"]) < 32  # the same compute, to a batch
    assert np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    # ‖p − onehot‖² = (1 − p_y)² + Σ_{k≠y} p_k² ≥ (1 − p_y)², and ≤ 2
    assert (e >= (1 - p) - 1e-5).all() and (e <= np.sqrt(2) + 1e-5).all()
    assert p[-1].mean() > p[0].mean()  # the proxy learns
    more = record_checkpoint_scores(digits, _recipe("epochs", 20), ratio=0.2, points=11)
    assert more.arrays["p_true"].shape == (11, n)
    assert np.allclose(more.arrays["p_true"][-1], p[-1], atol=1e-6)  # the same run's end
    with tempfile.TemporaryDirectory() as root:
        art, _ = ArtifactStore(root).build_once("checkpoint-scores-test", lambda: built)
        view = checkpoint_scores_of(art)
    assert np.array_equal(view.p_true, p) and view.points == 8


def test_a_point_is_an_eval_mode_pass_of_the_model_at_that_step(digits):
    data = to_device(digits)
    recipe = _recipe("iterations", 7)
    steps = np.array([3, 7])
    recorder = CheckpointRecorder(data, data.train_y, steps)
    model, _ = train_full(data, recipe, Hooks(on_step=recorder.on_step))
    assert recorder.done == 2
    probs = torch.softmax(predict_logits(model, data, data.train_x), dim=1)
    expected = probs.gather(1, data.train_y[:, None]).squeeze(1)
    assert torch.allclose(recorder.p_true[1], expected, atol=1e-6)


def _trial(**changes) -> TrialSpec:
    fields = {"sweep": "s", "dataset": DataSpec(name="digits"), "arch": "mlp",
              "selector": "cad_prune", "ratio": 0.1, "seed": 0, "optimizer": OPT,
              "budget": BudgetSpec(unit="iterations", value=200, max_reports=4)}
    return TrialSpec(**{**fields, **changes})


def test_the_students_budget_and_ratio_key_the_proxy_and_their_seed_does_not():
    base = checkpoint_params(_trial())
    assert base["recipe"] == cad_proxy(_trial()).key_dump() and base["points"] is None
    key = node_for("checkpoint_scores", _trial(), "fp").key
    assert node_for("checkpoint_scores", _trial(seed=9), "fp").key == key
    for changed in (_trial(budget=BudgetSpec(unit="iterations", value=400, max_reports=4)),
                    _trial(ratio=0.2), _trial(optimizer=OPT.model_copy(update={"lr": 0.1})),
                    _trial(selector_args={"points": 12}),
                    _trial(selector_proxy={"seed": 1})):
        assert node_for("checkpoint_scores", changed, "fp").key != key
    # J, W and the score change only the window maths: the same proxy run
    for args in ({"window": 3}, {"last_windows": 1}, {"score": "el2n"}, {"keep": "lowest"}):
        assert node_for("checkpoint_scores", _trial(selector_args=args), "fp").key == key
    assert need_nodes({"checkpoint_scores"}, _trial(), "fp")["checkpoint_scores"].key == key
    with pytest.raises(SpecError, match="runs"):
        checkpoint_params(_trial(selector_proxy={"runs": 2}))


def test_a_sweep_gives_the_proxy_the_students_arch_and_shares_it_across_seeds():
    spec = parse_spec({"name": "cad", "datasets": "digits", "archs": "mlp", "seeds": [0, 1],
                       "ratios": [0.1, 0.2], "selectors": [{"name": "cad_prune"}],
                       "label_modes": [{"mode": "hard"}],
                       "budget": {"unit": "epochs", "value": 10}})
    trials = expand(spec)
    assert all(t.dynamics is None for t in trials)  # the sweep's dynamics: stays out
    keys = {(t.ratio, t.seed): node_for("checkpoint_scores", t, "fp").key for t in trials}
    assert keys[(0.1, 0)] == keys[(0.1, 1)] != keys[(0.2, 0)] == keys[(0.2, 1)]
    assert checkpoint_params(trials[0])["recipe"]["arch"] == "mlp"
