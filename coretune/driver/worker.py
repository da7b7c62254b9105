"""Inside Ray: the Tune function trainable, the teacher actor, the artifact build task.

Every Ray entry point that runs coretune code — :func:`build_nodes`,
:func:`coretune_trainable`, :class:`TeacherActor` (its restarts re-run the constructor)
and the β-search trials of :mod:`coretune.driver.beta_search_tune` — calls
:func:`enter_worker` first, with the spec's plugin modules, so a plugin's selectors, kinds,
models and datasets exist in every process that may look them up.

Per worker process (Tune reuses actors) each dataset is moved to the device once, and
teacher logits and coresets are fetched once; every trial that worker runs shares them.
A Tune trial trains one or more students, interleaved report by report, and reports
every student's metrics at each report point; with ``fuse: K`` in the spec, up to K of its
students that differ only by seed are trained as one fused model
(:mod:`coretune.train.fused`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import ray
import torch

from coretune.artifacts.graph import Node, build_batch
from coretune.artifacts.selection import consumer_view, load_selection
from coretune.artifacts.store import ArtifactStore
from coretune.artifacts.synthetic import synthetic_dataset
from coretune.artifacts.teacher import TeacherService
from coretune.driver.teachers import per_node, replica_name
from coretune.plugins import import_plugins
from coretune.reports.rows import now
from coretune.spec import TrialSpec, canonical_json
from coretune.train.data import DeviceData, ImageDataset, to_device
from coretune.train.evaluate import split_evaluators
from coretune.train.fused import FusedStudent, step_plan, train_fused
from coretune.train.labels import LabelConfig, LabelInputs, TeacherSignal, make_label_source
from coretune.train.loop import RngState, compile_student, init_model, train_steps

NAMESPACE = "coretune"
_WORKER: dict[tuple, Any] = {}


@ray.remote(num_cpus=0)
class RunRefs:
    """Object refs of one sweep run (datasets, fixed logits), owned and pinned by the driver,
    that restartable actors fetch in their constructors: the refs stay out of the
    constructors' own arguments, so a restart fetches them again from here."""

    def __init__(self) -> None:
        self.refs: dict[str, list] = {}

    def put(self, name: str, refs: list) -> None:
        self.refs[name] = refs

    def get(self, name: str) -> list:
        return self.refs[name]


@ray.remote(num_cpus=0, max_restarts=5, max_task_retries=5)
class TeacherActor(TeacherService):
    """A :class:`TeacherService` as a named actor; fixed logits live in the object store.

    Restartable: if its process or node dies, Ray re-runs the constructor, which takes the
    dataset and logits refs from the run's :class:`RunRefs` and rebuilds the service from
    the artifact store; calls waiting on it are retried.
    """

    def __init__(self, refs_actor: str, store_uri: str, key: str, device: str = "cpu",
                 plugins: list[str] | None = None):
        enter_worker(plugins)  # the teacher's arch may be a plugin's model
        ds_ref, logits_ref = ray.get(
            ray.get_actor(refs_actor, namespace=NAMESPACE).get.remote(key))
        super().__init__(ray.get(ds_ref), store_uri, key, device)
        self._logits_ref = [logits_ref]

    def logits_ref(self) -> list:
        """``[ObjectRef]`` of the fixed train logits (wrapped so Ray does not resolve it)."""
        return self._logits_ref




def enter_worker(plugins: list[str] | tuple[str, ...] | None, threads: float | None = None
                 ) -> None:
    """What every Ray process runs before coretune code: import the spec's ``plugins``
    (they register themselves; a restarted or reused process imports nothing twice) and,
    if given, give torch the process's ``threads`` (its CPU share)."""
    import_plugins(plugins)
    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))


def _device() -> str:
    return "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"


def _once(key: tuple, make):
    if key not in _WORKER:
        _WORKER[key] = make()
    return _WORKER[key]


@ray.remote
def build_nodes(store_uri: str, nodes: list[Node], fingerprints: list[str], plugins: list[str],
                threads: int, *refs) -> list[tuple[str, bool, float]]:
    """Build artifacts, dependencies first, committed together (one node of a ``"task"``
    kind, or a chunk of a ``"batch"`` kind's): ``refs`` are the datasets of
    ``fingerprints``, then the build results of what the nodes depend on (committed by
    then). (key, built here, seconds) per node."""
    enter_worker(plugins, threads)
    datasets = dict(zip(fingerprints, refs[:len(fingerprints)], strict=True))
    return build_batch(nodes, ArtifactStore(store_uri), datasets, _device())


