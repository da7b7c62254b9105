import numpy as np
import pytest

from coretune.artifacts.graph import Node, build
from coretune.artifacts.store import ArtifactStore
from coretune.artifacts.teacher import TeacherService
from coretune.spec import BudgetSpec, DataSpec, OptimizerSpec, RecipeSpec
from coretune.train.augment import augment_views
from coretune.train.data import load_dataset
from coretune.train.evaluate import predict_logits

RECIPE = RecipeSpec(arch="mlp", optimizer=OptimizerSpec(lr=0.05, batch_size=64),
                    budget=BudgetSpec(unit="epochs", value=6))


def teacher_node(ds):
    return Node("teacher", RECIPE.model_dump(mode="json"), (), DataSpec(name="digits"),
                ds.fingerprint)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    ds = load_dataset("digits")
    store = ArtifactStore(tmp_path_factory.mktemp("cache"))
    art, trained = build(teacher_node(ds), store, ds)
    return ds, store, art, trained


def test_teacher_trained_once_and_cached(teacher):
    ds, store, art, trained = teacher
    assert trained
    again, trained_again = build(teacher_node(ds), store, ds)
    assert not trained_again and again.key == art.key
    assert art.meta["test_acc"] > 0.9
    logits = art.array("train_logits")
    assert logits.shape == (len(ds.train_y), 10)
    assert (logits.argmax(1) == ds.train_y).mean() > 0.95


def test_service_views_match_an_independent_forward_pass(teacher):
    ds, store, art, _ = teacher
    svc = TeacherService(ds, store.uri, art.key)
    idx = np.array([5, 17, 400])
    out = svc.view_logits(seed=2, epochs=np.array([0, 3]), indices=idx)
    assert out.shape == (2, 3, 10)
    views = augment_views(svc.data.train_x[idx], 2, 3, idx, ds.augment)
    expected = predict_logits(svc.model, svc.data, views).numpy()
    assert np.allclose(out[1], expected, atol=2e-2)  # cached in float16
    assert svc.views_computed == 6
    svc.view_logits(seed=2, epochs=np.array([3]), indices=np.array([17, 5]))
    assert svc.views_computed == 6 and svc.views_served == 8  # replayed views come from cache
    probs = svc.soft_labels(idx, tau=4.0)
    assert np.allclose(probs.sum(1), 1.0, atol=1e-6)


def test_service_sends_top_k_views_when_asked(teacher):
    """``topk`` (FKD) compresses before sending; without it the answer is unchanged."""
    from coretune.train.topk import TopKLogits

    ds, store, art, _ = teacher
    svc = TeacherService(ds, store.uri, art.key)
    idx, epochs = np.array([5, 17, 400]), np.array([0, 3])
    dense = svc.view_logits(seed=2, epochs=epochs, indices=idx)
    packed = svc.view_logits(seed=2, epochs=epochs, indices=idx, topk=3)
    assert isinstance(packed, TopKLogits) and packed.shape == dense.shape
    assert np.allclose(packed.values.float().numpy(), -np.sort(-dense, axis=-1)[..., :3])
    assert packed.nbytes < dense.nbytes / 2
