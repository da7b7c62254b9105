"""The planner: spec → students to run, grouped into Tune trials, and their artifact DAG.

Pure: no Ray, nothing written. Everything that can fail on bad input — the spec, the
datasets, earlier results, a corrupt cache, storage a cluster cannot share — fails here,
before Ray starts. ``coretune sweep --dry-run`` prints :func:`describe` of the plan.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from coretune.artifacts.graph import Node, get_kind, need_nodes, node_for, provider_of
from coretune.artifacts.store import ArtifactStore
from coretune.driver.teachers import plan_teachers
from coretune.errors import PathError, SpecError
from coretune.reports.results import ResultsStore
from coretune.search_spaces.schema import SweepSpec, expand, load_spec
from coretune.selectors import budget_for, get_selector
from coretune.spec import DataSpec, TrialSpec, canonical_json
from coretune.storage import Location
from coretune.train.data import DatasetMissingError, ImageDataset, dataset_info, load_dataset
from coretune.train.labels import get_label_source
from coretune.train.loop import images_seen, plan_steps

CACHE_ENV = "CORETUNE_CACHE"



def default_cache_dir() -> str:
    return os.environ.get(CACHE_ENV, str(Path.home() / ".cache" / "coretune"))


def data_key(spec: DataSpec) -> str:
    """Identity of a dataset spec within a sweep (name + split options)."""
    return canonical_json(spec)


@dataclass(frozen=True)
class PlannedTrial:
    """One student: its spec, id, dataset, coreset node and label-source nodes."""

    spec: TrialSpec
    trial_id: str
    data_key: str
    fingerprint: str
    selection: Node
    label_nodes: dict[str, Node]

    @property
    def teacher_key(self) -> str | None:
        node = self.label_nodes.get("teacher")
        return None if node is None else node.key

    def payload(self) -> dict:
        """What a Tune trial needs to train this student (plain, picklable)."""
        return {"trial": self.spec.model_dump(mode="json"), "trial_id": self.trial_id,
                "data_key": self.data_key, "selection_key": self.selection.key,
                "label_keys": {n: node.key for n, node in self.label_nodes.items()}}


@dataclass
class Plan:
    """A validated sweep: students to run (grouped), datasets, and the artifact DAG."""

    spec: SweepSpec
    results: ResultsStore
    store: ArtifactStore
    datasets: dict[str, ImageDataset]
    trials: list[PlannedTrial]
    skipped: int
    groups: list[list[PlannedTrial]] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)  # dependencies first
    cached: set[str] = field(default_factory=set)
    allow_node_local: bool = False  # cluster storage check waived (every node mounts it)
    notes: list[str] = field(default_factory=list)  # what a dry run let pass
    chosen_beta: dict[str, float] = field(default_factory=dict)  # selection key → β* used

    @property
    def missing(self) -> list[Node]:
        return [n for n in self.nodes if n.key not in self.cached]


def _check_dir(flag: str, uri: str) -> None:
    """A local ``--out``/``--cache`` must be a directory, or creatable as one."""
    loc = Location(uri)
    if not loc.is_local:
        return
    path = Path(loc.base)
    if path.exists() and not path.is_dir():
        raise PathError(f"{flag} {path} exists and is not a directory")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise PathError(f"{flag} {path}: {parent} is not a directory")
            break


def local_resources() -> dict[str, float]:
    """What a local Ray would have: every CPU core and every visible GPU."""
    import torch

    return {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}


def check_resources(spec: SweepSpec, available: dict[str, float], where: str) -> None:
    """Refuse per-trial resources that no node could ever grant (Tune would wait forever)."""
    res = spec.resources
    for name, value, kind in (("cpu", res.cpu, "CPU"), ("gpu", res.gpu, "GPU"),
                               ("teacher_gpu", res.teacher_gpu, "GPU")):
        have = float(available.get(kind, 0.0))
        if value > have:
            raise SpecError(f"field 'resources.{name}': {value:g} {kind}(s) per trial, but "
                             f"{where} has {have:g}")


def check_shared(cache: str, out: str) -> None:
    """On a cluster, refuse a cache or output path that only this node can see."""
    for what, uri in (("--cache", cache), ("--out", out)):
        fstype = Location(uri).node_local_fstype()
        if fstype is not None:
            raise PathError(
                f"{what} {uri} is on this node's local disk ({fstype}); every node of a "
                "cluster must reach it: use an NFS or other shared mount or an s3:// URI "
                "(or pass --allow-node-local if every node mounts the same path)")


#: ``students_per_trial: auto`` groups a configuration's seeds until a Tune trial trains
#: this many images (Ray Tune's cost per trial, ~0.25 slot-seconds, is then under 1 % of a
#: trial even at 100,000 images/s), at most AUTO_MAX students per Tune trial
AUTO_IMAGES = 200_000
AUTO_MAX = 16


def images_per_student(t: PlannedTrial, datasets: dict[str, ImageDataset]) -> int:
    """Training images the student will see, from its budget and coreset size alone."""
    size = max(1, len(datasets[t.data_key].train_y))
    n = budget_for(size, t.spec.ratio)
    bs, spe, total, _ = plan_steps(n, t.spec.optimizer, t.spec.budget, size)
    return images_seen(n, bs, spe, total)


def auto_group_size(t: PlannedTrial, datasets: dict[str, ImageDataset]) -> int:
    """Students per Tune trial under ``auto``: ⌊AUTO_IMAGES / images per student⌋ in
    [1, AUTO_MAX] — a function of the budget, never of measured timings, so a plan is
    reproducible."""
    return max(1, min(AUTO_MAX, AUTO_IMAGES // max(1, images_per_student(t, datasets))))


def group_trials(trials: list[PlannedTrial], per_trial: int | Callable[[PlannedTrial], int]
                 ) -> list[list[PlannedTrial]]:
    """Students that differ only in seed share a Tune trial (so ASHA stops a configuration
    on its seeds' mean), up to ``per_trial`` at a time (a number, or a function of the
    configuration's first student)."""
    by_config: dict[str, list[PlannedTrial]] = {}
    for t in trials:
        config = canonical_json({k: v for k, v in t.spec.science().items() if k != "seed"})
        by_config.setdefault(config, []).append(t)
    groups = []
    for members in by_config.values():
        size = per_trial(members[0]) if callable(per_trial) else per_trial
        groups += [members[i:i + size] for i in range(0, len(members), size)]
    return groups


def grouping(spec: SweepSpec, datasets: dict[str, ImageDataset]
             ) -> int | Callable[[PlannedTrial], int]:
    """The sweep's students per Tune trial: its number, or the ``auto`` rule; at least
    ``fuse`` (fused students share a Tune trial)."""
    if spec.students_per_trial == "auto":
        return lambda t: max(spec.fuse, auto_group_size(t, datasets))
    return max(spec.students_per_trial, spec.fuse)


MISSING = "missing:"


def _dataset(spec: DataSpec, root: str | None, download: bool, dry_run: bool,
             notes: list[str]) -> ImageDataset:
    """The dataset, or for a dry run without its files a placeholder (keys provisional)."""
    try:
        return load_dataset(spec, root, download)
    except DatasetMissingError as err:
        if not dry_run:
            raise
        notes.append(f"note: {err} A dry run plans without it; its keys are provisional.")
        info = dataset_info(spec.name)
        empty = np.zeros((0, 3, 32, 32), dtype=np.uint8)
        labels = np.zeros(0, dtype=np.int64)
        return ImageDataset(spec.name, empty, labels, empty, labels, info.num_classes,
                            info.augment_for(spec), fingerprint=MISSING + canonical_json(spec))


def finished(previous: pd.DataFrame, sweep: str) -> dict[str, tuple[str | None, str | None]]:
    """trial id → (selection key, teacher key) of the sweep's newest ``ok`` rows. A student
    counts as done only if its coreset and teacher are still the ones it was trained with:
    a bumped selector, dynamics or teacher version re-runs exactly the students it touches
    (their new rows supersede the old ones, which stay in the part files)."""
    ok = previous[(previous["sweep"] == sweep) & (previous["status"] == "ok")]
    teacher = ok["teacher_key"].astype(object).where(ok["teacher_key"].notna(), None)
    return dict(zip(ok["trial_id"], zip(ok["selection_key"], teacher, strict=True),
                    strict=True))


def check_ipcs(sweep: str, trials: list[TrialSpec], datasets: dict[str, ImageDataset]
               ) -> None:
    """Images per class for a selector that may see labels are exact per-class counts:
    refuse (before Ray) an IPC above a class's number of training images."""
    largest: dict[str, int] = {}
    for t in trials:
        if t.ipc is not None and not get_selector(t.selector).label_free:
            largest[data_key(t.dataset)] = max(t.ipc, largest.get(data_key(t.dataset), 0))
    for dkey, ipc in largest.items():
        ds = datasets[dkey]
        if not len(ds.train_y):
            continue  # a dry run without the data
        counts = np.bincount(ds.train_y, minlength=ds.num_classes)
        c = int(np.argmin(counts))
        if counts[c] < ipc:
            raise SpecError(f"search space {sweep}: field 'ipcs': {ipc} images per class, "
                            f"but class {c} of {ds.name}'s training split has "
                            f"{int(counts[c])}")


def plan_trial(trial: TrialSpec, dkey: str, fingerprint: str) -> PlannedTrial:
    label_needs = get_label_source(trial.label_mode).needs
    # a coreset, or a synthetic set (a distilled set trained on like one)
    root = "synthetic_set" if get_selector(trial.selector).synthesizes else "selection"
    selection = node_for(provider_of(root).name, trial, fingerprint)
    return PlannedTrial(trial, trial.trial_id(fingerprint), dkey, fingerprint, selection,
                        need_nodes(label_needs, trial, fingerprint))


def plan_sweep(spec: str | Path | SweepSpec, out: str | Path, cache: str | Path | None = None,
               data_root: str | None = None, download: bool = False,
               cluster: bool = False, dry_run: bool = False) -> Plan:
    """Validate everything a sweep needs without writing anything or starting Ray.

    A dry run plans a sweep meant for bigger machines too: resources this machine lacks
    are a note in the plan, not a refusal."""
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec)
    out, cache = str(out), str(cache or default_cache_dir())
    _check_dir("--out", out)
    _check_dir("--cache", cache)
    if cluster:
        check_shared(cache, out)
    notes = []
    if not cluster:
        try:
            check_resources(spec, local_resources(), "this machine")
        except ValueError as err:
            if not dry_run:
                raise
            notes.append(f"note: {err} (a dry run plans it anyway)")
    root = data_root or spec.data_root
    datasets = {data_key(d): _dataset(d, root, download, dry_run, notes)
                for d in spec.datasets}
    missing = {ds.fingerprint for ds in datasets.values() if ds.fingerprint.startswith(
        MISSING)}
    trials = expand(spec, {d: len(datasets[data_key(d)].train_y) for d in spec.datasets
                           if datasets[data_key(d)].fingerprint not in missing})
    check_ipcs(spec.name, trials, datasets)
    results = ResultsStore(out)
    previous = results.read("trials")  # a corrupt part fails here, before any work
    results.read("curves")
    results.read("selections")
    results.read("beta_search")
    planned = []
    for t in trials:
        dkey = data_key(t.dataset)
        planned.append(plan_trial(t, dkey, datasets[dkey].fingerprint))
    done = finished(previous, spec.name)
    todo = [p for p in planned if done.get(p.trial_id) != (p.selection.key, p.teacher_key)]
    store = ArtifactStore(cache)
    plan = Plan(spec, results, store, datasets, todo, len(planned) - len(todo),
                groups=group_trials(todo, grouping(spec, datasets)),
                notes=notes)
    nodes: dict[str, Node] = {}
    for p in todo:
        for root_node in (p.selection, *p.label_nodes.values()):
            for node in root_node.walk():
                nodes.setdefault(node.key, node)
    plan.nodes = list(nodes.values())
    by_fingerprint = {ds.fingerprint: ds for ds in datasets.values()}
    for node in plan.nodes:  # machine-local inputs (score files, weights) checked now
        check = get_kind(node.kind).check
        if check is not None and node.fingerprint not in missing:
            check(node, by_fingerprint[node.fingerprint])
    for node in plan.nodes:
        if store.exists(node.key):
            store.load(node.key)  # verifies checksums: a corrupt cache fails here
            plan.cached.add(node.key)
    return plan


