"""Benchmark: online-KD teacher work per student step as the number of students grows.

A simulated cluster (``ray.cluster_utils.Cluster``: a head and three worker nodes of 16
logical CPUs each) runs 4, 16 and 64 concurrent kd students, spread evenly over the
nodes. A simulated student is a thread of its node's host actor that does what a coretune
student does at each step — ask its teacher for the logits of its batch of views
(``TeacherService.view_logits``, the real service: crops, teacher forward, cache), through
the placement under test — then sleeps for the time its own training step would take on
its GPU. Students have distinct seeds (no view is shared), as seeds of a sweep are.

Placements (:mod:`coretune.driver.teachers`): ``single`` — one actor for the cluster (the
service before the throughput issue); ``node`` — one replica per node; ``process`` — the
teacher inside the student's own process (here: a service per student thread), which the
planner picks when no view is shared. Reported per placement and student count: teacher
forward passes (views computed) per student step, and the wall seconds a student spends
on teacher work per step (waiting on a remote service or computing locally), mean and
p90, and the CPU seconds of the student's own thread in it. Where the teacher is the
student's own (``process``), its work is that CPU time: the wall time of 64 simulated
students also counts their sharing 2 cores and one interpreter lock per node host, which
students in their own processes on their own devices do not.

Run: ``python bench/teacher_scale.py`` (about 3 minutes on 2 cores). Results go to
bench/RESULTS.md. The teacher is the digits small CNN; a student's step is 500 ms (so
that 64 students' own teacher work fits 2 cores).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import ray
import torch
from ray.cluster_utils import Cluster
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from coretune.artifacts.graph import build
from coretune.artifacts.store import ArtifactStore
from coretune.artifacts.teacher import TeacherService
from coretune.driver.plan import plan_sweep
from coretune.search_spaces.schema import parse_spec

NODES, CPUS_PER_NODE = 4, 16
NAMESPACE = "teacher_scale"


def teacher(cache: Path, out: Path):
    """A digits small-CNN teacher built through coretune's artifact graph."""
    spec = parse_spec({
        "name": "teacher_scale", "datasets": "digits", "archs": "mlp", "seeds": [0],
        "ratios": [0.2], "selectors": [{"name": "random"}],
        "label_modes": [{"mode": "kd", "tau": 4.0, "lam": 0.9}],
        "budget": {"unit": "iterations", "value": 10},
        "teacher": {"arch": "small_cnn", "seed": 0, "budget": {"unit": "epochs", "value": 2}}})
    plan = plan_sweep(spec, out, cache)
    node = plan.trials[0].label_nodes["teacher"]
    dataset = plan.datasets[plan.trials[0].data_key]
    build(node, ArtifactStore(str(cache)), dataset, "cpu")
    return dataset, node.key


@ray.remote(num_cpus=1)
class NodeHost:
    """The students of one node, one thread each."""

    def __init__(self, dataset, store_uri: str, key: str):
        torch.set_num_threads(1)
        self.dataset, self.store_uri, self.key = dataset, store_uri, key

    def run(self, placement: str, replica: str | None, seeds: list[int], steps: int,
            batch: int, step_seconds: float) -> list[dict]:
        n = len(self.dataset.train_y)

        def student(seed: int) -> dict:
            if placement == "process":
                service = TeacherService(self.dataset, self.store_uri, self.key, "cpu")
                ask = service.view_logits
            else:
                actor = ray.get_actor(replica, namespace=NAMESPACE)
                service = None

                def ask(s, epochs, idx):
                    return ray.get(actor.view_logits.remote(s, epochs, idx))
            rng = np.random.default_rng(seed)
            waits, cpu = [], []
            for step in range(steps):
                idx = rng.choice(n, batch, replace=False)
                started, cpu_started = time.perf_counter(), time.thread_time()
                ask(seed, np.array([step]), idx)
                waits.append(time.perf_counter() - started)
                cpu.append(time.thread_time() - cpu_started)
                time.sleep(step_seconds)
            return {"waits": waits[1:], "cpu": cpu[1:],  # step 0 builds the service
                    "computed": service.views_computed if service else 0}

        with ThreadPoolExecutor(len(seeds)) as pool:
            return list(pool.map(student, seeds))


