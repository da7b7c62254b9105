"""The command line: bad input fails fast, with a clear message, leaving nothing behind."""

from __future__ import annotations

import numpy as np
import pytest

from coretune.artifacts.store import ArtifactStore, Built
from coretune.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr()


def test_dry_run_counts_trials(capsys, write_spec, tmp_path):
    code, out = _run(capsys, "sweep", str(write_spec()), "--out", str(tmp_path / "o"),
                     "--dry-run", "--cache", str(tmp_path / "c"))
    assert code == 0 and "16 trials" in out.out
    # the plan: teacher, dynamics and 4 coresets to build, none cached
    assert "artifacts: 6 needed, 0 cached, 6 to build" in out.out
    assert out.out.count("[build ]") == 6 and "<- scores=dynamics-" in out.out
    assert not (tmp_path / "o").exists() and not (tmp_path / "c").exists()


def test_bad_spec_exits_2_before_anything(capsys, write_spec, tmp_path):
    for old, new, needle in [
        ("name: random", "name: nonsense", "unknown selector 'nonsense'"),
        ("ratios: [0.05, 0.2]", "ratios: [0, 0.2]", "ratio must be in (0, 1]"),
        ("ratios: [0.05, 0.2]", "ratios: [1.5]", "got 1.5"),
        ("{mode: soft, tau: 4.0, lam: 1.0}", "{mode: soft, tau: 0, lam: 1.0}", "tau"),
        ("{mode: kd, tau: 4.0, lam: 0.9}", "{mode: kd, lam: 2}", "lam must be in [0, 1]"),
        ("datasets: digits", "datasets: nope", "unknown dataset 'nope'"),
    ]:
        out_dir = tmp_path / "out"
        code, out = _run(capsys, "sweep", str(write_spec(replace={old: new})), "--out",
                         str(out_dir), "--cache", str(tmp_path / "c"))
        assert code == 2, needle
        assert needle in out.err.replace("\n", " ")
        assert not out_dir.exists() and not (tmp_path / "c").exists()


def test_corrupt_result_part_and_unopenable_storage_are_exit_2(capsys, write_spec,
                                                                tmp_path):
    out_dir = tmp_path / "o"
    (out_dir / "trials").mkdir(parents=True)
    junk = out_dir / "trials" / "part-00000000000000000001-junk.parquet"
    junk.write_bytes(b"not parquet")
    code, out = _run(capsys, "sweep", str(write_spec()), "--out", str(out_dir), "--cache",
                     str(tmp_path / "c"))
    err = out.err.replace("\n", "")
    assert code == 2 and "not a readable Parquet file" in err and junk.name in err
    assert junk.read_bytes() == b"not parquet" and not (tmp_path / "c").exists()
    code, out = _run(capsys, "sweep", str(write_spec()), "--out", "nosuchscheme://x/y",
                     "--cache", str(tmp_path / "c"))
    assert code == 2 and "cannot open storage 'nosuchscheme://x/y'" in out.err


def test_missing_dataset_files_name_the_path(capsys, write_spec, tmp_path):
    spec = write_spec(replace={"datasets: digits": "datasets: fashion_mnist"})
    empty = tmp_path / "no_fmnist_here"
    code, out = _run(capsys, "sweep", str(spec), "--out", str(tmp_path / "o"),
                     "--data-root", str(empty))
    assert code == 2 and str(empty) in out.err.replace("\n", "")
    assert not (tmp_path / "o").exists()


def test_corrupt_cache_is_reported_before_work(capsys, write_spec, tmp_path):
    from pathlib import Path

    from coretune.driver.plan import plan_sweep

    spec = write_spec()
    cache = tmp_path / "cache"
    plan = plan_sweep(spec, tmp_path / "o", cache)
    key = next(n.key for n in plan.nodes if n.kind == "teacher")
    art = ArtifactStore(cache).save(key, Built({"train_logits": np.zeros((3, 10))},
                                               {"test_acc": 1}))
    (Path(art.path) / "train_logits.npy").write_bytes(b"corrupted")
    code, out = _run(capsys, "sweep", str(spec), "--out", str(tmp_path / "o"),
                     "--cache", str(cache))
    err = out.err.replace("\n", "")
    assert code == 2 and "corrupt" in err and "train_logits.npy" in err
    assert not (tmp_path / "o").exists()
    assert (Path(art.path) / "train_logits.npy").read_bytes() == b"corrupted"  # kept


def test_report_without_results(capsys, tmp_path):
    code, out = _run(capsys, "report", str(tmp_path))
    assert code == 2 and "no trial results" in out.err


def test_out_under_a_regular_file_is_refused(capsys, write_spec, tmp_path):
    (tmp_path / "file").write_text("x")
    code, out = _run(capsys, "sweep", str(write_spec()), "--out", str(tmp_path / "file" / "o"),
                     "--dry-run")
    assert code == 2 and "is not a directory" in out.err


