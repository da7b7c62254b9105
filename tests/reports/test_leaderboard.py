"""Leaderboards from a hand-built trials table with hand-computed cells."""

from __future__ import annotations

import io
import math

import pandas as pd
import pytest
from rich.console import Console

from coretune.reports import tables as S
from coretune.reports.leaderboard import (
    Leaderboard,
    RowKey,
    leaderboard_tables,
    render_markdown,
    render_rich,
)
from tests.reports.conftest import make_trial_row

# test accuracy in percent for seeds 0, 1, 2 → (mean, std with ddof=1), worked out by hand
ACC = {
    ("ccs", "hard", 0.1): ([40, 42, 47], 43.0, math.sqrt(13)),
    ("ccs", "soft", 0.1): ([60, 61, 65], 62.0, math.sqrt(7)),  # best at 10%
    ("random", "hard", 0.1): ([41, 43, 45], 43.0, 2.0),
    ("random", "soft", 0.1): ([55, 58, 61], 58.0, 3.0),
    ("ccs", "hard", 0.3): ([50, 52, 54], 52.0, 2.0),
    ("ccs", "soft", 0.3): ([66, 66, 69], 67.0, math.sqrt(3)),
    ("random", "hard", 0.3): ([51, 55, 56], 54.0, math.sqrt(7)),
    ("random", "soft", 0.3): ([70, 71, 75], 72.0, math.sqrt(7)),  # best at 30%
}


def _rows() -> list[dict]:
    rows = []
    for (sel, mode, ratio), (accs, _, _) in ACC.items():
        for seed, acc in enumerate(accs):
            stopped = (sel, mode, ratio, seed) == ("random", "soft", 0.3, 2)
            rows.append(make_trial_row(
                trial_id=f"{sel}-{mode}-{ratio}-{seed}", selector=sel, label_mode=mode,
                ratio=ratio, seed=seed, test_acc=acc / 100, status="stopped" if stopped else "ok"))
    # excluded: an error row that would otherwise win its column, and a row with no accuracy
    rows.append(make_trial_row(trial_id="err", selector="ccs", label_mode="hard", ratio=0.3,
                               seed=3, status="error", error="RuntimeError: boom",
                               test_acc=0.99))
    rows.append(make_trial_row(trial_id="nan", selector="ccs", label_mode="hard", ratio=0.1,
                               seed=4, test_acc=None))
    rows.append(make_trial_row(trial_id="c10", dataset="cifar10", selector="random",
                               ratio=0.5, test_acc=0.9, teacher_test_acc=None))
    return rows


def _frame(rows: list[dict]) -> pd.DataFrame:
    return S.to_table(rows, S.TRIALS).to_pandas()


@pytest.fixture
def boards() -> list[Leaderboard]:
    return leaderboard_tables(_frame(_rows()))


def _line(md: str, start: str, nth: int = 0) -> str:
    return [line for line in md.splitlines() if line.startswith(start)][nth]


def test_one_board_per_dataset_arch(boards: list[Leaderboard]) -> None:
    assert [(b.dataset, b.arch) for b in boards] == [("cifar10", "resnet18"),
                                                     ("cifar100", "resnet18")]


def test_cells_are_hand_computed_mean_and_sample_std(boards: list[Leaderboard]) -> None:
    board = boards[1]
    assert board.ratios == [0.1, 0.3]
    assert board.rows == [RowKey("ccs", "hard"), RowKey("ccs", "soft"),
                          RowKey("random", "hard"), RowKey("random", "soft")]
    for (sel, mode, ratio), (_, mean, std) in ACC.items():
        cell = board.cell(sel, mode, ratio)
        assert cell is not None
        assert cell.n == 3
        assert cell.mean == pytest.approx(mean, abs=1e-9)
        assert cell.std == pytest.approx(std, abs=1e-9)


def test_best_of_each_column(boards: list[Leaderboard]) -> None:
    board = boards[1]
    assert board.best == {0.1: [RowKey("ccs", "soft")], 0.3: [RowKey("random", "soft")]}
    md = render_markdown([board])
    assert "| **62.00±2.65 (n=3)** |" in _line(md, "| ccs | soft |")
    assert "| 43.00±3.61 (n=3) |" in _line(md, "| ccs | hard |")
    assert "**72.00±2.65 (n=3)** |" in _line(md, "| random | soft |")
    assert "**" not in _line(md, "| random | hard |")


def test_error_and_accuracy_less_rows_are_excluded(boards: list[Leaderboard]) -> None:
    board = boards[1]
    assert board.n_trials == 24 and board.n_excluded == 2 and board.n_stopped == 1
    assert board.seeds == [0, 1, 2]
    assert board.cell("ccs", "hard", 0.3).n == 3  # type: ignore[union-attr]


def test_teacher_accuracy_and_header(boards: list[Leaderboard]) -> None:
    board = boards[1]
    assert board.teacher_test_acc == pytest.approx(77.41)
    assert "77.41%" in board.title
    assert boards[0].teacher_test_acc is None
    md = render_markdown(boards)
    header = _line(md, "dataset cifar100")
    for part in ("arch resnet18", "teacher test acc 77.41%", "24 trials", "1 stopped early",
                 "2 excluded", "seeds 0–2"):
        assert part in header


def test_single_seed_shows_mean_only(boards: list[Leaderboard]) -> None:
    cell = boards[0].cell("random", "hard", 0.5)
    assert cell is not None and cell.std is None and cell.n == 1
    line = _line(render_markdown(boards), "| random | hard |")  # cifar10 comes first
    assert "**90.00 (n=1)**" in line and "±" not in line


