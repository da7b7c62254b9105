"""A real multi-node Ray cluster on this machine (head + three one-CPU workers, token
authentication left on): a sweep runs across it, a worker node is removed midway, and every
trial still ends ok, after retry, with exactly one row each, in one run of the command
(``retries: 0``: every trial on the lost node errors at once, so the fresh Tune pass that
re-runs trials lost with their node is what completes them — the path a trial takes when
Tune burns its retries on its dead reused actor). (Three workers: the two left
after the loss keep both CPUs of a two-core machine busy for the rest of the sweep.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from coretune.reports.results import ResultsStore
from tests.conftest import wait_until

SPEC = """
name: cluster
datasets: digits
archs: mlp
seeds: [0, 1, 2, 3]
ratios: [0.05, 0.1, 0.2]
selectors: [{name: random}, {name: random, args: {class_balanced: true}}]
label_modes: [{mode: hard}, {mode: smooth, eps: 0.1}]
budget: {unit: iterations, value: 150, max_reports: 2}
optimizer: {lr: 0.05, batch_size: 32}
retries: 0
"""
LOCAL = {"node_ip_address": "127.0.0.1"}  # with conftest's loopback setting


@pytest.fixture
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 0, **LOCAL})
    workers = [c.add_node(num_cpus=1, **LOCAL) for _ in range(3)]
    c.wait_for_nodes()
    yield c, workers
    c.shutdown()


def test_sweep_survives_losing_a_worker_node(tmp_path, cluster):
    c, workers = cluster
    spec = tmp_path / "cluster.yaml"
    spec.write_text(SPEC)
    results = ResultsStore(str(tmp_path / "out"))
    command = [sys.executable, "-m", "coretune.cli", "sweep", str(spec), "--out",
               str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), "--address",
               c.address, "--allow-node-local", "--no-report"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    def four_rows() -> bool:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        return len(results.parts("trials")) >= 4

    try:
        wait_until(four_rows, 240, "4 trial rows")
        c.remove_node(workers[0])  # a worker node dies mid-sweep, taking its trials along
        _, err = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    trials = results.read("trials")
    assert len(trials) == 48 and trials["trial_id"].is_unique
    assert (trials["status"] == "ok").all(), trials[trials["status"] != "ok"][["error"]]
    summary = json.loads((tmp_path / "out" / "sweep_summary.json").read_text())
    assert summary["trials_finished"] == 48  # rows written: none lost, none written twice
    assert summary["node_loss_reruns"] >= 1 and summary["status_counts"] == {"ok": 48}
    assert trials["retries"].max() >= 1  # the trials on the lost node were re-run
