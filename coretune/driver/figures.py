"""Report figures that need the artifact store (the driver's side of the report)."""

from __future__ import annotations

from coretune.reports.leaderboard import ratio_label
from coretune.reports.plots import difficulty
from coretune.reports.report import read_runs


def difficulty_figure(dirs: list[str], cache: str) -> dict[str, bytes]:
    """A coreset's difficulty (the proxy run's AUM) against the full data's: the smallest
    coreset of the first supervised score-based selector the store still holds."""
    from coretune.artifacts.store import ArtifactStore

    store = ArtifactStore(cache)
    trials, _ = read_runs(dirs)
    rows = trials[trials["selection_key"].notna()].sort_values("ratio")
    for key, sel, ratio in rows[["selection_key", "selector", "ratio"]].drop_duplicates(
            "selection_key").itertuples(index=False):
        if not store.exists(key):
            continue
        art = store.load(key)
        scores_key = art.meta.get("deps", {}).get("scores")
        if scores_key is None or not store.exists(scores_key):
            continue
        aum = store.load(scores_key).array("aum")
        label = f"{sel} at {ratio_label(ratio)}"
        return {"difficulty": difficulty(aum, aum[art.array("indices")], "AUM", label)}
    return {}
