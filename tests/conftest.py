"""Shared fixtures: one Ray session for the whole test run (ray.init costs seconds)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Keep every Ray process of the tests on the loopback address (Ray otherwise binds to the
# machine's network address): with this, Ray's node IP is 127.0.0.1 on Linux too.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

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
        ray.init(address="local", num_cpus=2, namespace="coretune", include_dashboard=False,
                 log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()
