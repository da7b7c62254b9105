"""Inside Ray: the Tune function trainable, the teacher actor, the artifact build task.

Every Ray entry point that runs coretune code — :func:`build_node`,
:func:`coretune_trainable`, :class:`TeacherActor` (its restarts re-run the constructor)
and the β-search trials of :mod:`coretune.driver.beta_search_tune` — calls
:func:`enter_worker` first, with the spec's plugin modules, so a plugin's selectors, kinds,
models and datasets exist in every process that may look them up.

Per worker process (Tune reuses actors) each dataset is moved to the device once, and
teacher logits and coresets are fetched once; every trial that worker runs shares them.
A Tune trial trains one or more students, interleaved report by report, and reports
every student's metrics at each report point.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import ray
import torch

from coretune.artifacts.graph import Node, build
from coretune.artifacts.selection import consumer_view, load_selection
from coretune.artifacts.store import ArtifactStore
from coretune.artifacts.teacher import TeacherService
from coretune.plugins import import_plugins
from coretune.reports.rows import now
from coretune.spec import TrialSpec
from coretune.train.data import DeviceData, ImageDataset, to_device
from coretune.train.evaluate import split_evaluators
from coretune.train.labels import LabelConfig, LabelInputs, TeacherSignal, make_label_source
from coretune.train.loop import RngState, init_model, train_steps

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


def teacher_actor_name(run_id: str, teacher_key: str) -> str:
    """One actor per (sweep run, teacher): no other sweep finds or kills it."""
    return f"{run_id}:{teacher_key}"


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
def build_node(store_uri: str, node: Node, dataset: ImageDataset, plugins: list[str],
               threads: int, *dep_keys: str) -> tuple[str, bool, float]:
    """Build one artifact (its dependencies are committed: their keys are the arguments)."""
    enter_worker(plugins, threads)
    started = time.perf_counter()
    art, built = build(node, ArtifactStore(store_uri), dataset, _device())
    return art.key, built, time.perf_counter() - started


def _teacher_signal(student: dict, trial: TrialSpec, device: str) -> TeacherSignal | None:
    """The trial's teacher: fixed logits (fetched once per worker) and per-view logits."""
    key = student["label_keys"].get("teacher")
    if key is None:
        return None
    actor = ray.get_actor(teacher_actor_name(student["run_id"], key), namespace=NAMESPACE)

    def fetch():
        ref = ray.get(actor.logits_ref.remote())[0]
        return torch.as_tensor(np.asarray(ray.get(ref)), device=device)

    aug = trial.augment
    return TeacherSignal(fixed_logits=_once(("teacher", key, device), fetch),
                         view_logits=lambda seed, epochs, idx: ray.get(
                             actor.view_logits.remote(seed, epochs, idx, aug)))


class _Student:
    """One student of a Tune trial: its generator of reports and its own timings."""

    def __init__(self, student: dict, datasets: dict[str, ImageDataset], store: ArtifactStore,
                 device: str):
        trial = TrialSpec.model_validate(student["trial"])
        self.trial_id, self.trial = student["trial_id"], trial
        data: DeviceData = _once(("data", student["data_key"], device),
                                 lambda: to_device(datasets[student["data_key"]], device))
        indices, weights = _once(("selection", student["selection_key"]), lambda: load_selection(
            store.load(student["selection_key"]), int(data.train_y.numel())))
        artifacts = {need: _once(("artifact", key),
                                 lambda key=key, need=need: consumer_view(need, store.load(key)))
                     for need, key in student["label_keys"].items() if need != "teacher"}
        labels = make_label_source(
            LabelConfig.of(trial),
            LabelInputs(data.train_y, _teacher_signal(student, trial, device), artifacts))
        dev = data.device
        model = init_model(trial.arch, trial.arch_args, tuple(data.train_x.shape[1:]),
                           data.num_classes, trial.seed, dev)
        self.n_selected = int(len(indices))
        self.seconds = 0.0
        self.started_at = now().isoformat()
        self.last: dict = {}
        self.device = dev
        self.steps = train_steps(model, data, indices, labels, split_evaluators(data),
                                 trial.budget, trial.optimizer, trial.seed, trial.augment,
                                 weights, rng=RngState(trial.seed, dev))
        self.done = False

    def advance(self) -> dict:
        """Train to the next report point (or keep the final report once done)."""
        if self.done:
            return self.last
        started = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            metrics = next(self.steps)
        except StopIteration:
            self.done = True
            return self.last
        self.seconds += time.perf_counter() - started
        peak = (torch.cuda.max_memory_allocated(self.device)
                if self.device.type == "cuda" else None)
        self.last = {**metrics, "n_selected": self.n_selected, "train_seconds": self.seconds,
                     "peak_memory_bytes": peak, "device": self.device.type,
                     "started_at": self.started_at, "finished_at": now().isoformat()}
        self.done = bool(metrics.get("final")) or metrics.get("diverged_at_step") is not None
        return self.last


def coretune_trainable(config: dict, datasets: dict[str, ImageDataset], store_uri: str,
                       plugins: list[str], cpus_per_trial: float = 1.0) -> None:
    """Tune function trainable: the students of one group, reporting at each report point."""
    from ray import tune  # here, not at the top: build tasks and actors never load Tune

    body_started = time.perf_counter()
    enter_worker(plugins, cpus_per_trial)
    group = config["group"]
    store = _once(("store", store_uri), lambda: ArtifactStore(store_uri))
    device = _device()
    students = [_Student(s, datasets, store, device) for s in group["students"]]
    metric = group["metric"]
    while not all(s.done for s in students):
        reports = {s.trial_id: s.advance() for s in students}
        values = [r[metric] for r in reports.values()
                  if r.get(metric) is not None and math.isfinite(r[metric])]
        tune.report({metric: float(np.mean(values)) if values else float("nan"),
                     "students": reports, "all_done": all(s.done for s in students),
                     "body_seconds": time.perf_counter() - body_started})
