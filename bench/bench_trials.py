"""Benchmark: where a sweep's time goes, as ratios measured in one run.

1. Tune's per-trial cost with ``reuse_actors=True`` vs ``False`` (20 trivial trials each).
2. Ray overhead on real work: the demo's trial bodies run as plain function calls
   (serially, no Ray) vs the same trials through Tune on the same machine.

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


def demo_trials_plain(n: int) -> tuple[float, int]:
    """Run ``n`` demo trials (hard labels) as plain calls; returns (seconds, n)."""
    import torch

    from coretune.cli import DEMO_SPEC
    from coretune.harness.data import load_dataset, to_device
    from coretune.harness.trial import train_trial
    from coretune.search_spaces.schema import expand, load_spec
    from coretune.selectors import SelectionContext, budget_for, select

    torch.set_num_threads(1)
    trials = [t for t in expand(load_spec(DEMO_SPEC)) if t["selector"] == "random"
              and t["label_mode"] == "hard"][:n]
    ds = load_dataset("digits")
    data = to_device(ds)
    started = time.perf_counter()
    for t in trials:
        ctx = SelectionContext(len(ds.train_y), 10, t["seed"])
        sel = select("random", ctx, budget_for(len(ds.train_y), t["ratio"]))
        train_trial(t, data, sel.indices)
    return time.perf_counter() - started, len(trials)


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

    plain, n = demo_trials_plain(12)
    with tempfile.TemporaryDirectory() as tmp:
        from coretune.harness.runner import run_sweep

        spec = Path(tmp) / "bench.yaml"
        from coretune.cli import DEMO_SPEC

        text = DEMO_SPEC.read_text().replace("name: demo", "name: bench")
        spec.write_text(text)
        summary = run_sweep(spec, Path(tmp) / "out", cache_dir=Path(tmp) / "cache")
    per_plain = plain / n
    per_tune = summary.tune_seconds * summary.concurrency / summary.trials_run
    lines += [
        f"- demo trial body as a plain call (1 thread, no Ray): {per_plain:.3f} s/trial "
        f"({n} trials)",
        f"- demo through Tune ({summary.trials_run} trials, {summary.concurrency} concurrent): "
        f"{summary.tune_seconds:.1f} s → {per_tune:.3f} core-s/trial; "
        f"ratio Tune/plain {per_tune / per_plain:.2f}×",
        f"- share of Tune wall time outside trial bodies: {summary.ray_overhead_share:.1%}",
        f"- artifacts (teacher + dynamics, trained once): {summary.artifact_seconds:.1f} s; "
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
