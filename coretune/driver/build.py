"""Build a plan's missing artifacts on Ray, dependencies first, with a live view.

Each kind declares its executor (``register_artifact(executor=...)``); no kind is named
here. ``"task"`` kinds are one Ray task per node (independent nodes in parallel, each
with the sweep's per-trial CPU and, for ``gpu=True`` kinds, GPU share); ``"batch"`` kinds
(coresets: many, most cheap) are packed in chunks, one Ray task each — enough chunks to
fill the cluster's task slots :data:`CHUNKS_PER_SLOT` times over, at most
:data:`MAX_CHUNKS`, each a run of the nodes in dependency order committed with one flush
(:func:`~coretune.artifacts.graph.build_batch`); a chunk's task waits on the tasks
building what its nodes depend on. A ``"tune"`` kind (ELFS's β search) has all its
missing nodes run together by its declared Tune executor, once what they depend on is
built, and the nodes that depend on them are built after. Each node is built exactly once
even with other drivers on the same store (the store's lock): a task that finds it
committed returns at once. The view advances by each finished task's nodes, polled once a
second over at most a few hundred chunk results.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter

import ray
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from coretune.artifacts.graph import Node, get_kind, tune_executor_of
from coretune.driver.plan import Plan
from coretune.driver.worker import build_nodes


def tune_storage(plan: Plan) -> str:
    """Where Tune keeps its own state: under the output if local, else a local temp dir."""
    loc = plan.results.location
    return loc.path("tune") if loc.is_local else os.path.join(tempfile.gettempdir(),
                                                              "coretune-tune")


def by_tune(node: Node) -> bool:
    """Whether ``node``'s kind is built by a Tune experiment rather than a Ray task."""
    return get_kind(node.kind).executor == "tune"


def build_artifacts(plan: Plan, console: Console | None = None,
                    quiet: bool = True) -> tuple[float, int]:
    """Build every missing node, dependencies first, independent ones in parallel; each
    exactly once (the store's lock) even with other drivers at work. In rounds: the task
    nodes that wait on no missing Tune-built node, as Ray tasks; then the Tune-built nodes
    whose dependencies are all built, by their kind's executor (one experiment per kind);
    again until nothing is missing. Returns (seconds, nodes actually built)."""
    started = time.perf_counter()
    remaining = list(plan.missing)  # dependencies first
    # each dataset goes to the object store once for every round of tasks
    data_refs = ({ds.fingerprint: ray.put(ds) for ds in plan.datasets.values()}
                 if any(not by_tune(n) for n in remaining) else {})
    built = 0
    with _ArtifactView(len(remaining), console, quiet) as view:
        while remaining:
            waiting = {n.key for n in remaining if by_tune(n)}
            tasks = [n for n in remaining if n.key not in waiting
                     and not any(d.key in waiting for d in n.walk()[:-1])]
            built += _build_tasks(plan, tasks, data_refs, view)
            done = {n.key for n in tasks}
            left = {n.key for n in remaining} - done
            tuned = [n for n in remaining if n.key in waiting
                     and not any(d.key in left for d in n.walk()[:-1])]
            built += _build_tuned(plan, tuned, view)
            done |= {n.key for n in tuned}
            if not done:
                raise RuntimeError("artifact graph: no missing node can be built "
                                   f"({', '.join(sorted({n.kind for n in remaining}))})")
            remaining = [n for n in remaining if n.key not in done]
    return time.perf_counter() - started, built


def _build_tuned(plan: Plan, nodes: list[Node], view: _ArtifactView) -> int:
    """Build ``nodes`` (their dependencies built) with their kinds' Tune executors, one
    experiment per kind; the number of nodes so built."""
    for kind in sorted({n.kind for n in nodes}):
        mine = [n for n in nodes if n.kind == kind]
        view.running(Counter({kind: len(mine)}))
        tune_executor_of(get_kind(kind))(mine, plan.datasets, plan.store, plan.spec.resources,
                                         list(plan.spec.plugins), tune_storage(plan))
        plan.cached |= {n.key for n in mine}
        view.done(len(mine))
    return len(nodes)


#: a batch kind's nodes go in about this many chunks per task slot of the cluster (the
#: slack lets chunks of unequal cost even out), at most MAX_CHUNKS chunks per round
CHUNKS_PER_SLOT, MAX_CHUNKS = 4, 256


def build_units(nodes: list[Node], slots: int) -> list[list[Node]]:
    """``nodes`` (dependencies first) as the Ray tasks that build them, each unit's
    dependencies in earlier units: a ``"task"`` kind's node alone; the ``"batch"`` kinds'
    nodes, in dependency order, cut into ``min(n, CHUNKS_PER_SLOT × slots, MAX_CHUNKS)``
    runs of equal size (the last shorter) — a function of the plan and the cluster's size
    only."""
    batched = [n for n in nodes if get_kind(n.kind).executor == "batch"]
    units = [[n] for n in nodes if get_kind(n.kind).executor != "batch"]
    if batched:
        chunks = min(len(batched), CHUNKS_PER_SLOT * max(1, slots), MAX_CHUNKS)
        size = -(-len(batched) // chunks)
        units += [batched[i:i + size] for i in range(0, len(batched), size)]
    order = {n.key: i for i, n in enumerate(nodes)}
    return sorted(units, key=lambda unit: order[unit[-1].key])


def _build_tasks(plan: Plan, nodes: list[Node], data_refs: dict[str, ray.ObjectRef],
                 view: _ArtifactView) -> int:
    """Build ``nodes`` (in dependency order) as Ray tasks (:func:`build_units`), each with
    its datasets' refs (by fingerprint); the number actually built."""
    if not nodes:
        return 0
    res = plan.spec.resources
    slots = int(ray.cluster_resources().get("CPU", 1.0) // res.cpu)
    refs: dict[str, ray.ObjectRef] = {}
    units: dict[ray.ObjectRef, list[Node]] = {}
    for unit in build_units(nodes, slots):
        mine = {n.key for n in unit}
        gpu = res.gpu if any(get_kind(n.kind).gpu for n in unit) else 0.0
        fingerprints = sorted({n.fingerprint for n in unit})
        deps = {refs[d.key].binary(): refs[d.key] for n in unit for _, d in n.deps
                if d.key in refs and d.key not in mine}  # each task once
        ref = build_nodes.options(num_cpus=res.cpu, num_gpus=gpu).remote(
            plan.store.uri, unit, fingerprints, plan.spec.plugins, int(res.cpu),
            *[data_refs[f] for f in fingerprints], *deps.values())
        refs |= dict.fromkeys(mine, ref)
        units[ref] = unit
    kinds = Counter(n.kind for n in nodes)
    pending, results = list(units), []
    while pending:
        view.running(kinds)
        ready, pending = ray.wait(pending, num_returns=len(pending), timeout=1.0)
        for ref in ready:
            results += ray.get(ref)  # raises the failed build's error
            kinds -= Counter(n.kind for n in units[ref])
            view.done(len(units[ref]))
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
