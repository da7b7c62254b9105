"""Do the papers' qualitative claims hold on this run? (Where no published cell matches.)

The soft-label paper's findings, checked on a leaderboard's own cells:

1. every selector gains from soft labels at the smallest ratio;
2. Random with soft labels is within one standard deviation of the best soft-label
   selector, at every ratio;
3. the lift from soft labels shrinks as the student nears the teacher (larger ratios).

Each claim is ``True``/``False`` with the numbers it rests on, or ``None`` when the board
lacks the cells to decide it.
"""

from __future__ import annotations

from dataclasses import dataclass

from coretune.reports.leaderboard import Leaderboard, RowKey
from coretune.reports.stats import random_row


@dataclass(frozen=True)
class Claim:
    text: str
    holds: bool | None
    evidence: str

    def verdict(self) -> str:
        return {True: "holds", False: "does not hold", None: "not testable"}[self.holds]


def _pairs(board: Leaderboard, ratio: float) -> dict[tuple[str, str], tuple[float, float]]:
    """(selector, config) → (hard mean, soft mean) at ``ratio``."""
    out = {}
    for row in board.rows:
        if row.label_mode != "hard":
            continue
        hard = board.cells.get((row, ratio))
        soft = board.cells.get((RowKey(row.selector, "soft", row.config), ratio))
        if hard is not None and soft is not None:
            out[row.selector, row.config] = (hard.mean, soft.mean)
    return out


def every_selector_gains(board: Leaderboard) -> Claim:
    text = "every selector gains from soft labels at the smallest ratio"
    if not board.ratios:
        return Claim(text, None, "no cells")
    r0 = board.ratios[0]
    pairs = _pairs(board, r0)
    if not pairs:
        return Claim(text, None, f"no selector has hard and soft cells at {100 * r0:g}%")
    lifts = {f"{s}{' (' + c + ')' if c else ''}": soft - hard
             for (s, c), (hard, soft) in pairs.items()}
    evidence = f"at {100 * r0:g}%: " + ", ".join(f"{k} {v:+.2f}" for k, v in lifts.items())
    return Claim(text, all(v > 0 for v in lifts.values()), evidence)


def random_soft_near_best(board: Leaderboard) -> Claim:
    text = "Random + soft labels is within one std of the best soft-label selector"
    rnd = random_row(board, "soft")
    if rnd is None:
        return Claim(text, None, "no Random + soft labels row")
    parts, verdicts = [], []
    for ratio in board.ratios:
        soft = {row: c for (row, r), c in board.cells.items()
                if r == ratio and row.label_mode == "soft"}
        mine = soft.get(rnd)
        if mine is None or len(soft) < 2:
            continue
        best_row = max(soft, key=lambda row: soft[row].mean)
        best = soft[best_row]
        gap = best.mean - mine.mean
        tol = best.std or 0.0
        verdicts.append(gap <= tol)
        parts.append(f"{100 * ratio:g}%: best {best_row.selector} {best.mean:.2f}"
                     f"±{tol:.2f}, Random {mine.mean:.2f} (gap {gap:.2f})")
    if not verdicts:
        return Claim(text, None, "no ratio with Random + soft and another soft selector")
    return Claim(text, all(verdicts), "; ".join(parts))


def lift_shrinks(board: Leaderboard) -> Claim:
    text = "the soft-label lift shrinks as the student nears the teacher"
    lifts = []
    for ratio in board.ratios:
        pairs = _pairs(board, ratio)
        if pairs:
            lifts.append((ratio, sum(s - h for h, s in pairs.values()) / len(pairs)))
    if len(lifts) < 2:
        return Claim(text, None, "fewer than two ratios with hard and soft cells")
    teacher = "" if board.teacher_test_acc is None else \
        f" (teacher {board.teacher_test_acc:.2f}%)"
    evidence = ", ".join(f"{100 * r:g}%: {v:+.2f}" for r, v in lifts) + teacher
    return Claim(text, lifts[-1][1] < lifts[0][1], "mean lift " + evidence)


def soft_label_claims(board: Leaderboard) -> list[Claim]:
    return [every_selector_gains(board), random_soft_near_best(board), lift_shrinks(board)]
