"""Where a report's numbers come from: runs, sweeps, commits, library versions, devices."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


def _values(trials: pd.DataFrame, column: str) -> list[str]:
    if column not in trials:
        return []
    return sorted(str(v) for v in trials[column].dropna().unique())


@dataclass(frozen=True)
class Provenance:
    runs: list[str]
    sweeps: list[str]
    commits: list[str]
    coretune: list[str]
    torch: list[str]
    ray: list[str]
    devices: list[str]
    first: str | None
    last: str | None
    trials: int

    @classmethod
    def of(cls, trials: pd.DataFrame, runs: list[str]) -> Provenance:
        started = trials["started_at"].dropna() if "started_at" in trials else pd.Series([])
        finished = trials["finished_at"].dropna() if "finished_at" in trials else started
        return cls(runs, _values(trials, "sweep"), _values(trials, "git_sha") or ["unknown"],
                   _values(trials, "coretune_version"), _values(trials, "torch_version"),
                   _values(trials, "ray_version"), _values(trials, "device"),
                   str(started.min()) if len(started) else None,
                   str(finished.max()) if len(finished) else None, len(trials))

    def items(self) -> list[tuple[str, str]]:
        return [("runs", ", ".join(self.runs)), ("sweeps", ", ".join(self.sweeps)),
                ("trials", str(self.trials)), ("commits", ", ".join(self.commits)),
                ("coretune", ", ".join(self.coretune)), ("torch", ", ".join(self.torch)),
                ("ray", ", ".join(self.ray)), ("devices", ", ".join(self.devices)),
                ("trained", f"{self.first} – {self.last}")]

    def markdown(self) -> list[str]:
        return [f"- {k}: {v}" for k, v in self.items()]
