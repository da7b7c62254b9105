"""Results and cache on any filesystem: a file:// URI and an S3-compatible server (moto)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from pyarrow.fs import FileSelector

from coretune.driver.run import run_sweep
from coretune.reports.results import ResultsStore
from coretune.storage import Location
from tests.conftest import wait_until

pytest.importorskip("moto")

SMALL = {  # one coreset, hard and fixed soft labels: artifacts of every stage, 4 students
    "ratios: [0.05, 0.2]": "ratios: [0.1]",
    "seeds: [0]": "seeds: [0, 1]",
    "  - name: ccs\n    args: {score: aum, beta: 0.1}\n": "",
    "  - {mode: smooth, eps: 0.1, smoothing: paper}\n": "",
    "  - {mode: kd, tau: 4.0, lam: 0.9}\n": "",
}
SAME = ["trial_id", "status", "n_selected", "test_acc", "test_nll", "test_ece", "epochs_run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 server on 127.0.0.1, started and stopped by the test."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    def listening() -> bool:
        assert proc.poll() is None, "moto server exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            return False
        return True

    try:
        wait_until(listening, 30, "moto server listening")
    except BaseException:
        proc.kill()
        raise
    yield f"endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
    proc.terminate()
    proc.wait(10)


def _rows(uri: str):
    return ResultsStore(uri).read("trials").sort_values("trial_id")[SAME].reset_index(drop=True)


@pytest.fixture(scope="module")
def local_rows(tmp_path_factory, ray_session):
    from tests.conftest import TINY_SPEC

    root = tmp_path_factory.mktemp("local")
    text = TINY_SPEC.format(name="small")
    for old, new in SMALL.items():
        text = text.replace(old, new)
    spec = root / "small.yaml"
    spec.write_text(text)
    run_sweep(spec, root / "out", cache=root / "cache")
    return spec, _rows(str(root / "out"))


def test_file_uri_round_trip(local_rows, tmp_path):
    spec, expected = local_rows
    out, cache = f"file://{tmp_path}/out", f"file://{tmp_path}/cache"
    summary = run_sweep(spec, out, cache=cache)
    assert summary.trials_run == 4
    assert _rows(out).equals(expected)
    assert (tmp_path / "cache" / "teacher").is_dir() and (tmp_path / "out" / "trials").is_dir()


def test_s3_round_trip(local_rows, s3_server):
    spec, expected = local_rows
    bucket = f"s3://testing:testing@coretune?{s3_server}&allow_bucket_creation=true"
    Location(bucket).fs.create_dir("coretune")
    out = f"s3://testing:testing@coretune/runs/small?{s3_server}"
    cache = f"s3://testing:testing@coretune/cache?{s3_server}"
    summary = run_sweep(spec, out, cache=cache)
    assert summary.trials_run == 4 and summary.artifacts_built == 3  # teacher, a coreset per seed
    assert _rows(out).equals(expected)
    store = Location(cache)
    committed = store.fs.get_file_info(FileSelector(store.path("teacher"), recursive=True))
    assert any(i.path.endswith("/_COMMIT.json") for i in committed)
    assert not any(i.path.endswith("/_LOCK") for i in committed)
    again = run_sweep(spec, out, cache=cache)  # everything ok: nothing re-run
    assert again.trials_run == 0 and again.trials_skipped == 4


def test_s3_listing_needs_no_working_directory(s3_server, tmp_path, monkeypatch):
    """Object-store paths are relative: listing them must not resolve them against a
    working directory, which a long-running driver may have lost."""
    from coretune.reports.results import ResultsStore
    from tests.reports.conftest import make_trial_row

    Location(f"s3://testing:testing@coretune?{s3_server}&allow_bucket_creation=true"
             ).fs.create_dir("coretune")
    store = ResultsStore(f"s3://testing:testing@coretune/runs/cwd?{s3_server}")
    store.write("trials", [make_trial_row(trial_id="a")])
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()  # the working directory no longer exists
    [part] = store.parts("trials")
    assert part.startswith("trials/part-") and store.read("trials")["trial_id"].tolist() == ["a"]