def _teacher_signal(student: dict, trial: TrialSpec, device: str, teachers: dict,
                    store: ArtifactStore, dataset: ImageDataset, synthetic: bool = False
                    ) -> TeacherSignal | None:
    """The trial's teacher (:mod:`coretune.driver.teachers`): fixed logits, fetched once per
    worker, and per-view logits from the service placed for it — this process's own, or
    the replica on this node (or the single actor). A synthetic set's images are labelled
    by a teacher in the student's own process (its fixed logits computed on them)."""
    key = student["label_keys"].get("teacher")
    if key is None:
        return None
    aug, topk = trial.augment, trial.label_args.get("topk")  # FKD: top-k views travel
    bs = trial.optimizer.batch_size  # CutMix: the service rebuilds the student's batches
    if synthetic:
        service = _once(("teacher_service", key, dataset.fingerprint, device),
                        lambda: TeacherService(dataset, store.uri, key, device, relabel=True))
        return TeacherSignal(
            fixed_logits=torch.as_tensor(service.train_logits, device=device),
            view_logits=lambda seed, epochs, idx: service.view_logits(seed, epochs, idx, aug,
                                                                      topk, bs))
    placed = teachers.get(key, {"placement": "single",
                                "replicas": {"": replica_name(student["run_id"], key)}})
    if placed["placement"] == "process":
        fixed = _once(("teacher", key, device), lambda: torch.as_tensor(
            store.load(key).array("train_logits"), device=device))

        def view_logits(seed, epochs, idx):
            service = _once(("teacher_service", key, device),
                            lambda: TeacherService(dataset, store.uri, key, device))
            return service.view_logits(seed, epochs, idx, aug, topk, bs)

        return TeacherSignal(fixed_logits=fixed, view_logits=view_logits)
    name = per_node(placed["replicas"], ray.get_runtime_context().get_node_id())
    actor = ray.get_actor(name, namespace=NAMESPACE)

    def fetch():
        ref = ray.get(actor.logits_ref.remote())[0]
        return torch.as_tensor(np.asarray(ray.get(ref)), device=device)

    return TeacherSignal(fixed_logits=_once(("teacher", key, device), fetch),
                         view_logits=lambda seed, epochs, idx: ray.get(
                             actor.view_logits.remote(seed, epochs, idx, aug, topk, bs)))


class _Student:
    """One student of a Tune trial: its model, coreset and labels, its reports and timings.

    Trained alone (:meth:`start`, then :meth:`advance`) or as a member of a
    :class:`_FusedStudents` group, which calls :meth:`record` with its reports."""

    def __init__(self, student: dict, datasets: dict[str, ImageDataset], store: ArtifactStore,
                 device: str, teachers: dict | None = None):
        trial = TrialSpec.model_validate(student["trial"])
        self.trial_id, self.trial = student["trial_id"], trial
        dataset, data_id = datasets[student["data_key"]], student["data_key"]
        selected = _once(("artifact", student["selection_key"]),
                         lambda: store.load(student["selection_key"]))
        if selected.has("images"):  # a synthetic set: a dataset of its own
            dataset = _once(("synthetic", selected.key),
                            lambda: synthetic_dataset(dataset, selected))
            data_id = selected.key
        self.synthetic = selected.has("images")
        self.data: DeviceData = _once(("data", data_id, device),
                                      lambda: to_device(dataset, device))
        data = self.data
        self.indices, self.weights = _once(
            ("selection", student["selection_key"]),
            lambda: load_selection(selected, int(data.train_y.numel())))
        artifacts = {need: _once(("artifact", key),
                                 lambda key=key, need=need: consumer_view(need, store.load(key)))
                     for need, key in student["label_keys"].items() if need != "teacher"}
        self.labels = make_label_source(
            LabelConfig.of(trial),
            LabelInputs(data.train_y, _teacher_signal(
                student, trial, device, teachers or {}, store, dataset, self.synthetic),
                artifacts))
        self.device = data.device
        self.model = init_model(trial.arch, trial.arch_args, tuple(data.train_x.shape[1:]),
                                data.num_classes, trial.seed, self.device)
        self.n_selected = int(len(self.indices))
        self.seconds = 0.0
        self.started_at = now().isoformat()
        self.last: dict = {}
        self.done = False
        self.steps = None

    def fusion_key(self) -> tuple:
        """Students with equal keys can be trained fused (the seed is not in it)."""
        t = self.trial
        recipe = [t.arch, t.arch_args, t.budget.key_dump(), t.optimizer.key_dump(),
                  None if t.augment is None else t.augment.key_dump()]
        return (canonical_json(recipe), id(self.data),
                step_plan(self.n_selected, t.optimizer, t.budget,
                          self.data.full_split_size))

    def start(self, compile_mode: str | None = None) -> None:
        """Begin training alone (compiled with ``compile_mode``, if given)."""
        t = self.trial
        model = compile_student(self.model, compile_mode, self.device)
        self.steps = train_steps(model, self.data, self.indices, self.labels,
                                 split_evaluators(self.data), t.budget, t.optimizer, t.seed,
                                 t.augment, self.weights, rng=RngState(t.seed, self.device))

    def record(self, metrics: dict, seconds: float, peak: int | None) -> dict:
        self.seconds += seconds
        self.last = {**metrics, "n_selected": self.n_selected, "train_seconds": self.seconds,
                     "peak_memory_bytes": peak, "device": self.device.type,
                     "started_at": self.started_at, "finished_at": now().isoformat()}
        self.done = bool(metrics.get("final")) or metrics.get("diverged_at_step") is not None
        return self.last

    def advance(self) -> dict[str, dict]:
        """Train to the next report point (or keep the final report once done)."""
        if self.done:
            return {self.trial_id: self.last}
        with _timed(self.device) as timing:
            try:
                metrics = next(self.steps)
            except StopIteration:
                self.done = True
                return {self.trial_id: self.last}
        self.record(metrics, timing.seconds, timing.peak)
        return {self.trial_id: self.last}


