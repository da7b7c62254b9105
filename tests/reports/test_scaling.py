"""Hard Truths' scaling report: arms and compute read from rows, TOST against brute force,
the three claims on hand-made runs that satisfy and that break each of them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from coretune.reports.scaling import (
    FULL,
    accuracy_vs_compute,
    beyond_margin,
    scaling_claims,
    scaling_frame,
    scaling_markdown,
    tost,
)
from tests.reports.conftest import make_trial_row


def _rows(acc, modes=("hard", "soft", "kd"), computes=(1, 10), seeds=(0, 1, 2)):
    """Trial rows: arms random IPC 1/10 and topk IPC 10, plus the full data; ``acc(mode,
    arm, compute, seed)`` gives the accuracy in points."""
    arms = [("random", {}, 1), ("random", {}, 10), ("topk", {"keep": "easiest"}, 10),
            ("random", {}, None)]
    rows = []
    for mode in modes:
        for sel, args, ipc in arms:
            for c in computes:
                for s in seeds:
                    arm = FULL if ipc is None else f"{sel}{args} {ipc}"
                    rows.append(make_trial_row(
                        trial_id=f"{mode}{sel}{args}{ipc}{c}{s}", label_mode=mode,
                        selector=sel, selector_args=json.dumps(args), seed=s,
                        ratio=1.0 if ipc is None else ipc * 10 / 1437,
                        n_selected=1437 if ipc is None else ipc * 10,
                        budget=json.dumps({"unit": "full_epochs", "value": c}),
                        test_acc=acc(mode, arm, c, s) / 100) | {"ipc": ipc})
    return pd.DataFrame(rows)


def _paper_like(mode, arm, c, s):
    noise = (s - 1) * 0.3
    if arm == FULL:
        return 90 + noise
    if mode == "kd":
        return 90 - 0.2 + noise  # every arm at the full data's level
    gap = {"random{} 1": 12, "random{} 10": 4, "topk{'keep': 'easiest'} 10": 7}[arm]
    if mode == "soft":
        return 90 - gap / 2 + noise
    return 90 - gap * (1.5 if c == 10 else 1.0) + noise  # HL: grows with compute


def test_tost_matches_two_one_sided_welch_tests():
    a, b = np.array([1.0, 1.4, 0.8, 1.1]), np.array([0.9, 1.2, 1.0])
    lo = stats.ttest_ind(a + 0.5, b, equal_var=False, alternative="greater").pvalue
    hi = stats.ttest_ind(a - 0.5, b, equal_var=False, alternative="less").pvalue
    assert tost(a, b, 0.5) == pytest.approx(max(lo, hi))
    assert tost(a, b + 10, 0.5) > 0.99 and tost(a, a + 0.01, 5.0) < 1e-3


def test_beyond_margin_is_the_one_sided_welch_test_on_the_gap_side():
    a, b = np.array([5.0, 5.4, 4.8, 5.1]), np.array([0.9, 1.2, 1.0])
    p = stats.ttest_ind(a - 2.0, b, equal_var=False, alternative="greater").pvalue
    assert beyond_margin(a, b, 2.0) == pytest.approx(p) and p < 1e-3
    q = stats.ttest_ind(b + 2.0, a, equal_var=False, alternative="less").pvalue
    assert beyond_margin(b, a, 2.0) == pytest.approx(q)  # the gap below: the other side
    assert beyond_margin(a, a + 0.5, 2.0) > 0.5  # within the margin: no gap shown


def test_rows_become_arms_at_compute_levels():
    frame = scaling_frame(_rows(_paper_like))
    assert set(frame["arm"]) == {FULL, "random IPC 1", "random IPC 10",
                                 "topk(keep=easiest) IPC 10"}
    assert sorted(frame["compute"].unique()) == [1.0, 10.0]
    assert len(frame) == 3 * 4 * 2 * 3
    # one compute level: not a scaling study
    assert scaling_frame(_rows(_paper_like, computes=(5,))).empty


def test_the_three_claims_hold_on_a_run_shaped_like_the_paper():
    claims = scaling_claims(scaling_frame(_rows(_paper_like)))
    assert [c.holds for c in claims] == [True, True, True], [c.evidence for c in claims]
    assert "3 seeds" in claims[0].evidence


def test_each_claim_fails_where_the_run_contradicts_it():
    def contrary(mode, arm, c, s):
        noise = (s - 1) * 0.3
        if arm == FULL:
            return 90 + noise
        if mode == "kd":  # SL+KD: the smallest subset stays 8 points short
            return 82 + noise if arm == "random{} 1" else 90 + noise
        if mode == "soft":  # SL: every subset alike
            return 89 + noise
        return 85 - (3 if c == 1 else 1) * (arm == "random{} 1") + noise  # HL narrows
    claims = scaling_claims(scaling_frame(_rows(contrary)))
    assert [c.holds for c in claims] == [False, False, False], [c.evidence for c in claims]
    # the 8-point gap is shown, not merely not excluded; the arms at 90 are equivalent
    assert "1 shown farther than ±2 (one-sided Welch p < 0.05: random IPC 1)" in \
        claims[0].evidence
    assert "2/3 arms equivalent" in claims[0].evidence and "0 undecided" in claims[0].evidence


def test_missing_regimes_are_not_testable_and_the_report_renders():
    frame = scaling_frame(_rows(_paper_like, modes=("hard",)))
    claims = scaling_claims(frame)
    assert [c.holds for c in claims] == [None, None, None]
    text = scaling_markdown(scaling_frame(_rows(_paper_like)))
    assert "### SL+KD (`kd`)" in text and "| full data | 90.00 ± 0.30 (n=3)" in text
    figs = accuracy_vs_compute(scaling_frame(_rows(_paper_like)))
    [(name, png)] = figs.items()
    assert name == "accuracy_vs_compute_cifar100_resnet18" and png[:4] == b"\x89PNG"
