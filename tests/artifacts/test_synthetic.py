"""Synthetic sets (Hard Truths item 5): RDED and CA2D built through the artifact graph, a
distilled set from an .npz trained on under hard, soft and kd labels through Ray Tune, a
malformed file refused before Ray with the field named."""

from __future__ import annotations

import numpy as np
import pytest

from coretune.artifacts.graph import build
from coretune.artifacts.synthetic import synthetic_dataset
from coretune.driver.plan import plan_sweep
from coretune.driver.run import run_sweep
from coretune.errors import DataError, SpecError
from coretune.reports.results import ResultsStore
from coretune.search_spaces.schema import load_spec
from coretune.selectors.compute_aware import cad_scores, resolve_window
from coretune.train.data import load_dataset
from coretune.train.synthetic_file import save_synthetic_npz

BASE = {
    "ratios: [0.05, 0.2]": "ratios: [0.05]\nipcs: [3]",
    "  - name: ccs\n    args: {score: aum, beta: 0.1}\n": "{methods}",
    "  - {mode: smooth, eps: 0.1, smoothing: paper}\n": "",
}


def _spec(write_spec, name: str, methods: str, modes: dict | None = None):
    return write_spec(name, replace={**{k: v.format(methods=methods) for k, v in
                                        BASE.items()}, **(modes or {})})


def _build(plan, planned):
    for node in planned.selection.walk():
        build(node, plan.store, plan.datasets[planned.data_key], "cpu")
    return plan.store.load(planned.selection.key)


def test_rded_and_ca2d_build_ipc_images_per_class_from_their_pools(write_spec, tmp_path):
    methods = ("  - {name: rded, args: {mipc: 20, num_crop: 3}}\n"
               "  - {name: ca2d, args: {mipc: 20, num_crop: 3}}\n")
    plan = plan_sweep(_spec(write_spec, "rded", methods), tmp_path / "o", tmp_path / "c")
    ds = plan.datasets[plan.trials[0].data_key]
    arts = {}
    for t in plan.trials:
        if t.spec.selector in ("rded", "ca2d") and t.spec.label_mode == "hard":
            assert t.selection.kind == "synthetic_set" and t.spec.ipc == 3
            arts[t.spec.selector] = art = _build(plan, t)
            images, labels = art.array("images"), art.array("labels")
            assert images.dtype == np.uint8 and images.shape == (30, 1, 8, 8)
            assert (np.bincount(labels, minlength=10) == 3).all()
            src = art.array("sources")[:, 0]
            assert (ds.train_y[src] == labels).all()  # each image cut from its own class
            assert np.array_equal(art.array("indices"), np.arange(30))
    # CA2D's pool: the 20 highest-CAD samples of each class, from CAD-Prune's scores
    ca2d = next(t for t in plan.trials if t.spec.selector == "ca2d")
    scores_node = dict(ca2d.selection.deps)["checkpoint_scores"]
    from coretune.artifacts.selection import consumer_view

    scores = consumer_view("checkpoint_scores", plan.store.load(scores_node.key))
    cad = cad_scores(scores.trajectory("p_true"), resolve_window(scores.points, None, 2), 2)
    for src, y in zip(arts["ca2d"].array("sources")[:, 0], arts["ca2d"].array("labels"),
                      strict=True):
        members = np.flatnonzero(ds.train_y == y)
        top = members[np.argsort(-cad[members], kind="stable")[:20]]
        assert src in top
    # the same seed makes the same set: a second store builds identical bytes
    from coretune.artifacts.store import ArtifactStore

    other = ArtifactStore(str(tmp_path / "again"))
    rded = next(t for t in plan.trials if t.spec.selector == "rded"
                and t.spec.label_mode == "hard")
    for node in rded.selection.walk():
        build(node, other, ds, "cpu")
    assert np.array_equal(other.load(rded.selection.key).array("images"),
                          arts["rded"].array("images"))


def test_a_synthetic_set_is_a_dataset_of_its_own(write_spec, tmp_path):
    plan = plan_sweep(_spec(write_spec, "own", "  - {name: rded, args: {mipc: 10}}\n"),
                      tmp_path / "o", tmp_path / "c")
    t = next(t for t in plan.trials if t.spec.selector == "rded")
    base = plan.datasets[t.data_key]
    ds = synthetic_dataset(base, _build(plan, t))
    assert len(ds.train_y) == 30 and ds.fingerprint == t.selection.key
    assert ds.test_x is base.test_x and np.allclose(ds.mean, base.mean)
    assert ds.full_size == len(base.train_y)  # full_epochs count the real split


def test_a_file_set_trains_under_hard_soft_and_kd(write_spec, tmp_path, ray_session):
    digits = load_dataset("digits")
    pick = np.concatenate([np.flatnonzero(digits.train_y == c)[:3] for c in range(10)])
    path = tmp_path / "distilled.npz"
    save_synthetic_npz(path, digits.train_x[pick], digits.train_y[pick])
    methods = f"  - {{name: from_file, args: {{path: '{path}'}}}}\n"
    spec = _spec(write_spec, "file", methods)
    summary = run_sweep(spec, tmp_path / "out", cache=tmp_path / "cache")
    rows = ResultsStore(str(tmp_path / "out")).read("trials")
    files = rows[rows["selector"] == "from_file"]
    assert set(files["label_mode"]) == {"hard", "soft", "kd"}
    assert (files["status"] == "ok").all(), files[["status", "error"]]
    assert (files["n_selected"] == 30).all() and (files["ipc"] == 3).all()
    assert summary.status_counts == {"ok": len(rows)}
    # the same file twice: cached, nothing re-run
    assert run_sweep(spec, tmp_path / "out", cache=tmp_path / "cache").trials_run == 0


@pytest.mark.parametrize("write,match", [
    (lambda p, d: p.write_bytes(b"not a zip"), "not an .npz"),
    (lambda p, d: np.savez(p, images=d.train_x[:30].astype(np.float32),
                           labels=d.train_y[:30]), "images.*uint8"),
    (lambda p, d: save_synthetic_npz(p, d.train_x[:30], d.train_y[:30]), "per class"),
])
def test_a_malformed_file_is_refused_before_ray_naming_the_field(write_spec, tmp_path, write,
                                                                  match):
    path = tmp_path / "bad.npz"
    write(path, load_dataset("digits"))
    spec = _spec(write_spec, "bad", f"  - {{name: from_file, args: {{path: '{path}'}}}}\n")
    with pytest.raises(DataError, match=rf"^selectors\.args\.path: .*{match}"):
        plan_sweep(spec, tmp_path / "o", tmp_path / "c")
    assert not (tmp_path / "o").exists()


def test_a_synthetic_set_needs_ipcs(write_spec):
    spec = write_spec("no_ipcs", replace={
        "  - name: ccs\n    args: {score: aum, beta: 0.1}\n": "  - name: rded\n"})
    with pytest.raises(SpecError, match="rded.*synthetic set.*ipcs"):
        load_spec(spec)
