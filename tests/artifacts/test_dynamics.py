import numpy as np
import pytest
import torch

from coretune.artifacts.dynamics import DynamicsRecorder, record_dynamics
from coretune.spec import BudgetSpec, DynamicsSpec, OptimizerSpec
from coretune.train.data import load_dataset, to_device


@pytest.fixture(scope="module")
def data():
    return to_device(load_dataset("digits"))


def _recorder(data, labels, epochs=4, el2n_epoch=99):
    return DynamicsRecorder(data, torch.as_tensor(labels), epochs, el2n_epoch)


def test_aum_is_mean_margin_hand_worked(data):
    rec = _recorder(data, [0, 2])
    idx = torch.tensor([0, 1])
    rec.on_batch(0, idx, torch.tensor([[3.0, 1.0, 0.0], [3.0, 1.0, 0.0]]))  # margins 2, -3
    rec.on_batch(1, idx, torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 5.0]]))  # margins -1, 4
    aum = rec.scores()["aum"]
    assert aum.tolist() == pytest.approx([0.5, 0.5])


def test_forgetting_counts_correct_to_incorrect_transitions(data):
    rec = _recorder(data, [0, 0, 0], epochs=4)
    right, wrong = [5.0, 0.0], [0.0, 5.0]
    seq = [  # sample 0: ✓ ✗ ✓ ✗ → 2; sample 1: ✗ ✓ ✓ ✓ → 0; sample 2 never learned → epochs
        [right, wrong, wrong], [wrong, right, wrong], [right, right, wrong], [wrong, right, wrong]]
    for epoch, logits in enumerate(seq):
        rec.on_batch(epoch, torch.tensor([0, 1, 2]), torch.tensor(logits))
    assert rec.scores()["forgetting"].tolist() == [2.0, 0.0, 4.0]


def test_el2n_taken_at_the_requested_epoch(data):
    n = len(data.train_y)
    rec = DynamicsRecorder(data, data.train_y, num_epochs=5, el2n_epoch=2)

    class Uniform(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 10)

    rec.on_epoch_end(0, Uniform())
    assert np.isnan(rec.scores()["el2n"]).all()
    rec.on_epoch_end(1, Uniform())
    # uniform prediction over 10 classes: ||p - onehot||² = 0.9² + 9·0.1² = 0.9
    assert rec.scores()["el2n"] == pytest.approx(np.full(n, np.sqrt(0.9)), rel=1e-5)


def test_recorded_run_scores_mislabelled_samples_as_hard():
    ds = load_dataset("digits")
    rng = np.random.default_rng(0)
    noisy = ds.train_y.copy()
    flipped = rng.choice(len(noisy), 100, replace=False)
    noisy[flipped] = (noisy[flipped] + 1 + rng.integers(0, 9, 100)) % 10
    recipe = DynamicsSpec(arch="mlp", optimizer=OptimizerSpec(lr=0.05, batch_size=64),
                          budget=BudgetSpec(unit="epochs", value=12), label_source="noisy")
    built = record_dynamics(ds, recipe, labels=noisy)
    scores, meta = built.arrays, built.meta
    clean = np.setdiff1d(np.arange(len(noisy)), flipped)
    # AUM (Pleiss et al. 2020): mislabelled samples have low margins
    assert scores["aum"][flipped].mean() < scores["aum"][clean].mean() - 2
    assert scores["forgetting"][flipped].mean() > scores["forgetting"][clean].mean()
    assert scores["el2n"][flipped].mean() > scores["el2n"][clean].mean()
    assert meta["label_source"] == "noisy" and meta["el2n_epoch"] >= 1
