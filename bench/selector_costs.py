"""Time every registered selector at CIFAR scale (N = 50,000, D = 512, 10 classes) and
ImageNet scale (N = 1,281,167, D = 128, 1,000 classes) on synthetic inputs, at ratio 0.1.

Each (selector, size) runs in a fresh process, so its peak memory is its own: the peak
traced by tracemalloc during ``select`` (numpy's allocations; faiss's are not traced)
and the process's maximum resident set size (inputs included). Selectors whose cost is
O(N·budget·D) (k-center, herding) and the per-class ones run class-balanced at ImageNet
scale, as DeepCore does there.

    python bench/selector_costs.py                # both sizes, every selector, writes RESULTS.md
    python bench/selector_costs.py --sizes 50000 --only kcenter,facility_location
"""

from __future__ import annotations

import os
import sys

# this file is named like the standard library's ``selectors`` (which subprocess imports):
# run as a script, its own directory must not come first on the path
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

SIZES = {50_000: (512, 10), 1_281_167: (128, 1000)}
RATIO = 0.1
#: selectors that are O(N·budget·D) or dense per class: class-balanced at ImageNet scale
BALANCED_AT_SCALE = {"kcenter", "herding"}


def synthetic_context(n: int, d: int, k: int, needs: frozenset[str], seed: int = 0):
    """What ``needs`` asks for, synthetic: clustered features (a mean per class), random
    scores and outputs, gradient errors softmax(random logits) − onehot. Selectors that
    build a kNN graph on the features (d2, sparse kernels) are timed with it; the
    label-free ones read the knn artifact, built here untimed (k = 10)."""
    from coretune.selectors import SelectionContext
    from coretune.selectors.proxies import GradEmbedding, TrainingOutputs

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    art: dict = {"labels": labels}
    if needs & {"features", "grad_embed"}:
        centres = rng.normal(size=(k, d)).astype(np.float32)
        art["features"] = centres[labels] + rng.standard_normal((n, d), dtype=np.float32)
    if "grad_embed" in needs:
        errors = rng.standard_normal((n, k), dtype=np.float32) * 2
        errors -= errors.max(axis=1, keepdims=True)
        np.exp(errors, out=errors)
        errors /= errors.sum(axis=1, keepdims=True)
        errors[np.arange(n), labels] -= 1.0  # p − onehot(y)
        art["grad_embed"] = GradEmbedding(errors, art["features"])
    if "outputs" in needs:
        epochs = 20
        p_true = np.clip(np.linspace(0.1, 0.9, epochs, dtype=np.float32)[None, :, None]
                         + 0.1 * rng.standard_normal((1, epochs, n), dtype=np.float32), 0, 1)
        art["outputs"] = TrainingOutputs(p_true.astype(np.float16),
                                         rng.integers(0, k, (1, epochs, n)).astype(np.int16),
                                         np.linspace(2.0, 0.5, epochs)[None])
    if "scores" in needs:
        art["scores"] = {name: rng.random(n) for name in ("aum", "el2n", "grand", "entropy",
                                                          "margin", "least_confidence")}
        art["scores"]["forgetting"] = rng.integers(0, 10, n).astype(np.float64)
    if needs & {"embeddings", "knn"}:
        centres = rng.normal(size=(k, d)).astype(np.float32)
        art["embeddings"] = centres[labels] + rng.standard_normal((n, d), dtype=np.float32)
    if "knn" in needs:  # the knn artifact's work, outside the selector's timing
        from coretune.selectors.neighbors import knn_graph

        art["knn"] = knn_graph(art["embeddings"], 10, "cosine")
    if "pseudo_scores" in needs:  # ELFS: pseudo-label dynamics and a β* (0.1)
        art["pseudo_scores"] = {name: rng.random(n) for name in ("aum", "forgetting", "el2n")}
        art["beta_search"] = 0.1
    if "external_scores" in needs:
        art["external_scores"] = rng.random(n)
    if "gradient_neighbours" in needs:  # NFG: counts of 10 checkpoints (their cost is the
        # artifact's, timed by bench/nfg_factorised.py); the selector ranks and keeps
        from coretune.selectors.gradient_neighbours import NeighbourCounts

        art["gradient_neighbours"] = NeighbourCounts(
            rng.integers(0, n // k, (10, n)).astype(np.int32), labels, 0.2)
    if "checkpoint_scores" in needs:  # CAD-Prune: p_y and EL2N at R = 8 points
        from coretune.selectors.compute_aware import CheckpointScores

        p_true = rng.random((8, n), dtype=np.float32)
        art["checkpoint_scores"] = CheckpointScores(p_true, 1 - p_true, np.arange(1, 9) * n)
    if "offset_search" in needs:  # EL2N-Best: the searched offset
        art["offset_search"] = 0.1
    return SelectionContext.from_needs(n, k, seed, art)


def run_one(name: str, n: int) -> dict:
    from coretune.selectors import budget_for, get_selector, select

    d, k = SIZES[n]
    args = {"class_balanced": True} if n > 100_000 and name in BALANCED_AT_SCALE else {}
    budget = budget_for(n, RATIO)
    needs = get_selector(name).needs(args)
    ctx = synthetic_context(n, d, k, needs)
    tracemalloc.start()
    started = time.perf_counter()
    sel = select(name, ctx, budget, **args)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert sel.indices.size == budget
    return {"selector": name, "n": n, "d": d, "classes": k, "budget": budget,
            "class_balanced": get_selector(name).class_balanced(args),
            "needs": sorted(needs), "seconds": seconds, "peak_traced_mb": peak / 2**20,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--only", default="")
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--one", nargs=2, metavar=("NAME", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]))))
        return
    from coretune.selectors import available_selectors

    names = args.only.split(",") if args.only else available_selectors()
    rows = []
    for n in map(int, args.sizes.split(",")):
        for name in names:
            try:
                out = subprocess.run([sys.executable, __file__, "--one", name, str(n)],
                                     capture_output=True, text=True, timeout=args.timeout,
                                     env={**os.environ, "OMP_NUM_THREADS": "2"})
                row = (json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0
                       else {"selector": name, "n": n,
                             "error": out.stderr.strip().splitlines()[-1][:120]})
            except subprocess.TimeoutExpired:
                row = {"selector": name, "n": n, "error": f"> {args.timeout:.0f} s"}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if not args.no_write:
        write(rows)


def write(rows: list[dict]) -> None:
    lines = [f"\n## selectors ({dt.date.today()}, {os.cpu_count()} cores, ratio {RATIO}, "
             "synthetic inputs, one process per run)\n",
             "| selector | N | D | classes | budget | class-balanced | seconds | "
             "peak traced MB | max RSS MB |", "|---|---:|---:|---:|---:|:-:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['selector']} | {r['n']:,} | | | | | {r['error']} | | |")
            continue
        lines.append(f"| {r['selector']} | {r['n']:,} | {r['d']} | {r['classes']} | "
                     f"{r['budget']:,} | {'yes' if r['class_balanced'] else 'no'} | "
                     f"{r['seconds']:.2f} | {r['peak_traced_mb']:.0f} | {r['max_rss_mb']:.0f} |")
    path = Path(__file__).with_name("RESULTS.md")
    path.write_text(path.read_text() + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
