"""Shared builders for the report tests: complete, valid TRIALS rows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

STARTED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
FINISHED = datetime(2026, 1, 2, 4, 0, 0, tzinfo=UTC)


def make_trial_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "sweep": "s", "trial_id": "t0", "status": "ok", "error": None,
        "dataset": "cifar100", "arch": "resnet18", "selector": "random",
        "selector_args": "{}", "ratio": 0.1, "n_selected": 5000, "label_mode": "hard",
        "tau": 1.0, "lam": 0.0, "eps": 0.0, "beta": None, "seed": 0,
        "budget": '{"unit": "epochs", "value": 30}', "teacher_key": "teacher-abc",
        "teacher_test_acc": 0.7741, "test_acc": 0.5, "test_top5": 0.8, "test_nll": 2.0,
        "test_ece": 0.05, "epochs_run": 30.0, "stopped_early": False, "select_seconds": 0.5,
        "train_seconds": 12.0, "peak_memory_bytes": 1 << 30, "device": "cpu",
        "coretune_version": "0.1.0", "git_sha": None, "torch_version": "2.0",
        "ray_version": "2.0", "started_at": STARTED, "finished_at": FINISHED,
        "arch_args": "{}", "label_args": "{}",
    }
    unknown = set(overrides) - set(row)
    assert not unknown, f"typo in test overrides: {unknown}"
    row.update(overrides)
    if row["status"] == "stopped":
        row["stopped_early"] = True
    return row


@pytest.fixture
def trial_row() -> Callable[..., dict[str, Any]]:
    return make_trial_row
