"""SL+KD views (RandomResizedCrop + CutMix) through Ray Tune: a tiny kd sweep whose two
students replay one view family, served by a node replica that computes each view once."""

from __future__ import annotations

from coretune.driver.run import run_sweep
from coretune.reports.results import ResultsStore


def test_a_kd_sweep_with_sl_kd_views_runs(ray_session, tmp_path, write_spec):
    spec = write_spec("sl_kd", replace={
        "ratios: [0.05, 0.2]": "ratios: [0.2]",
        "  - name: ccs\n    args: {score: aum, beta: 0.1}\n": "",
        "  - {mode: smooth, eps: 0.1, smoothing: paper}\n": "",
        "  - {mode: soft, tau: 4.0, lam: 1.0}\n": "",
        "  - {mode: kd, tau: 4.0, lam: 0.9}\n": "  - {mode: kd, tau: [2.0, 4.0], lam: 0.9}\n",
        "budget: {unit: iterations, value: 30, max_reports: 3}":
            "augment: {flip: true, cutmix: {alpha: 1.0, p: 1.0}, ops: "
            "[{name: random_resized_crop, args: {scale_min: 0.25}}]}\n"
            "budget: {unit: iterations, value: 12, max_reports: 2}"})
    summary = run_sweep(spec, tmp_path / "out", cache=tmp_path / "cache")
    trials = ResultsStore(str(tmp_path / "out")).read("trials")
    assert len(trials) == 3 and (trials["status"] == "ok").all()
    assert sorted(trials["label_mode"]) == ["hard", "kd", "kd"]
    assert trials["test_acc"].between(0.05, 1.0).all() and trials["epochs_run"].gt(0).all()
    (service,) = summary.teacher_service.values()
    # both kd students replay seed 0's mixed views of one coreset and batch size: a replica
    # per node, each view computed once for the two of them
    assert service["placement"] == "node"
    assert 0 < service["views_computed"] and 2 * service["views_computed"] == \
        service["views_served"]
