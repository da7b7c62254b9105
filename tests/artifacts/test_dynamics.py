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

    uniform = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    torch.nn.init.zeros_(uniform[1].weight)
    torch.nn.init.zeros_(uniform[1].bias)
    rec.on_epoch_end(0, uniform)
    assert np.isnan(rec.scores()["el2n"]).all()
    rec.on_epoch_end(1, uniform)
    # uniform prediction over 10 classes: ||p - onehot||² = 0.9² + 9·0.1² = 0.9
    assert rec.scores()["el2n"] == pytest.approx(np.full(n, np.sqrt(0.9)), rel=1e-5)
    # GraNd's last-layer gradient norm: ||p − y||·sqrt(1 + ||h||²), h the flattened image
    h = data.normalize(data.train_x).flatten(1)
    ref = np.sqrt(0.9) * np.sqrt(1 + (h * h).sum(1).numpy())
    assert rec.scores()["grand"] == pytest.approx(ref, rel=1e-4)


def test_grand_and_gradient_embedding_equal_autograd_per_sample_gradients():
    """The recorded GraNd and the closed-form embeddings of a real proxy model against one
    backward pass per sample through the model's own head."""
    from coretune.artifacts.dynamics import grad_embed_of
    from coretune.artifacts.store import ArtifactStore
    from coretune.train.models import classifier_layer

    ds = load_dataset("digits")
    recipe = DynamicsSpec(arch="mlp", optimizer=OptimizerSpec(lr=0.05, batch_size=64),
                          budget=BudgetSpec(unit="epochs", value=3), el2n_epoch=3)
    data = to_device(ds)
    targets = torch.as_tensor(ds.train_y)
    rec = DynamicsRecorder(data, targets, 3, 3)
    from coretune.artifacts.teacher import train_full
    from coretune.train.loop import Hooks

    model, _ = train_full(data, recipe, Hooks(rec.on_batch, rec.on_epoch_end), targets)
    rec.finish(model)
    model.eval()
    head = classifier_layer(model)
    grads = []
    for i in range(0, 40):
        model.zero_grad()
        x = data.normalize(data.train_x[i:i + 1])
        torch.nn.functional.cross_entropy(model(x), targets[i:i + 1]).backward()
        grads.append(torch.cat([head.bias.grad.flatten(), head.weight.grad.flatten()]).clone())
    ref = torch.stack(grads).double().numpy()
    # EL2N and GraNd were taken after epoch 3, i.e. from the final model here
    assert rec.scores()["grand"][:40] == pytest.approx(np.linalg.norm(ref, axis=1), rel=1e-4)

    built = record_dynamics(ds, recipe)
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        art, _ = ArtifactStore(root).build_once("dynamics-test", lambda: built)
        g = grad_embed_of(art)
    # the stored features are float16, hence the tolerance
    assert np.allclose(g.dense(np.arange(40)), ref, rtol=2e-2, atol=2e-3)
    assert built.arrays["grand"][:40] == pytest.approx(np.linalg.norm(ref, axis=1), rel=1e-4)


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
