"""A spec's plugins reach every Ray process that runs coretune code.

The plugin model of :mod:`tests.plugins.plugin_arch` is the teacher's arch of a ``kd``
sweep (so the teacher actor, which rebuilds the teacher to serve its views, must import
the plugin) and the student arch of an ELFS β search (so the β-search Tune trials must
too), besides the build tasks and student trainables that always did."""

from __future__ import annotations

import yaml

from coretune.driver.run import run_sweep
from coretune.reports.results import ResultsStore

PLUGIN = "tests.plugins.plugin_arch"
SPEC = {
    "name": "plugin_everywhere", "plugins": [PLUGIN], "datasets": "digits",
    "archs": [{"name": "plugin_tiny_mlp", "args": {"hidden": 24}}], "seeds": [0],
    "ratios": [0.3],
    "selectors": [
        {"name": "random"},
        {"name": "elfs", "args": {"encoder": "pca", "encoder_args": {"dim": 16},
                                  "knn_k": 10, "clustering": "kmeans",
                                  "beta_grid": [0.0, 0.2], "search_scheduler": "asha",
                                  "grace_period": 1, "reduction_factor": 2.0}}],
    "label_modes": [{"mode": "kd", "tau": 4.0, "lam": 0.9}],
    "budget": {"unit": "iterations", "value": 20, "max_reports": 2},
    "optimizer": {"lr": 0.05, "batch_size": 32},
    "teacher": {"arch": "plugin_tiny_mlp", "arch_args": {"hidden": 16}, "seed": 0,
                "optimizer": {"lr": 0.05, "batch_size": 64}, "budget": {"value": 2}},
    "dynamics": {"arch": "mlp", "seed": 0, "optimizer": {"lr": 0.05, "batch_size": 64},
                 "budget": {"value": 2}},
}


def test_plugin_model_as_teacher_and_beta_search_student(ray_session, tmp_path):
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    summary = run_sweep(tmp_path / "spec.yaml", tmp_path / "out", cache=tmp_path / "cache",
                        quiet=True)
    assert summary.status_counts == {"ok": 2}
    results = ResultsStore(str(tmp_path / "out"))
    trials = results.read("trials")
    assert set(trials["selector"]) == {"random", "elfs"}
    assert (trials["arch"] == "plugin_tiny_mlp").all()
    assert trials["teacher_test_acc"].notna().all()
    # the teacher actor served per-view logits of the plugin teacher to the kd students
    (service,) = summary.teacher_service.values()
    assert service["views_served"] > 0
    betas = results.read("beta_search")
    assert len(betas) >= 1 and betas["chosen"].sum() == 1
    assert trials.loc[trials["selector"] == "elfs", "beta"].item() == \
        betas.loc[betas["chosen"], "beta"].item()
