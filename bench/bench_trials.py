"""Benchmark: where a sweep's time goes, as ratios measured in one run.

1. Tune's per-trial cost with ``reuse_actors=True`` vs ``False`` (20 trivial trials each).
2. Ray overhead on real work: in the demo sweep, time inside trial bodies vs the
   trial slots Tune held (concurrency × Tune wall time).

Run: ``make bench`` (or ``python bench/bench_trials.py``). Results go to bench/RESULTS.md.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

import ray
from ray import tune

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
N_TRIVIAL = 20


def trivial(config: dict) -> None:
    tune.report({"x": config["i"]})


def tune_seconds(reuse: bool, storage: str) -> float:
    tuner = tune.Tuner(
        trivial, param_space={"i": tune.grid_search(list(range(N_TRIVIAL)))},
        tune_config=tune.TuneConfig(reuse_actors=reuse),
        run_config=tune.RunConfig(storage_path=storage, name=f"reuse_{reuse}", verbose=0))
    started = time.perf_counter()
    tuner.fit()
    return time.perf_counter() - started


def main() -> None:
    lines = [f"## bench_trials ({time.strftime('%Y-%m-%d')}, {platform.processor() or 'cpu'}, "
             f"{os.cpu_count()} cores)", ""]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    with tempfile.TemporaryDirectory() as tmp:
        tune_seconds(True, tmp)  # warm-up: worker start, imports
        reuse = tune_seconds(True, tmp)
        fresh = tune_seconds(False, tmp)
    lines += [f"- {N_TRIVIAL} trivial trials: reuse_actors=True {reuse:.2f} s, False {fresh:.2f} s"
              f" → per-trial cost ratio {fresh / reuse:.1f}×", ""]
    ray.shutdown()

    with tempfile.TemporaryDirectory() as tmp:
        from coretune.driver.run import run_sweep
        from coretune.search_spaces import DEMO_SPEC

        spec = Path(tmp) / "bench.yaml"

        text = DEMO_SPEC.read_text().replace("name: demo", "name: bench")
        spec.write_text(text)
        summary = run_sweep(spec, Path(tmp) / "out", cache=Path(tmp) / "cache")
    slots = summary.tune_seconds * summary.concurrency
    per_body = summary.trial_body_seconds / summary.trials_run
    per_overhead = (slots - summary.trial_body_seconds) / summary.trials_run
    lines += [
        f"- demo through Tune ({summary.trials_run} trials, {summary.concurrency} concurrent): "
        f"{summary.tune_seconds:.1f} s; trial body {per_body:.3f} s/trial, Tune's cost outside "
        f"bodies {per_overhead:.3f} slot-s/trial (ratio {per_overhead / per_body:.2f})",
        f"- share of Tune wall time outside trial bodies: {summary.ray_overhead_share:.1%}",
        f"- artifacts ({summary.artifacts_built} built once, as Ray tasks): "
        f"{summary.artifact_seconds:.1f} s; "
        f"whole sweep {summary.wall_seconds:.1f} s", "",
    ]
    text = "\n".join(lines)
    print(text)
    results = Path(__file__).with_name("RESULTS.md")
    header = "# Benchmark results\n\nEach entry is one run of the named script; ratios are " \
             "taken within that run.\n\n"
    old = results.read_text() if results.exists() else header
    results.write_text(old + text + "\n")


if __name__ == "__main__":
    main()