def test_label_mode_and_selector_order() -> None:
    rows = [make_trial_row(trial_id=f"{sel}{mode}", selector=sel, label_mode=mode)
            for sel in ("zeta", "alpha") for mode in ("kd", "soft", "smooth", "hard")]
    (board,) = leaderboard_tables(_frame(rows))
    assert [(r.selector, r.label_mode) for r in board.rows] == [
        ("alpha", "hard"), ("alpha", "smooth"), ("alpha", "soft"), ("alpha", "kd"),
        ("zeta", "hard"), ("zeta", "smooth"), ("zeta", "soft"), ("zeta", "kd")]


def test_settings_varied_by_the_sweep_split_rows() -> None:
    rows = [make_trial_row(trial_id=f"{tau}-{seed}", label_mode="soft", tau=tau, seed=seed,
                           test_acc=acc)
            for tau, accs in ((1.0, (0.2, 0.4)), (4.0, (0.6, 0.8))) for seed, acc in
            enumerate(accs)]
    (board,) = leaderboard_tables(_frame(rows))
    assert board.rows == [RowKey("random", "soft", "tau=1.0"), RowKey("random", "soft", "tau=4.0")]
    assert board.cell("random", "soft", 0.1, "tau=4.0").mean == pytest.approx(70.0)  # type: ignore[union-attr]


def test_no_paper_numbers_message() -> None:
    boards = leaderboard_tables(_frame([make_trial_row(dataset="svhn", arch="lenet")]))
    assert boards[0].paper is None
    assert "No published numbers for svhn/lenet in the paper tables." in render_markdown(boards)


def test_empty_input() -> None:
    frame = _frame([make_trial_row(status="error", test_acc=None)])
    assert leaderboard_tables(frame) == []
    assert "No finished trials" in render_markdown([])


def test_render_rich_marks_best_bold_green(boards: list[Leaderboard]) -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, color_system="standard", width=250)
    render_rich(boards, console)
    out = buf.getvalue()
    assert "cifar100 / resnet18" in out
    assert "\x1b[1;32m62.00±2.65 (n=3)" in out  # bold green
    assert "\x1b[1;32m43.00" not in out


def test_varied_arch_args_are_told_apart() -> None:
    rows = [make_trial_row(trial_id=f"t{i}", seed=i % 2, arch_args=args, test_acc=acc)
            for i, (args, acc) in enumerate([('{"batchnorm": false}', 0.5),
                                             ('{"batchnorm": false}', 0.6),
                                             ("{}", 0.7), ("{}", 0.8)])]
    (board,) = leaderboard_tables(_frame(rows))
    configs = sorted(r.config for r in board.rows)
    assert configs == ['arch(batchnorm=false)', 'arch(default)']


def test_label_args_split_rows_and_older_parts_read_as_none() -> None:
    # full soft labels written before label_args existed (null) and top-3 soft labels
    rows = [make_trial_row(trial_id=f"t{i}", seed=i % 2, label_mode="soft", label_args=args,
                           test_acc=acc)
            for i, (args, acc) in enumerate([(None, 0.5), ("{}", 0.7),
                                             ('{"topk": 3}', 0.6), ('{"topk": 3}', 0.8)])]
    (board,) = leaderboard_tables(_frame(rows))
    assert sorted(r.config for r in board.rows) == ["labels(default)", "labels(topk=3)"]
    assert board.cell("random", "soft", 0.1, "labels(default)").mean == pytest.approx(60.0)  # type: ignore[union-attr]


def test_seed_lists_are_ranges() -> None:
    from coretune.reports.leaderboard import seed_ranges
    assert seed_ranges(list(range(100))) == "0–99"
    assert seed_ranges([0, 1, 2]) == "0–2" and seed_ranges([0, 1]) == "0, 1"
    assert seed_ranges([11, 0, 1, 2, 3, 4, 7, 9, 10]) == "0–4, 7, 9–11"


def test_a_narrow_terminal_folds_cells_and_never_truncates_them() -> None:
    rows = [make_trial_row(trial_id=f"{r}-{s}", ratio=r, seed=s, test_acc=0.1671 + 0.04 * s)
            for r in (0.01, 0.02, 0.05, 0.1, 0.2, 0.3) for s in range(100)]
    buf = io.StringIO()
    render_rich(leaderboard_tables(_frame(rows)), Console(file=buf, width=60))
    text = buf.getvalue()
    assert "…" not in text and "seeds 0–99" in text.replace("\n", "")


def test_teachers_as_an_axis_split_the_cells_and_one_teacher_does_not() -> None:
    import json

    def row(i: int, arch: str, acc: float, t_acc: float) -> dict:
        spec = json.dumps({"teacher": {"arch": arch, "seed": 0}, "seed": i % 2})
        return make_trial_row(trial_id=f"{arch}{i}", seed=i % 2, label_mode="kd",
                              teacher_key=f"teacher-{arch}", teacher_test_acc=t_acc,
                              test_acc=acc) | {"trial_spec": spec, "teacher_arch": arch}

    two = [row(i, "resnet18", 0.6 + 0.02 * i, 0.75) for i in range(2)] + \
          [row(i, "mobilenetv2", 0.5 + 0.02 * i, 0.7) for i in range(2)]
    (board,) = leaderboard_tables(_frame(two))
    assert sorted(r.config for r in board.rows) == ["teacher=mobilenetv2 (70.0%)",
                                                    "teacher=resnet18 (75.0%)"]
    cell = board.cell("random", "kd", 0.1, "teacher=resnet18 (75.0%)")
    assert cell.mean == pytest.approx(61.0)  # type: ignore[union-attr]
    (one,) = leaderboard_tables(_frame(two[:2]))
    assert [r.config for r in one.rows] == [""]
