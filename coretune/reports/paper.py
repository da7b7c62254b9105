"""The papers' published numbers, packaged with coretune, for comparison with our sweeps.

``paper_tables/`` is a copy of ``shared/paper_tables`` (see its README.md for the tidy long
format); it ships as package data so reports work from an installed package.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import pandas as pd

PAPER_FILES = ("soft_label_coresets.csv", "elfs.csv")
#: short names used to tag published values in reports
PAPER_SHORT = {"soft_label_coresets": "SL", "elfs": "ELFS"}
#: harness label_mode → the papers' label_mode (None: no published counterpart)
LABEL_MODE_TO_PAPER: dict[str, str | None] = {
    "hard": "hard", "soft": "soft_teacher", "smooth": "label_smoothing", "kd": None,
}
PAPER_TO_LABEL_MODE = {v: k for k, v in LABEL_MODE_TO_PAPER.items() if v is not None}
#: selector names whose method is spelled otherwise in the paper tables
PAPER_METHOD = {"graph_cut": "graphcut", "d2_label_free": "d2"}

_TEXT_COLUMNS = ("paper", "table", "dataset", "arch", "method", "encoder", "label_mode",
                 "param_name", "param_value", "metric", "note")
REFERENCE_COLUMNS = ["method", "label_mode", "selection_ratio", "mean", "std", "paper", "table",
                     "encoder", "param_name", "param_value", "note"]


@lru_cache(maxsize=1)
def _load() -> pd.DataFrame:
    root = resources.files("coretune.reports").joinpath("paper_tables")
    frames = []
    for name in PAPER_FILES:
        with resources.as_file(root.joinpath(name)) as path:
            frames.append(pd.read_csv(path, dtype=dict.fromkeys(_TEXT_COLUMNS, "string")))
    return pd.concat(frames, ignore_index=True)


def load_paper_tables() -> pd.DataFrame:
    """Both papers' tables concatenated (a fresh copy; columns as in the README)."""
    return _load().copy()


def paper_reference(dataset: str, arch: str) -> pd.DataFrame:
    """Published test accuracies (%) for ``dataset`` on ``arch``.

    Rows with metric test_accuracy and a selection ratio, including ablation rows (see
    param_name/param_value) and the full_dataset rows (method "full_dataset", ratio 1).
    label_mode is given in harness names (soft_teacher → soft, label_smoothing → smooth);
    it is missing where the paper does not state it.
    """
    t = _load()
    t = t[(t["dataset"] == dataset) & (t["arch"] == arch) & (t["metric"] == "test_accuracy")
          & t["selection_ratio"].notna()]
    out = t.assign(label_mode=t["label_mode"].map(PAPER_TO_LABEL_MODE, na_action="ignore"))
    return out[REFERENCE_COLUMNS].reset_index(drop=True)


def full_dataset_accuracy(dataset: str, arch: str) -> pd.DataFrame:
    """The full-data accuracies the papers state for (dataset, arch): paper, table, mean."""
    ref = paper_reference(dataset, arch)
    return ref[ref["method"] == "full_dataset"][["paper", "table", "mean"]] \
        .reset_index(drop=True)
