"""Benchmark: the share of a sweep's wall time spent outside trial bodies.

200 real coretune students (digits, MLP, random coresets, hard labels) whose bodies take
about a second each, on this machine's cores, run three ways in one Ray session:
one student per Tune trial with actor reuse, the same without actor reuse, and four
students per Tune trial (``students_per_trial: 4``: short trials batched into one actor
call). The share is 1 − Σ body seconds / (concurrent slots × Tune wall time).

Run: ``python bench/overhead.py`` (about 8 minutes on 2 cores). Results go to
bench/RESULTS.md.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import ray

from coretune.driver.plan import plan_sweep
from coretune.driver.run import run_plan
from coretune.search_spaces.schema import parse_spec

N_TRIALS = 200


def spec(name: str, per_trial: int) -> dict:
    return {"name": name, "datasets": "digits", "archs": "mlp", "seeds": list(range(50)),
            "ratios": [0.1, 0.2], "selectors": [{"name": "random"}],
            "label_modes": [{"mode": "hard"}, {"mode": "smooth", "eps": 0.1}],
            "budget": {"unit": "iterations", "value": 850, "max_reports": 2},
            "optimizer": {"lr": 0.05, "batch_size": 32}, "students_per_trial": per_trial}


def run(root: Path, name: str, per_trial: int, reuse: bool) -> dict:
    plan = plan_sweep(parse_spec(spec(name, per_trial)), root / name, root / "cache")
    assert len(plan.trials) == N_TRIALS
    summary = run_plan(plan, quiet=True, reuse_actors=reuse)
    return {"name": name, "tune_s": summary.tune_seconds, "share": summary.ray_overhead_share,
            "body_per_student": summary.trial_body_seconds / N_TRIALS,
            "tune_trials": summary.tune_trials}


def main() -> None:
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(address="local", include_dashboard=False, log_to_driver=False,
             logging_level="ERROR", namespace="coretune")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run(root, "warmup", 4, True)  # builds the coresets, starts workers
        rows = [run(root, "reuse", 1, True), run(root, "no_reuse", 1, False),
                run(root, "reuse_4_per_trial", 4, True)]
    ray.shutdown()
    lines = [f"## overhead ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
             f"{N_TRIALS} students of ~1 s)", "",
             "| setting | Tune trials | Tune wall (s) | body per student (s) | "
             "share outside bodies |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['name']} | {r['tune_trials']} | {r['tune_s']:.1f} | "
              f"{r['body_per_student']:.2f} | {r['share']:.1%} |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    results = Path(__file__).with_name("RESULTS.md")
    results.write_text(results.read_text() + "\n" + text)


if __name__ == "__main__":
    main()