def test_cluster_refuses_node_local_storage(capsys, write_spec, tmp_path):
    from coretune.storage import mount_fstype

    if mount_fstype(str(tmp_path)) in (None, "nfs", "nfs4"):
        import pytest

        pytest.skip("tmp_path is not on a node-local filesystem here")
    code, out = _run(capsys, "sweep", str(write_spec()), "--out", str(tmp_path / "o"),
                     "--cache", str(tmp_path / "c"), "--address", "127.0.0.1:1", "--dry-run")
    assert code == 2 and "--cache" in out.err and "local disk" in out.err
    assert not (tmp_path / "o").exists()
    code, out = _run(capsys, "sweep", str(write_spec()), "--out", str(tmp_path / "o"),
                     "--cache", str(tmp_path / "c"), "--address", "127.0.0.1:1", "--dry-run",
                     "--allow-node-local")
    assert code == 0


def test_second_driver_on_one_output_is_refused(capsys, write_spec, tmp_path, monkeypatch):
    import json
    import os
    import socket

    import ray

    out = tmp_path / "o"
    out.mkdir()
    holder = {"host": socket.gethostname(), "pid": os.getppid(), "since": "earlier"}
    (out / "_DRIVER.lock").write_text(json.dumps(holder))  # a live driver holds it

    def refuse(*a, **k):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(ray, "init", refuse)
    code, got = _run(capsys, "sweep", str(write_spec()), "--out", str(out), "--cache",
                     str(tmp_path / "c"))
    assert code == 2 and "in use by another driver" in got.err
    assert f":{os.getppid()} since earlier" in got.err
    assert sorted(p.name for p in out.iterdir()) == ["_DRIVER.lock"]


def test_ray_starts_locally_unless_an_address_is_given(monkeypatch):
    import ray

    from coretune.driver.run import init_ray

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw["address"]))
    assert init_ray(None) and init_ray("10.0.0.1:6379")
    assert calls == ["local", "10.0.0.1:6379"]  # never silently attaches to `ray start`

    def unreachable(**kw):
        raise ConnectionError("could not connect")

    monkeypatch.setattr(ray, "init", unreachable)
    with pytest.raises(ConnectionError, match="--address 127.0.0.1:1: cannot join"):
        init_ray("127.0.0.1:1")


def test_quiet_sweep_prints_one_summary_line(capsys, write_spec, tmp_path, ray_session):
    spec = write_spec("quiet", replace={
        "  - name: ccs\n    args: {score: aum, beta: 0.1}\n": "",
        "  - {mode: smooth, eps: 0.1, smoothing: paper}\n": "",
        "  - {mode: soft, tau: 4.0, lam: 1.0}\n": "", "  - {mode: kd, tau: 4.0, lam: 0.9}\n": ""})
    code, out = _run(capsys, "sweep", str(spec), "--out", str(tmp_path / "o"), "--cache",
                     str(tmp_path / "c"), "--quiet", "--no-report")
    lines = out.out.strip().splitlines()
    assert code == 0 and len(lines) == 2, out.out
    assert lines[1].startswith("sweep quiet: 2 of 2 trials finished, {'ok': 2}")
    assert "running" not in out.out and "━" not in out.out  # no live view


def test_unexpected_errors_are_one_line_not_a_traceback(capsys, monkeypatch):
    import coretune.reports.report as report

    def boom(*a, **k):
        raise TypeError("something\nunexpected")

    monkeypatch.setattr(report, "write_report", boom)
    code, out = _run(capsys, "report", "anywhere")
    err = out.err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert err.startswith("error: TypeError: something unexpected (raised at ")
    assert "test_cli.py" in err and "in boom" in err and "--debug" in err


def test_a_bug_inside_a_selector_is_exit_1_with_where_not_bad_input(capsys, tmp_path,
                                                                     write_spec, ray_session):
    """numpy's LinAlgError is a ValueError: before CoretuneError it was reported as bad input
    (exit 2, no way to see the traceback)."""
    assert issubclass(np.linalg.LinAlgError, ValueError)
    spec = write_spec(replace={"datasets: digits": "plugins: [tests.plugins.broken_selector]\n"
                                                   "datasets: digits",
                               "  - name: random\n": "  - name: singular\n"})
    text = spec.read_text().replace("  - name: ccs\n    args: {score: aum, beta: 0.1}\n", "")
    spec.write_text(text)
    argv = ["sweep", str(spec), "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"),
            "--quiet", "--no-report"]
    code, out = _run(capsys, *argv)
    err = out.err.strip()
    assert code == 1, err
    assert "LinAlgError" in err and "broken_selector.py" in err and "--debug" in err
    code, out = _run(capsys, "--debug", *argv)
    assert code == 1 and "Traceback (most recent call last)" in out.err
