"""A plugin augmentation op (one file, tests/plugins/plugin_augment.py) in a real sweep:
the Ray workers and the teacher service import it and replay the same views."""

from __future__ import annotations

from coretune.driver.run import run_sweep
from coretune.reports.results import ResultsStore
from coretune.search_spaces.schema import expand, load_spec


def test_a_plugin_augmentation_in_a_sweep_under_hard_and_kd(ray_session, write_spec,
                                                            tmp_path):
    spec = write_spec("plugin_augment", replace={
        "seeds: [0]": "seeds: [0]\nplugins: [tests.plugins.plugin_augment]\n"
                      "augment: {pad: 1, ops: [{name: invert}]}\n"
                      # the teacher as an actor (one kd student would get its own process's)
                      "resources: {teacher_placement: single}",
        "ratios: [0.05, 0.2]": "ratios: [0.2]",
        "  - name: ccs\n    args: {score: aum, beta: 0.1}\n": "",
        "  - {mode: smooth, eps: 0.1, smoothing: paper}\n": "",
        "  - {mode: soft, tau: 4.0, lam: 1.0}\n": "",
        "value: 30, max_reports: 3": "value: 12, max_reports: 2"})
    trials = expand(load_spec(spec))
    assert [t.label_mode for t in trials] == ["hard", "kd"]
    assert all(t.augment.ops[0].name == "invert" for t in trials)
    summary = run_sweep(spec, tmp_path / "out", cache=tmp_path / "cache")
    rows = ResultsStore(str(tmp_path / "out")).read("trials")
    assert sorted(rows["label_mode"]) == ["hard", "kd"]
    assert (rows["status"] == "ok").all(), rows[["label_mode", "status"]]
    assert rows["test_acc"].between(0.0, 1.0).all()
    (service,) = summary.teacher_service.values()  # kd: the teacher made the inverted views
    assert service["views_computed"] > 0
