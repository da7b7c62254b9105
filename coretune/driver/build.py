"""Build a plan's missing artifacts on Ray, dependencies first, with a live view.

Most kinds are one Ray task per node (independent nodes in parallel, each with the
sweep's per-trial CPU and, for ``gpu=True`` kinds, GPU share); ELFS's β searches are Tune
experiments (:mod:`coretune.driver.beta_search`), and the nodes that depend on them are
built after. Each node is built exactly once even with other drivers on the same store
(the store's lock): a task that finds it committed returns at once.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter

import ray
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from coretune.artifacts.graph import Node, get_kind
from coretune.driver.plan import Plan
from coretune.driver.worker import build_node

#: kinds the driver builds as Tune experiments instead of single Ray tasks
TUNE_KINDS = {"beta_search"}


def tune_storage(plan: Plan) -> str:
    """Where Tune keeps its own state: under the output if local, else a local temp dir."""
    loc = plan.results.location
    return loc.path("tune") if loc.is_local else os.path.join(tempfile.gettempdir(),
                                                              "coretune-tune")


def build_artifacts(plan: Plan, console: Console | None = None,
                    quiet: bool = True) -> tuple[float, int]:
    """Build every missing node, dependencies first, independent ones in parallel; each
    exactly once (the store's lock) even with other drivers at work. Most are Ray tasks;
    ELFS's β searches are Tune experiments, and what depends on them is built after.
    Returns (seconds, nodes actually built)."""
    started = time.perf_counter()
    searches = [n for n in plan.missing if n.kind in TUNE_KINDS]
    search_keys = {n.key for n in searches}
    after = [n for n in plan.missing if n.key not in search_keys
             and any(d.key in search_keys for d in n.walk()[:-1])]
    later = {n.key for n in after}
    first = [n for n in plan.missing if n.key not in search_keys and n.key not in later]
    # each dataset goes to the object store once for both rounds of tasks
    data_refs = ({ds.fingerprint: ray.put(ds) for ds in plan.datasets.values()}
                 if first or after else {})
    with _ArtifactView(len(plan.missing), console, quiet) as view:
        built = _build_tasks(plan, first, data_refs, view)
        if searches:
            from coretune.driver.beta_search import run_beta_searches

            view.running(Counter(n.kind for n in searches))
            run_beta_searches(searches, plan.datasets, plan.store, plan.spec.resources,
                              tune_storage(plan))
            plan.cached |= search_keys
            built += len(searches)
            view.done(len(searches))
        built += _build_tasks(plan, after, data_refs, view)
    return time.perf_counter() - started, built


def _build_tasks(plan: Plan, nodes: list[Node], data_refs: dict[str, ray.ObjectRef],
                 view: _ArtifactView) -> int:
    """Build ``nodes`` (in dependency order) as Ray tasks, each with its dataset's ref (by
    fingerprint); the number actually built."""
    if not nodes:
        return 0
    res = plan.spec.resources
    refs: dict[str, ray.ObjectRef] = {}
    kind_of: dict[ray.ObjectRef, str] = {}
    for node in nodes:
        gpu = res.gpu if get_kind(node.kind).gpu else 0.0
        deps = [refs[d.key] for _, d in node.deps if d.key in refs]
        refs[node.key] = build_node.options(num_cpus=res.cpu, num_gpus=gpu).remote(
            plan.store.uri, node, data_refs[node.fingerprint], plan.spec.plugins,
            int(res.cpu), *deps)
        kind_of[refs[node.key]] = node.kind
    pending, results = list(refs.values()), []
    while pending:
        view.running(Counter(kind_of[r] for r in pending))
        ready, pending = ray.wait(pending, num_returns=len(pending), timeout=1.0)
        results += ray.get(ready)  # raises the first failed build's error
        view.done(len(ready))
    for key, _, _ in results:
        plan.cached.add(key)
    return sum(1 for _, built, _ in results if built)


class _ArtifactView:
    """A progress line for the artifact stage: nodes done of those missing, kinds pending."""

    def __init__(self, total: int, console: Console | None, quiet: bool):
        self.progress = Progress(TextColumn("[bold]artifacts"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[what]}"),
                                 TimeElapsedColumn(), console=console or Console(),
                                 transient=False, disable=quiet or total == 0)
        self.task = self.progress.add_task("artifacts", total=total, what="")

    def __enter__(self) -> _ArtifactView:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.update(self.task, what="")
        self.progress.stop()

    def running(self, kinds: Counter) -> None:
        what = ", ".join(f"{k} ×{c}" if c > 1 else k for k, c in sorted(kinds.items()))
        self.progress.update(self.task, what=f"pending: {what}" if what else "")

    def done(self, count: int) -> None:
        self.progress.advance(self.task, count)
