"""Where a sweep's teachers run, and the cost model behind the choice.

Online KD asks the teacher for its logits on every view a student trains on: one teacher
forward pass per image seen, a third of a ResNet-18 training step. One teacher actor for a
whole cluster (``single``, the old service) serialises every student's requests, so the
time a student waits on it grows with the number of students. Two placements scale:

- ``process`` — the teacher runs inside each student's worker process
  (:class:`~coretune.artifacts.teacher.TeacherService`, cached per process; Tune reuses
  processes, so later trials there replay its cached views). No remote call; cost per
  student step is one teacher forward per image, whatever the cluster size. Chosen when
  no two kd students replay the same views (views are keyed by seed and augmentation;
  CutMix views also by the coreset and batch size their partners come from).
- ``node`` — one teacher replica per node, shared by that node's students: a view shared
  by several students is computed once per node. Chosen when views are shared.

Fixed soft labels (``soft``) need no service: students read the teacher's train logits
from the artifact store (``process``) or the replica's object-store copy (``node``,
``single``). The plan prints each teacher's cost model (:meth:`TeacherPlan.describe`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from coretune.selectors import budget_for
from coretune.spec import canonical_json
from coretune.train.loop import plan_steps

PLACEMENTS = ("auto", "single", "node", "process")


@dataclass(frozen=True)
class TeacherPlan:
    """One teacher's placement and the numbers it was chosen by."""

    key: str
    placement: str  # single | node | process
    students: int  # students that use this teacher (soft or kd)
    kd_students: int
    views_needed: int  # images the kd students see: one teacher view each
    largest_family: int  # most kd students replaying one (seed, augmentation) view family
    flops_per_view: float  # the teacher's forward FLOPs per image (torch.utils.flop_counter)
    flops_per_step: float  # teacher FLOPs per kd student step (its batch of views)

    def describe(self) -> str:
        why = ("views shared by up to "
               f"{self.largest_family} students: one replica per node, each view computed "
               "once per node" if self.placement == "node" else
               "no view shared: the teacher runs in each student's process, no remote call"
               if self.placement == "process" else "one actor serves every student")
        return (f"teacher {self.key}: {self.placement} ({why}); {self.kd_students} of "
                f"{self.students} students online KD, {self.views_needed:,} views needed, "
                f"{self.flops_per_view / 1e9:.3g} GFLOP per view, "
                f"{self.flops_per_step / 1e9:.3g} GFLOP of teacher per student step")


def forward_flops(arch: str, arch_args: dict, input_shape: tuple[int, int, int],
                  num_classes: int) -> float:
    """Forward FLOPs per image of ``arch`` (counted on the meta device: no memory, no data)."""
    from torch.utils.flop_counter import FlopCounterMode

    from coretune.train.models import build_model
    with torch.device("meta"):
        model = build_model(arch, tuple(input_shape), num_classes, arch_args).eval()
        x = torch.empty(1, *input_shape)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return float(counter.get_total_flops())


def plan_teachers(students: Iterable, datasets: dict, choice: str = "auto",
                  count_flops: bool = True) -> dict[str, TeacherPlan]:
    """The placement of each teacher the ``students`` (planned trials) use; the FLOP
    counts (a meta-device pass per teacher) only for the printed cost model."""
    by_teacher: dict[str, list] = {}
    for s in students:
        if s.teacher_key:
            by_teacher.setdefault(s.teacher_key, []).append(s)
    out = {}
    for key, users in by_teacher.items():
        kd = [s for s in users if "teacher" in s.label_nodes and s.spec.label_mode == "kd"]
        families = Counter(_view_family(s) for s in kd)
        largest = max(families.values(), default=0)
        views, batches = 0, []
        ds = datasets[users[0].data_key]
        for s in kd:
            n = budget_for(max(1, len(ds.train_y)), s.spec.ratio)
            bs, _, total, _ = plan_steps(n, s.spec.optimizer, s.spec.budget,
                                         len(ds.train_y))
            views += total * bs
            batches.append(bs)
        recipe = users[0].spec.teacher
        flops = forward_flops(recipe.arch, recipe.arch_args, ds.input_shape, ds.num_classes) \
            if count_flops and kd and len(ds.train_y) else 0.0
        placement = choice if choice != "auto" else ("node" if largest > 1 else "process")
        out[key] = TeacherPlan(key, placement, len(users), len(kd), views, largest, flops,
                               flops * (sum(batches) / len(batches) if batches else 0.0))
    return out


def _view_family(s) -> tuple:
    """What makes two kd students replay the same views: seed and augmentation, and with
    CutMix (a view mixed with a partner of the student's own batch) also the coreset and
    the batch size."""
    aug = s.spec.augment
    family = (s.spec.seed, canonical_json(None if aug is None else aug.key_dump()))
    if aug is not None and aug.cutmix is not None:
        family += (s.selection.key, s.spec.optimizer.batch_size)
    return family


def replica_name(run_id: str, teacher_key: str, node_id: str | None = None) -> str:
    """The actor name of a teacher's replica on ``node_id`` (or of the single actor)."""
    return f"{run_id}:{teacher_key}" + (f":{node_id}" if node_id else "")


def per_node(replicas: dict[str, str], node_id: str) -> str:
    """The replica a student on ``node_id`` asks: its node's, else the first (a node that
    joined after the run started has none of its own)."""
    return replicas.get(node_id) or next(iter(replicas.values()))


def start_teachers(plan, run_id: str, refs_actor: str, device: str, actor_cls,
                   namespace: str) -> tuple[list, dict[str, dict]]:
    """Start each teacher's ``actor_cls`` actors as placed; return them and, per teacher,
    what a student needs to find its service: ``{"placement", "replicas": {node: name}}``."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    res = plan.spec.resources
    placed = plan_teachers((s for g in plan.groups for s in g), plan.datasets,
                           res.teacher_placement, count_flops=False)
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU")]
    actors, services = [], {}
    for key, tp in placed.items():
        replicas: dict[str, str] = {}
        if tp.placement == "single":
            replicas[""] = replica_name(run_id, key)
        elif tp.placement == "node":
            replicas = {node: replica_name(run_id, key, node) for node in nodes}
        for node, name in replicas.items():
            options = {"name": name, "namespace": namespace, "num_gpus": res.teacher_gpu}
            if node:  # soft: a replica whose node died restarts elsewhere
                options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=True)
            actors.append(actor_cls.options(**options).remote(
                refs_actor, plan.store.uri, key, device, list(plan.spec.plugins)))
        services[key] = {"placement": tp.placement, "replicas": replicas}
    return actors, services


def teacher_totals(infos: list[dict], services: dict[str, dict]) -> dict[str, dict]:
    """Per teacher: its placement and its actors' view counts summed over replicas."""
    out = {key: {"key": key, "placement": svc["placement"], "replicas": len(svc["replicas"]),
                 "views_computed": 0, "views_served": 0} for key, svc in services.items()}
    for info in infos:
        for field in ("views_computed", "views_served"):
            out[info["key"]][field] += info[field]
        out[info["key"]]["test_acc"] = info["test_acc"]
    return out


__all__ = ["PLACEMENTS", "TeacherPlan", "forward_flops", "per_node", "plan_teachers",
           "replica_name", "start_teachers", "teacher_totals"]