def packing(spec: SweepSpec, cpus: float | None = None, gpus: int | None = None) -> str:
    """How students share Tune trials and devices: per trial, fused, per GPU and per node
    (a node of ``cpus`` CPUs and ``gpus`` GPUs, by default this machine)."""
    res = spec.resources
    cpus = float(os.cpu_count() or 1) if cpus is None else cpus
    gpus = torch.cuda.device_count() if gpus is None else gpus
    per_trial = (f"a configuration's seeds share a Tune trial until it trains "
                 f"{AUTO_IMAGES:,} images (auto; at most {max(AUTO_MAX, spec.fuse)} "
                 "students)" if spec.students_per_trial == "auto" else
                 f"up to {max(spec.students_per_trial, spec.fuse)} student(s) per Tune trial")
    line = (f"packing: {per_trial}"
            + (f", fused {spec.fuse} at a time" if spec.fuse > 1 else "")
            + f"; {res.cpu:g} CPU and {res.gpu:g} GPU per Tune trial")
    by_cpu = math.floor(cpus / res.cpu)
    if res.gpu > 0:
        per_gpu = math.floor(1 / res.gpu + 1e-9)
        per_node = min(by_cpu, math.floor(gpus / res.gpu + 1e-9))
        return line + (f"; {per_gpu} Tune trial(s) per GPU; {per_node} per node of "
                       f"{cpus:g} CPUs and {gpus} GPU(s) (this machine)")
    return line + f"; {by_cpu} Tune trial(s) per node of {cpus:g} CPUs (this machine)"


