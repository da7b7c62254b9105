from coretune.harness.sweep import now, trial_row, versions
from coretune.reports.schema import TRIALS, to_table
from coretune.search_spaces.schema import expand, parse_spec

SPEC = {"name": "rows", "datasets": "digits", "archs": "mlp",
        "selectors": [{"name": "random"}], "ratios": [0.1],
        "label_modes": [{"mode": "soft", "tau": 2.0, "lam": 0.5}]}


def _trial():
    trial = expand(parse_spec(SPEC))[0]
    trial["teacher_key"] = "teacher-x"
    return trial


def test_error_row_is_valid_and_marked():
    row = trial_row(_trial(), {}, "RuntimeError: boom", versions(), None, 0.1, now(), now())
    table = to_table([row], TRIALS)
    rec = table.to_pylist()[0]
    assert rec["status"] == "error" and rec["error"] == "RuntimeError: boom"
    assert rec["test_acc"] is None and not rec["stopped_early"]


def test_unfinished_row_is_stopped_early():
    metrics = {"test_acc": 0.5, "final": False, "epochs_run": 2.0, "n_selected": 144}
    row = trial_row(_trial(), metrics, None, versions(), 0.99, 0.1, now(), now())
    rec = to_table([row], TRIALS).to_pylist()[0]
    assert rec["status"] == "stopped" and rec["stopped_early"]
    assert rec["tau"] == 2.0 and rec["lam"] == 0.5 and rec["teacher_test_acc"] == 0.99
    done = trial_row(_trial(), {**metrics, "final": True}, None, versions(), 0.99, 0.1, now(),
                     now())
    assert done["status"] == "ok" and not done["stopped_early"]
