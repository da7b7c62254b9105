"""Teacher placement: the cost model, the choice, and equal views from every placement."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from coretune.driver.plan import describe, plan_sweep
from coretune.driver.run import run_sweep
from coretune.driver.teachers import forward_flops, per_node, plan_teachers
from coretune.reports.results import ResultsStore
from coretune.train.models import build_model

KD_ONLY = {"ratios: [0.05, 0.2]": "ratios: [0.2]",
           "  - name: ccs\n    args: {score: aum, beta: 0.1}\n": "",
           "  - mode: hard\n": "",
           "  - {mode: smooth, eps: 0.1, smoothing: paper}\n": "",
           "  - {mode: soft, tau: 4.0, lam: 1.0}\n": ""}


def test_forward_flops_are_the_flop_counters_on_a_real_model():
    model = build_model("small_cnn", (1, 8, 8), 10, {}).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 1, 8, 8))
    assert forward_flops("small_cnn", {}, (1, 8, 8), 10) == counter.get_total_flops() > 0


def test_shared_views_get_node_replicas_and_private_views_the_students_process(
        write_spec, tmp_path):
    shared = plan_sweep(write_spec("shared"), tmp_path / "a", tmp_path / "c", dry_run=True)
    (tp,) = plan_teachers(shared.trials, shared.datasets).values()
    # the tiny sweep: 2 selectors x 2 ratios of kd students replay seed 0's views
    assert tp.placement == "node" and tp.largest_family == 4 and tp.kd_students == 4
    assert tp.students == 8  # soft students use the teacher too, without views
    assert tp.views_needed == 4 * 30 * 32  # 30 iterations of batch 32 each
    assert tp.flops_per_step == pytest.approx(tp.flops_per_view * 32) and tp.flops_per_view > 0
    own = plan_sweep(write_spec("own", replace={"seeds: [0]": "seeds: [0, 1, 2]", **KD_ONLY}),
                     tmp_path / "b", tmp_path / "c", dry_run=True)
    (tp,) = plan_teachers(own.trials, own.datasets).values()
    assert tp.placement == "process" and tp.largest_family == 1 and tp.kd_students == 3
    assert plan_teachers(own.trials, own.datasets, "single")[tp.key].placement == "single"
    assert f"teacher {tp.key}: process" in describe(own)


def test_a_student_on_a_new_node_asks_the_first_replica():
    replicas = {"n1": "run:t:n1", "n2": "run:t:n2"}
    assert per_node(replicas, "n2") == "run:t:n2" and per_node(replicas, "n9") == "run:t:n1"


def test_every_placement_serves_the_same_views(write_spec, ray_session, tmp_path):
    # seed 1's student takes FKD's top-3 views: compressed by the service, through Ray
    rows = {}
    # node replicas are the single actor's code under another name and placement (the
    # tiny sweep runs one); the process's own service is the other code path
    for placement in ("single", "process"):
        spec = write_spec("kd", replace={
            "seeds: [0]": f"seeds: [0, 1]\nresources: {{teacher_placement: {placement}}}",
            **KD_ONLY, "  - {mode: kd, tau: 4.0, lam: 0.9}":
                "  - {mode: kd, tau: 4.0, lam: 0.9}\n"
                "  - {mode: kd, tau: 4.0, lam: 0.9, args: {topk: 3}}"})
        summary = run_sweep(spec, tmp_path / placement, cache=tmp_path / "cache")
        (service,) = summary.teacher_service.values()
        assert service["placement"] == placement
        if placement != "process":  # the actors' counts; a process's service is its own
            assert service["views_computed"] > 0
        trials = ResultsStore(str(tmp_path / placement)).read("trials")
        assert (trials["status"] == "ok").all() and len(trials) == 4
        rows[placement] = trials.sort_values("trial_id")[["trial_id", "test_nll"]]
    for placement in ("process",):  # bit-identical views: identical students
        assert rows[placement]["trial_id"].tolist() == rows["single"]["trial_id"].tolist()
        assert rows[placement]["test_nll"].tolist() == rows["single"]["test_nll"].tolist()

