"""Shared fixtures: one Ray session for the whole test run (ray.init costs seconds), and
the settings that keep the tests from waiting (inherited by every Ray worker and by the
sweeps the tests start as subprocesses)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

# Keep every Ray process of the tests on the loopback address (Ray otherwise binds to the
# machine's network address): with this, Ray's node IP is 127.0.0.1 on Linux too.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# Locks (artifact builds, the driver's lease) beat every 0.2 s instead of every 10-30 s and
# are taken over after 10 s of silence instead of 60-120 s (a dead holder on this host is
# taken over at once either way).
os.environ.setdefault("CORETUNE_HEARTBEAT_SECONDS", "0.2")
os.environ.setdefault("CORETUNE_LOCK_STALE_SECONDS", "10")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def wait_until(condition: Callable[[], object], timeout: float, what: str,
               every: float = 0.02):
    """``condition()``'s first truthy value, checked every ``every`` seconds; fails naming
    ``what`` after ``timeout`` seconds (``condition`` may assert, to fail at once)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)
    return value


TINY_SPEC = """
name: {name}
datasets: digits
archs: mlp
seeds: [0]
ratios: [0.05, 0.2]
selectors:
  - name: random
  - name: ccs
    args: {{score: aum, beta: 0.1}}
label_modes:
  - mode: hard
  - {{mode: smooth, eps: 0.1, smoothing: paper}}
  - {{mode: soft, tau: 4.0, lam: 1.0}}
  - {{mode: kd, tau: 4.0, lam: 0.9}}
budget: {{unit: iterations, value: 30, max_reports: 3}}
optimizer: {{lr: 0.05, batch_size: 32}}
teacher: {{arch: mlp, seed: 0, optimizer: {{lr: 0.05, batch_size: 64}}, budget: {{value: 4}}}}
dynamics: {{arch: mlp, seed: 0, optimizer: {{lr: 0.05, batch_size: 64}}, budget: {{value: 4}}}}
"""


@pytest.fixture
def write_spec(tmp_path):
    """Write a tiny valid spec (optionally edited) and return its path."""

    def write(name: str = "tiny", replace: dict[str, str] | None = None) -> Path:
        text = TINY_SPEC.format(name=name)
        for old, new in (replace or {}).items():
            assert old in text, old
            text = text.replace(old, new)
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="session")
def ray_session():
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if not ray.is_initialized():
        # up to 6 idle workers are kept (default: one per CPU) instead of ended: a worker
        # that built artifacts has torch and coretune imported (seconds of CPU each) and
        # builds the next test's at once. Only this session's: in test_cluster's cluster, one
        # node's death was then reported twice to Tune, failing a trial beyond its retries.
        ray.init(address="local", num_cpus=2, namespace="coretune", include_dashboard=False,
                 log_to_driver=False, logging_level="ERROR",
                 _system_config={"num_workers_soft_limit": 6})
    yield ray
    ray.shutdown()