def measure(hosts, nodes, dataset, store_uri, key, placement: str, students: int,
            steps: int, batch: int, step_seconds: float) -> dict:
    service_cls = ray.remote(num_cpus=1)(TeacherService)
    actors, replicas = [], {}
    if placement == "single":
        actors = [service_cls.options(name=f"t-{placement}-{students}", namespace=NAMESPACE)
                  .remote(dataset, store_uri, key, "cpu")]
        replicas = dict.fromkeys(nodes, f"t-{placement}-{students}")
    elif placement == "node":
        for node in nodes:
            name = f"t-{placement}-{students}-{node[:8]}"
            actors.append(service_cls.options(
                name=name, namespace=NAMESPACE,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
                .remote(dataset, store_uri, key, "cpu"))
            replicas[node] = name
    ray.get([a.info.remote() for a in actors])
    seeds = np.array_split(np.arange(students) + 1000 * students, len(hosts))
    results = ray.get([h.run.remote(placement, replicas.get(node), s.tolist(), steps, batch,
                                    step_seconds)
                       for h, node, s in zip(hosts, nodes, seeds, strict=True)])
    per_student = [r for rs in results for r in rs]
    waits = np.concatenate([r["waits"] for r in per_student])
    cpu = np.concatenate([r["cpu"] for r in per_student])
    computed = sum(r["computed"] for r in per_student) + sum(
        info["views_computed"] for info in ray.get([a.info.remote() for a in actors]))
    for a in actors:
        ray.kill(a)
    return {"placement": placement, "students": students,
            "forward_per_step": computed / (students * steps),
            "teacher_s_mean": float(waits.mean()), "teacher_s_p90": float(
                np.percentile(waits, 90)), "student_cpu_s": float(cpu.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", default="4,16,64")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--step-seconds", type=float, default=0.5)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": CPUS_PER_NODE})
    for _ in range(NODES - 1):
        cluster.add_node(num_cpus=CPUS_PER_NODE)
    ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False,
             logging_level="ERROR")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dataset, key = teacher(Path(tmp) / "cache", Path(tmp) / "out")
        store_uri = str(Path(tmp) / "cache")
        nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        hosts = [NodeHost.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            node, soft=False)).remote(dataset, store_uri, key) for node in nodes]
        for count in map(int, args.students.split(",")):
            for placement in ("single", "node", "process"):
                rows.append(measure(hosts, nodes, dataset, store_uri, key, placement, count,
                                    args.steps, args.batch, args.step_seconds))
                print(rows[-1], flush=True)
    ray.shutdown()
    cluster.shutdown()
    lines = [f"## teacher_scale ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
             f"{NODES} simulated nodes × {CPUS_PER_NODE} logical CPUs, digits small-CNN "
             f"teacher, batch {args.batch}, {args.steps} steps of {args.step_seconds} s)", "",
             "| placement | kd students | teacher forwards per student step | wall on "
             "teacher work per step (mean) | p90 | × at the fewest | student CPU on it | "
             "× at the fewest |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    first: dict[str, dict] = {}
    for r in rows:
        base = first.setdefault(r["placement"], r)
        lines.append(f"| {r['placement']} | {r['students']} | {r['forward_per_step']:.1f} | "
                     f"{r['teacher_s_mean'] * 1e3:.1f} ms | {r['teacher_s_p90'] * 1e3:.1f} ms "
                     f"| {r['teacher_s_mean'] / base['teacher_s_mean']:.2f} | "
                     f"{r['student_cpu_s'] * 1e3:.1f} ms | "
                     f"{r['student_cpu_s'] / base['student_cpu_s']:.2f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
