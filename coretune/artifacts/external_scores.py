"""External per-sample scores: a file of (index, score), "higher = keep", as any sampler's input.

Published per-example scores (e.g. for ImageNet) are shared as files; ``score_file: PATH``
in a sampler's arguments (``topk``, ``double_end``, ``ccs``, ``d2``) reads one. The file's
content enters the keys (its SHA-256), its path does not, so moving it keeps every cached
coreset. Formats: Parquet or CSV with columns ``index`` and ``score``, or a ``.npy`` array
of N scores. Every training index must appear exactly once with a finite score; the file
is read and checked when the sweep is planned, before Ray starts.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from coretune.artifacts.graph import BuildContext, Node, register_artifact
from coretune.artifacts.store import Built
from coretune.errors import DataError, DataMissingError
from coretune.spec import TrialSpec
from coretune.train.data import ImageDataset

FORMATS = (".parquet", ".csv", ".npy")
_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | Path, what: str = "score_file") -> str:
    """SHA-256 of a local file's bytes (cached by path, size and modification time); a
    missing file is an error naming ``what`` and the path."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise DataMissingError(f"{what} {str(path)!r} not found") from None
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def score_file_digest(path: str | Path) -> str:
    if Path(path).suffix not in FORMATS:
        raise DataError(f"score_file {str(path)!r}: format must be one of {FORMATS}")
    return file_digest(path)


def read_score_file(path: str | Path, num_samples: int) -> np.ndarray:
    """The scores of a file as a float64 array indexed by training index, checked."""
    p = Path(path)
    if p.suffix == ".npy":
        scores = np.asarray(np.load(p, allow_pickle=False), dtype=np.float64).ravel()
        index = np.arange(scores.size)
    else:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        table = pq.read_table(p) if p.suffix == ".parquet" else pacsv.read_csv(p)
        missing = {"index", "score"} - set(table.column_names)
        if missing:
            raise DataError(f"score_file {str(p)!r} lacks column(s) {sorted(missing)} "
                             f"(has {table.column_names})")
        index = np.asarray(table.column("index").to_numpy(), dtype=np.int64)
        scores = np.asarray(table.column("score").to_numpy(), dtype=np.float64)
    where = f"score_file {str(p)!r}"
    if index.size != num_samples or np.unique(index).size != index.size:
        raise DataError(f"{where} has {index.size} rows ({np.unique(index).size} distinct "
                         f"indices); the training split has {num_samples} samples")
    if index.min() < 0 or index.max() >= num_samples:
        raise DataError(f"{where} has indices outside [0, {num_samples})")
    if not np.isfinite(scores).all():
        raise DataError(f"{where} has {int((~np.isfinite(scores)).sum())} non-finite scores")
    out = np.empty(num_samples)
    out[index] = scores
    return out


def score_file_of(trial: TrialSpec) -> str | None:
    return trial.selector_args.get("score_file")


def external_params(trial: TrialSpec) -> Mapping[str, Any] | None:
    path = score_file_of(trial)
    return None if path is None else {"sha256": score_file_digest(path)}


def external_local(trial: TrialSpec) -> Mapping[str, Any]:
    path = score_file_of(trial)
    return {} if path is None else {"path": os.path.abspath(path)}


def check_score_file(node: Node, dataset: ImageDataset) -> None:
    """The whole file is read and checked against the dataset when the sweep is planned."""
    read_score_file(node.local["path"], len(dataset.train_y))


@register_artifact("external_scores", version=1, params=external_params, local=external_local,
                   provides={"external_scores": lambda art: art.array("scores")},
                   check=check_score_file)
def build_external_scores(ctx: BuildContext) -> Built:
    """Read and check the score file; its bytes must still hash to the planned key."""
    path = ctx.local["path"]
    if file_digest(path) != ctx.params["sha256"]:
        raise DataError(f"score_file {path!r} changed since the sweep was planned")
    scores = read_score_file(path, len(ctx.dataset.train_y))
    return Built({"scores": scores}, {"sha256": ctx.params["sha256"], "n": int(scores.size)})
