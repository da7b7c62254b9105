"""The driver's result writer without Ray: a trial lost with its node is held back for a
fresh Tune pass (no row), its retries counted by group; any other error is written."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from coretune.driver.plan import plan_sweep
from coretune.driver.results_writer import ResultWriter, lost_with_node

SPEC = """
name: writer
datasets: digits
archs: mlp
seeds: [0, 1]
ratios: [0.1]
selectors: [{name: random}]
label_modes: [{mode: hard}]
budget: {unit: iterations, value: 2, max_reports: 1}
students_per_trial: 2
"""
NODE_DIED = ("ActorDiedError: The actor died because its node has died. Node Id: 4f2a…\n"
             "\tthe actor's node was terminated unexpectedly")


def test_lost_with_node_matches_ray_node_deaths_only():
    assert lost_with_node(NODE_DIED)
    assert lost_with_node("NodeDiedError: node 10.0.0.3 is dead")
    assert not lost_with_node("ValueError: loss is nan")
    assert not lost_with_node("ActorDiedError: The actor died unexpectedly before finishing "
                              "this task (its worker process exited with SIGSEGV)")
    assert not lost_with_node(None)


@pytest.fixture
def writer(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    plan = plan_sweep(tmp_path / "spec.yaml", tmp_path / "out", tmp_path / "cache",
                      dry_run=True)
    [group] = plan.groups
    config = {"group": {"group_id": "g00000-x", "students": [
        {"trial_id": s.trial_id} for s in group]}}
    trial = SimpleNamespace(trial_id="tune-1", config=config, last_result={},
                            pickled_error_file=None, error_file=None)
    w = ResultWriter(plan, {}, {}, None, None)
    return w, trial, plan


def test_a_trial_lost_with_its_node_is_deferred_not_written(writer):
    w, trial, plan = writer
    w.defer_lost = True
    w.on_trial_start(0, [], trial)
    w.on_trial_recover(0, [], trial)  # Tune retried it once on the doomed actor
    w._finish(trial, NODE_DIED)
    assert w.lost == [trial.config["group"]] and w.rows == [] and w.running == 0
    assert plan.results.parts("trials") == [] and plan.results.parts("curves") == []
    # the next pass's Tune trial is a new one; the group's retries carry over
    rerun = SimpleNamespace(**{**vars(trial), "trial_id": "tune-2"})
    w.defer_lost = False
    w._finish(rerun, NODE_DIED)  # the last pass: written, as an error
    rows = plan.results.read("trials")
    assert len(rows) == 2 and set(rows["status"]) == {"error"}
    assert set(rows["retries"]) == {2} and "node has died" in rows["error"].iloc[0]


def test_other_errors_are_written_even_when_deferring(writer):
    w, trial, plan = writer
    w.defer_lost = True
    w._finish(trial, "ValueError: something in the trainable")
    assert w.lost == [] and len(plan.results.read("trials")) == 2