class _FusedStudents:
    """Students of one fusion key trained as one model (:func:`train_fused`); each report
    is recorded per student, with the group's seconds shared out among those still
    training (so ``train_seconds`` sums to the group's time)."""

    def __init__(self, members: list[_Student]):
        self.members = members
        first = members[0]
        t = first.trial
        self.steps = train_fused(
            [FusedStudent(m.model, m.indices, m.labels, m.trial.seed, m.weights)
             for m in members],
            first.data, split_evaluators(first.data), t.budget, t.optimizer, t.augment)

    @property
    def done(self) -> bool:
        return all(m.done for m in self.members)

    def advance(self) -> dict[str, dict]:
        if not self.done:
            with _timed(self.members[0].device) as timing:
                reports = next(self.steps, None)
            training = [m for m in self.members if not m.done]
            for m, metrics in zip(self.members, reports or [None] * len(self.members),
                                  strict=True):
                if metrics is not None:
                    m.record(metrics, timing.seconds / len(training), timing.peak)
                elif not m.done:
                    m.done = True  # the generator ended: keep its last report
        return {m.trial_id: m.last for m in self.members}


class _Timing:
    seconds: float = 0.0
    peak: int | None = None


@contextmanager
def _timed(device: torch.device):
    """Wall seconds of the block and, on CUDA, its peak allocated memory."""
    timing = _Timing()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    yield timing
    timing.seconds = time.perf_counter() - started
    if device.type == "cuda":
        timing.peak = torch.cuda.max_memory_allocated(device)


def training_units(students: list[_Student], fuse: int, compile_mode: str | None = None
                   ) -> list[_Student | _FusedStudents]:
    """The students of a Tune trial as training units: chunks of up to ``fuse`` students of
    one fusion key are fused; the rest (and everything when ``fuse`` is 1) train alone,
    ``torch.compile``-d with ``compile_mode`` if one is given."""
    by_key: dict[tuple, list[_Student]] = {}
    for s in students:
        by_key.setdefault(s.fusion_key() if fuse > 1 else (s.trial_id,), []).append(s)
    units: list[_Student | _FusedStudents] = []
    for members in by_key.values():
        for i in range(0, len(members), fuse):
            chunk = members[i:i + fuse]
            if len(chunk) > 1:
                units.append(_FusedStudents(chunk))
            else:
                chunk[0].start(compile_mode)
                units.append(chunk[0])
    return units


class Group(Mapping):
    """A Tune trial's group of students, as its config holds it (``config["group"]``): its
    ``group_id``, ``metric``, ``fuse``, ``compile``, ``teachers`` and ``students``.

    A read-only mapping, not a dict: Tune replaces such an object in its search space by a
    placeholder and hands each trial the object itself, where it would copy a dict — and
    its grid search copies the whole space, every group, for each trial it creates (0.46 s
    per trial at 10,000 students in 630 trials, growing with their square)."""

    def __init__(self, **fields: Any):
        self._fields = fields

    def __getitem__(self, key: str) -> Any:
        return self._fields[key]

    def __iter__(self):
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Group({self._fields.get('group_id')!r})"


def coretune_trainable(config: dict, datasets: dict[str, ImageDataset], store_uri: str,
                       plugins: list[str], cpus_per_trial: float = 1.0) -> None:
    """Tune function trainable: the students of one group, reporting at each report point."""
    from ray import tune  # here, not at the top: build tasks and actors never load Tune

    body_started = time.perf_counter()
    enter_worker(plugins, cpus_per_trial)
    group = config["group"]
    store = _once(("store", store_uri), lambda: ArtifactStore(store_uri))
    device = _device()
    students = [_Student(s, datasets, store, device, group.get("teachers"))
                for s in group["students"]]
    units = training_units(students, int(group.get("fuse", 1)), group.get("compile"))
    metric = group["metric"]
    while not all(u.done for u in units):
        reports: dict[str, dict] = {}
        for unit in units:
            reports.update(unit.advance())
        values = [r[metric] for r in reports.values()
                  if r.get(metric) is not None and math.isfinite(r[metric])]
        tune.report({metric: float(np.mean(values)) if values else float("nan"),
                     "students": reports, "all_done": all(u.done for u in units),
                     "body_seconds": time.perf_counter() - body_started})
