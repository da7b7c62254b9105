"""Pseudo-label quality per encoder and clustering (ELFS Tables 2, 5 and 11, on any data).

Builds (or reuses, from the artifact store) the ``embeddings → knn → pseudo_labels`` chain
of the ELFS pipeline for each encoder × clustering method, as plain function calls without
Ray, and reports the Hungarian-matched accuracy, NMI and ARI the ``pseudo_labels``
artifact records against ground truth (reported only: nothing in coretune chooses on
them), with build times. Its rows go to ``bench/RESULTS.md``.

    python bench/pseudo_labels.py --dataset fashion_mnist \\
        --encoder 'efficientnet_lite0:{size: 64}' --encoder 'pca:{dim: 64}' \\
        --encoder 'simclr:{epochs: 10}' --clustering temi --clustering kmeans \\
        --temi '{heads: 5, hidden: 128, epochs: 30, batch_size: 512, lr: 0.001, momentum: 0.9}'
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
from pathlib import Path

import yaml

from coretune.artifacts.graph import build
from coretune.driver.plan import plan_sweep
from coretune.search_spaces.schema import SweepSpec


def parse_named(text: str) -> tuple[str, dict]:
    """``name`` or ``name:{yaml mapping}``."""
    name, _, args = text.partition(":")
    return name, (yaml.safe_load(args) or {}) if args else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--encoder", action="append", required=True)
    ap.add_argument("--clustering", action="append", default=None)
    ap.add_argument("--temi", default="{}", help="TEMI arguments (YAML mapping)")
    ap.add_argument("--scan", default="{}", help="SCAN arguments (YAML mapping)")
    ap.add_argument("--knn-k", type=int, default=50)
    ap.add_argument("--cache", default=os.environ.get("CORETUNE_CACHE"))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    methods = args.clustering or ["temi", "kmeans"]
    method_args = {"temi": yaml.safe_load(args.temi), "scan": yaml.safe_load(args.scan),
                   "kmeans": {}}
    selectors = []
    for enc in args.encoder:
        name, enc_args = parse_named(enc)
        for method in methods:
            selectors.append({"name": "elfs", "args": {
                "encoder": name, "encoder_args": enc_args, "knn_k": args.knn_k,
                "clustering": method, "clustering_args": method_args[method], "beta": 0.0}})
    spec = SweepSpec.model_validate({
        "name": "pseudo_label_study", "datasets": [args.dataset], "archs": ["mlp"],
        "seeds": [0], "ratios": [0.5], "selectors": selectors,
        "label_modes": [{"mode": "hard"}], "resources": {"cpu": 1, "gpu": 0}})
    with tempfile.TemporaryDirectory() as out:
        plan = plan_sweep(spec, Path(out) / "out", args.cache)
    by_fp = {ds.fingerprint: ds for ds in plan.datasets.values()}
    rows = []
    for node in (n for n in plan.nodes if n.kind == "pseudo_labels"):
        for dep in node.walk():  # embeddings, knn, then the pseudo-labels
            build(dep, plan.store, by_fp[dep.fingerprint])
        deps = dict(node.deps)
        emb = plan.store.load(deps["embeddings"].key)
        art = plan.store.load(node.key)
        m = art.meta["ground_truth_metrics"]
        enc_args = deps["embeddings"].params.get("args") or {}
        dumped = yaml.safe_dump(enc_args, default_flow_style=True).strip()
        label = emb.meta["encoder"] + (f" {dumped}" if enc_args else "")
        rows.append({"encoder": label,
                     "method": art.meta["method"], "dim": int(emb.array("embeddings").shape[1]),
                     "acc": m["acc"], "nmi": m["nmi"], "ari": m["ari"],
                     "cluster_seconds": art.meta.get("seconds"),
                     "embed_seconds": emb.meta.get("seconds")})
        print(rows[-1], flush=True)
    lines = [f"\n## pseudo_labels ({dt.date.today()}, {os.cpu_count()} cores, "
             f"{args.dataset}, k = {args.knn_k})\n",
             "| encoder | clustering | D | ACC | NMI | ARI | embed s | cluster s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        secs = [f"{s:.0f}" if isinstance(s, int | float) else "–"
                for s in (r["embed_seconds"], r["cluster_seconds"])]
        lines.append(f"| {r['encoder']} | {r['method']} | {r['dim']} | {100 * r['acc']:.1f} | "
                     f"{100 * r['nmi']:.1f} | {100 * r['ari']:.1f} | {secs[0]} | {secs[1]} |")
    print("\n".join(lines))
    if not args.no_write:
        path = Path(__file__).with_name("RESULTS.md")
        path.write_text(path.read_text() + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