def compute_arms(plan: Plan) -> list[str]:
    """For budgets in images or full-data epochs: each arm's batch, steps, epochs of its
    own set and images seen (equal across arms up to one batch: Hard Truths' alignment)."""
    lines, seen = [], set()
    for t in plan.trials:
        budget = t.spec.budget
        if budget.unit not in ("images", "full_epochs"):
            continue
        size = len(plan.datasets[t.data_key].train_y)
        arm = (t.data_key, t.spec.ratio, canonical_json(budget.key_dump()),
               t.spec.optimizer.batch_size)
        if arm in seen or size == 0:
            continue
        seen.add(arm)
        n = budget_for(size, t.spec.ratio)
        bs, spe, total, _ = plan_steps(n, t.spec.optimizer, budget, size)
        images = images_seen(n, bs, spe, total)
        size_of = f"IPC {t.spec.ipc}" if t.spec.ipc else f"ratio {t.spec.ratio:g}"
        lines.append(f"arm {t.spec.dataset.name} {size_of} (n = {n:,}), "
                     f"{budget.value:g} {budget.unit}: batch {bs}, {total:,} steps, "
                     f"{total / spe:.2f} epochs of its set, {images:,} images seen")
    return lines


def describe(plan: Plan) -> str:
    """What ``--dry-run`` prints: students, Tune trials, artifacts and which are cached."""
    total = len(plan.trials) + plan.skipped
    smoke = " (a smoke run: shrunk by --smoke, never compared with the papers)" \
        if plan.spec.smoke else ""
    lines = [f"sweep {plan.spec.name}{smoke}: {total} trials ({len(plan.trials)} to run, "
             f"{plan.skipped} already ok) in {len(plan.groups)} Tune trials",
             f"artifacts: {len(plan.nodes)} needed, {len(plan.cached)} cached, "
             f"{len(plan.missing)} to build", packing(plan.spec),
             *(tp.describe() for tp in plan_teachers(
                 plan.trials, plan.datasets, plan.spec.resources.teacher_placement).values()),
             *compute_arms(plan), *plan.notes]
    for node in plan.nodes:
        mark = "cached" if node.key in plan.cached else "build"
        deps = ", ".join(f"{n}={d.key}" for n, d in node.deps)
        lines.append(f"  [{mark:6}] {node.key}" + (f"  <- {deps}" if deps else ""))
    return "\n".join(lines)
