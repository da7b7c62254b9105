"""Export per-example scores: ``coretune scores export DIR --dataset … --score …``.

Builds (or reuses from the cache) the training-dynamics artifact of a recipe on a dataset,
without Ray, and writes one file per score with columns ``index``, ``score`` and ``raw``.
``score`` is oriented so that **higher = keep** under the hardest-first convention (it
is the difficulty: higher = harder); ``raw`` is the score as computed. Parquet files carry
this in their schema metadata, CSV files in a ``.json`` beside them. Such a file is the
``score_file`` input of any sampler (``topk``, ``double_end``, ``ccs``, ``d2``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from coretune.artifacts.dynamics import SCORE_NAMES, outputs_of
from coretune.artifacts.graph import build, node_for
from coretune.artifacts.store import ArtifactStore
from coretune.errors import UsageError
from coretune.selectors.base import oriented_difficulty
from coretune.selectors.cld import cld_scores
from coretune.selectors.dual import dual_scores, forward_fill
from coretune.spec import DataSpec, DynamicsSpec, TrialSpec
from coretune.train.data import dataset_info, load_dataset

EXPORTABLE = (*SCORE_NAMES, "dual", "cld")


def _difficulty(art, score: str) -> tuple[np.ndarray, np.ndarray]:
    """(difficulty, raw) of a score of the dynamics artifact ``art``."""
    if score == "dual":
        raw = dual_scores(outputs_of(art).p_true, 10)
        return raw, raw
    if score == "cld":
        out = outputs_of(art)
        if out.val_loss is None:
            raise UsageError("score 'cld' needs a validation split: pass a dataset with "
                             "val_fraction > 0 (e.g. through --spec)")
        raw = cld_scores(-np.log(np.clip(forward_fill(out.p_true), 1e-12, 1)), out.val_loss)
        return raw, raw
    raw = art.array(score).astype(np.float64)
    return oriented_difficulty(score, raw), raw


def export_scores(out_dir: str | Path, dataset: DataSpec, recipe: DynamicsSpec,
                  scores: list[str], cache: str, data_root: str | None = None,
                  fmt: str = "parquet") -> list[Path]:
    """Build the dynamics of ``recipe`` on ``dataset`` (cached) and write each score."""
    unknown = sorted(set(scores) - set(EXPORTABLE))
    if unknown:
        raise UsageError(f"--score {unknown}: unknown; exportable: {', '.join(EXPORTABLE)}")
    if fmt not in ("parquet", "csv"):
        raise UsageError(f"--format must be parquet or csv, got {fmt!r}")
    ds = load_dataset(dataset, data_root)
    if recipe.augment is None:
        recipe = recipe.model_copy(update={"augment": dataset_info(dataset.name).augment_for(
            dataset)})
    trial = TrialSpec(sweep="scores-export", dataset=dataset, arch=recipe.arch,
                      selector="topk", ratio=1.0, dynamics=recipe)
    node = node_for("dynamics", trial, ds.fingerprint)
    store = ArtifactStore(cache)
    for n in node.walk():
        build(n, store, ds)
    art = store.load(node.key)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for score in scores:
        difficulty, raw = _difficulty(art, score)
        meta = {"higher": "keep", "score": score, "orientation":
                "score = difficulty (higher = harder = kept first); raw = as computed",
                "dataset": dataset.name, "data_fingerprint": ds.fingerprint,
                "dynamics_key": node.key, "num_samples": int(raw.size)}
        path = out / f"scores_{dataset.name}_{score}.{fmt}"
        _write(path, difficulty, raw, meta, fmt)
        written.append(path)
    return written


def _write(path: Path, score: np.ndarray, raw: np.ndarray, meta: dict, fmt: str) -> None:
    import pyarrow as pa

    table = pa.table({"index": np.arange(score.size, dtype=np.int64), "score": score,
                      "raw": raw})
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = table.replace_schema_metadata({"coretune": json.dumps(meta)})
        pq.write_table(table, path)
    else:
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)
        path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
