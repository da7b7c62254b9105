"""Every packaged space rehearsed (issue 25): its smoke run — ``coretune sweep SPACE --smoke
--data-root DIR`` on stand-in data (``coretune data fake``) — through Ray Tune, in this
process's Ray session, then checked: every student has an ``ok`` row marked ``smoke``,
every artifact of the plan is in the store, the report is written and compares nothing
with the papers. One ``slow`` test per packaged space (``make test-slow`` runs them all,
``.venv/bin/pytest -m slow -k SPACE`` one); a space without an entry in
:data:`REHEARSALS` fails the default suite."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from coretune.search_spaces.files import packaged_spaces
from coretune.search_spaces.schema import expand, load_spec
from coretune.search_spaces.smoke import smoke_spec

#: training images per class of each dataset's stand-in (its test split: the fake's own
#: ratio): enough for the smallest ratio to select something and a 90/10 β-search split
PER_CLASS = {"fashion_mnist": 20, "cifar10": 20, "cifar100": 5, "cifar100n": 5,
             "stl10": 10, "tiny_imagenet": 5, "imagenet1k": 2}
#: what a smoke rehearsal may take here (2 CPU cores): the issue's bound per space
LIMIT_SECONDS = 300


@dataclass(frozen=True)
class Rehearsal:
    """A space's rehearsal: the seconds it took here (2 CPU cores, nothing else running;
    a record, not a bound) and stand-in sizes other than :data:`PER_CLASS`."""

    seconds: float
    per_class: dict[str, int] = field(default_factory=dict)


#: one entry per packaged space (a new space without one fails
#: test_every_packaged_space_has_a_rehearsal); all 27 took 783 s here with
#: another sweep running beside them
REHEARSALS: dict[str, Rehearsal] = {
    "demo": Rehearsal(27),
    "elfs_table1": Rehearsal(40),
    "elfs_table1_digits": Rehearsal(26),
    "elfs_table1_fashion_mnist": Rehearsal(27),
    "elfs_table2": Rehearsal(70),
    "elfs_table3": Rehearsal(24),
    "elfs_table4": Rehearsal(47),
    "elfs_table9": Rehearsal(36),
    "fashion_mnist": Rehearsal(9),
    "hard_truths": Rehearsal(23),
    "hard_truths_cifar100": Rehearsal(33),
    "hard_truths_scaling": Rehearsal(17),
    "hard_truths_scaling_fashion_mnist": Rehearsal(22),
    "soft_label_figure5": Rehearsal(12),
    "soft_label_figure8": Rehearsal(7),
    "soft_label_table1": Rehearsal(17),
    "soft_label_table1_digits": Rehearsal(10),
    "soft_label_table2": Rehearsal(41),
    "soft_label_table3": Rehearsal(16),
    "soft_label_table4": Rehearsal(21),
    "soft_label_table5": Rehearsal(59),
    "soft_label_table5_digits": Rehearsal(26),
    "soft_label_table6": Rehearsal(99),
    "soft_label_table7": Rehearsal(19),
    "soft_label_table7_digits": Rehearsal(9),
    "soft_label_table8": Rehearsal(23),
    "soft_label_table9_10": Rehearsal(23),
}
SPACES = [p.stem for p in packaged_spaces()]


def test_every_packaged_space_has_a_rehearsal():
    missing = sorted(set(SPACES) - set(REHEARSALS))
    assert not missing, (f"packaged space(s) {missing} have no rehearsal: add an entry to "
                         "REHEARSALS (tests/rehearsals/test_spaces.py) and run it with "
                         "`.venv/bin/pytest -m slow -k SPACE`")
    assert not set(REHEARSALS) - set(SPACES), "a rehearsal of no packaged space"


@pytest.fixture(scope="module")
def rehearsal_root():
    """One folder for the module: stand-in data shared by the spaces that read the same
    datasets, and the decoded-image cache (the driver decodes; workers get the arrays)."""
    with tempfile.TemporaryDirectory(prefix="coretune-rehearsals-") as tmp:
        root = Path(tmp)
        previous = os.environ.get("CORETUNE_CACHE")
        os.environ["CORETUNE_CACHE"] = str(root / "decoded-cache")
        yield root
        if previous is None:
            os.environ.pop("CORETUNE_CACHE", None)
        else:
            os.environ["CORETUNE_CACHE"] = previous


def stand_in_data(root: Path, sizes: dict[str, int]) -> Path:
    """A data root holding the stand-in of every dataset in ``sizes`` (written once)."""
    from coretune.train.datasets.fake import EMBEDDED, write_fake

    files = {name: n for name, n in sorted(sizes.items()) if name not in EMBEDDED}
    folder = root / ("data-" + "-".join(f"{k}{v}" for k, v in files.items()) or "none")
    if not (folder / "DONE").exists():
        for name, per_class in files.items():
            write_fake(name, folder, per_class)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "DONE").touch()
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("space", SPACES)
def test_smoke_rehearsal(space, rehearsal_root, ray_session, capsys):
    from coretune.artifacts.store import ArtifactStore
    from coretune.cli import main
    from coretune.driver.plan import plan_sweep
    from coretune.reports.results import ResultsStore

    rehearsal = REHEARSALS.get(space)
    assert rehearsal is not None, f"{space}: no entry in REHEARSALS"
    spec = smoke_spec(load_spec(space))
    names = {d.name for d in spec.datasets}
    data = stand_in_data(rehearsal_root, {n: rehearsal.per_class.get(n, PER_CLASS.get(n, 0))
                                          for n in names})
    out, cache = rehearsal_root / space / "out", rehearsal_root / space / "cache"
    before = plan_sweep(spec, out, cache, str(data))
    assert before.trials and not before.cached and before.spec.smoke

    started = time.monotonic()
    code = main(["sweep", space, "--smoke", "--data-root", str(data), "--out", str(out),
                 "--cache", str(cache), "--quiet"])
    seconds = time.monotonic() - started
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    with capsys.disabled():
        print(f"\nrehearsal {space}: {seconds:.0f} s, {len(before.trials)} students, "
              f"{len(before.nodes)} artifacts")
    assert code == 0, printed[-3000:]
    assert printed.splitlines()[0].startswith(f"sweep {space} (a smoke run")

    trials = ResultsStore(str(out)).read("trials")
    expected = {t.trial_id for t in before.trials}
    assert set(trials["trial_id"]) == expected and len(trials) == len(expand(spec))
    ok = {"ok", "stopped"} if spec.scheduler.name == "asha" else {"ok"}
    bad = trials[~trials["status"].isin(ok)]
    assert bad.empty, bad[["selector", "label_mode", "ratio", "status", "error"]].to_string()
    assert trials["smoke"].eq(True).all()

    store = ArtifactStore(str(cache))
    unbuilt = [n.key for n in before.nodes if not store.exists(n.key)]
    assert not unbuilt, f"artifacts not built: {unbuilt}"
    after = plan_sweep(spec, out, cache, str(data))
    assert not after.trials and after.skipped == len(expected)

    for name in ("leaderboard.md", "leaderboard.tex", "leaderboard.csv", "report.html"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "leaderboard.md").read_text()
    assert "(smoke run)" in report and "| paper" not in report
    assert seconds < LIMIT_SECONDS, f"{space}: {seconds:.0f} s"
