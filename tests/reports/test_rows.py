import json

from coretune.reports.rows import now, trial_row, versions
from coretune.reports.tables import TRIALS, to_table
from coretune.search_spaces.schema import expand, parse_spec

SPEC = {"name": "rows", "datasets": "digits", "archs": "mlp",
        "selectors": [{"name": "random"}], "ratios": [0.1],
        "label_modes": [{"mode": "soft", "tau": 2.0, "lam": 0.5}]}


def _row(metrics, error=None):
    trial = expand(parse_spec(SPEC))[0]
    return trial_row(trial, "t1", metrics, error, versions(), teacher_key="teacher-x",
                     teacher_acc=0.99, select_seconds=0.1, started=now(), finished=now())


def test_error_row_is_valid_and_marked():
    rec = to_table([_row({}, "RuntimeError: boom")], TRIALS).to_pylist()[0]
    assert rec["status"] == "error" and rec["error"] == "RuntimeError: boom"
    assert rec["test_acc"] is None and not rec["stopped_early"]


def test_unfinished_row_is_stopped_early():
    metrics = {"test_acc": 0.5, "test_nll": 1.0, "train_loss": 1.0, "final": False,
               "coreset_epochs": 2.0, "n_selected": 144}
    rec = to_table([_row(metrics)], TRIALS).to_pylist()[0]
    assert rec["status"] == "stopped" and rec["stopped_early"] and rec["epochs_run"] == 2.0
    assert rec["tau"] == 2.0 and rec["lam"] == 0.5 and rec["teacher_test_acc"] == 0.99
    assert rec["smoothing"] == "uniform" and rec["metric"] == "test_acc"
    spec = json.loads(rec["trial_spec"])
    assert spec["label_mode"] == "soft" and spec["dataset"]["name"] == "digits"
    assert "sweep" not in spec and json.loads(rec["arch_args"]) == {}
    done = _row({**metrics, "final": True})
    assert done["status"] == "ok" and not done["stopped_early"]


def test_non_finite_loss_is_diverged():
    metrics = {"test_acc": 0.1, "test_nll": float("nan"), "train_loss": float("inf"),
               "final": True}
    assert _row(metrics)["status"] == "diverged"


def test_rows_carry_the_teachers_key_architecture_and_accuracy():
    rec = to_table([_row({})], TRIALS).to_pylist()[0]
    assert (rec["teacher_key"], rec["teacher_arch"], rec["teacher_test_acc"]) == \
        ("teacher-x", "small_cnn", 0.99)
    hard = expand(parse_spec({**SPEC, "label_modes": [{"mode": "hard"}]}))[0]
    row = trial_row(hard, "t2", {}, None, versions(), teacher_key=None, teacher_acc=None,
                    select_seconds=0.0, started=now(), finished=now())
    assert row["teacher_arch"] is None
