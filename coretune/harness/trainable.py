"""The Ray Tune function trainable and the named teacher actor.

Per worker process (Tune reuses actors) the dataset is moved to the device once and the
teacher's fixed logits are fetched from Ray's object store once (zero-copy on the node);
every trial that worker runs shares them.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import ray
import torch
from ray import tune

from coretune.harness.data import DeviceData, ImageDataset, to_device
from coretune.harness.teacher import TeacherService
from coretune.harness.train import TeacherSignal
from coretune.harness.trial import train_trial

NAMESPACE = "coretune"
_WORKER: dict[tuple, Any] = {}


@ray.remote(num_cpus=0)
class TeacherActor(TeacherService):
    """A :class:`TeacherService` as a named actor; fixed logits live in the object store."""

    def __init__(self, ds: ImageDataset, store_root: str, key: str, logits_ref: list,
                 device: str = "cpu"):
        super().__init__(ds, store_root, key, device)
        self._logits_ref = logits_ref

    def logits_ref(self) -> list:
        """``[ObjectRef]`` of the fixed train logits (wrapped so Ray does not resolve it)."""
        return self._logits_ref


def teacher_actor_name(sweep: str, teacher_key: str) -> str:
    return f"{sweep}:{teacher_key}"


def _device() -> str:
    return "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"


def _device_data(ds: ImageDataset, device: str) -> DeviceData:
    key = ("data", ds.name, len(ds.train_y), device)
    if key not in _WORKER:
        _WORKER[key] = to_device(ds, device)
    return _WORKER[key]


def _teacher_signal(trial: dict, device: str) -> TeacherSignal | None:
    if trial["label_mode"] not in ("soft", "kd"):
        return None
    actor = ray.get_actor(teacher_actor_name(trial["sweep"], trial["teacher_key"]),
                          namespace=NAMESPACE)
    if trial["label_mode"] == "kd":
        return TeacherSignal(view_logits=lambda seed, epochs, idx: ray.get(
            actor.view_logits.remote(seed, epochs, idx)))
    key = ("teacher", trial["teacher_key"], device)
    if key not in _WORKER:
        ref = ray.get(actor.logits_ref.remote())[0]
        _WORKER[key] = torch.as_tensor(np.asarray(ray.get(ref)), device=device)
    return TeacherSignal(fixed_logits=_WORKER[key])


def coretune_trainable(config: dict, datasets: dict[str, ImageDataset],
                       selections: dict[str, tuple[np.ndarray, np.ndarray | None]],
                       cpus_per_trial: float = 1.0) -> None:
    """Tune function trainable: one trial of the sweep, reporting at each report point."""
    body_started = time.perf_counter()
    torch.set_num_threads(max(1, int(cpus_per_trial)))
    trial = config["trial"]
    device = _device()
    data = _device_data(datasets[trial["dataset"]], device)
    indices, weights = selections[trial["selection_key"]]
    teacher = _teacher_signal(trial, device)

    def report(metrics: dict) -> None:
        tune.report({**metrics, "device": device,
                     "body_seconds": time.perf_counter() - body_started})

    train_trial(trial, data, indices, weights, teacher, report=report)


__all__ = ["TeacherActor", "coretune_trainable", "teacher_actor_name", "NAMESPACE"]
