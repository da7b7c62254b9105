"""Benchmark: the demo's Tune wall time against a reference commit, alternating runs.

Runs ``coretune sweep demo`` from a git worktree of ``--ref`` and from this checkout,
alternately, ``--rounds`` times each with warm artifact caches (so only the Tune phase
differs), and reports the ratio of median Tune seconds and each side's Ray overhead share.

Run: ``python bench/bench_demo_vs_ref.py --ref fbe3c3e``. Results go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(code_root: Path, work: Path) -> dict:
    out = work / "demo"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    subprocess.run([sys.executable, "-m", "coretune.cli", "sweep", "demo", "--out",
                    str(out), "--cache", str(work / "cache"), "--no-report"],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((out / "sweep_summary.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", required=True, help="reference commit")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ref_tree = tmp / "ref"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-f", "--detach",
                        str(ref_tree), args.ref], check=True, capture_output=True)
        try:
            sides = {"ref": (ref_tree, tmp / "w_ref"), "this": (REPO, tmp / "w_this")}
            for root, work in sides.values():  # warm-up: build the artifact caches
                run(root, work)
            seen: dict[str, list[dict]] = {"ref": [], "this": []}
            for _ in range(args.rounds):
                for name, (root, work) in sides.items():
                    seen[name].append(run(root, work))
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                            str(ref_tree)], capture_output=True)
    med = {k: statistics.median(s["tune_seconds"] for s in v) for k, v in seen.items()}
    share = {k: statistics.median(s["ray_overhead_share"] for s in v) for k, v in seen.items()}
    text = "\n".join([
        f"## bench_demo_vs_ref ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"ref {args.ref}, {args.rounds} alternating rounds, warm caches)", "",
        f"- demo Tune wall time, median: ref {med['ref']:.2f} s, this {med['this']:.2f} s "
        f"→ ratio this/ref {med['this'] / med['ref']:.3f}",
        f"- runs: ref {[round(s['tune_seconds'], 2) for s in seen['ref']]}, "
        f"this {[round(s['tune_seconds'], 2) for s in seen['this']]}",
        f"- Ray overhead share (median): ref {share['ref']:.1%}, this {share['this']:.1%}", ""])
    print(text)
    results = Path(__file__).with_name("RESULTS.md")
    results.write_text(results.read_text() + "\n" + text + "\n")


if __name__ == "__main__":
    main()
