"""The artifact builder packs cheap kinds' nodes in chunks (``executor="batch"``), one Ray
task each: every node is built once, as it would be alone, in dependency order across and
within chunks; a failing node raises its own error; two drivers on one store build
nothing twice. The plugin kinds of :mod:`tests.plugins.batch_kinds` log each build."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from coretune.artifacts.graph import Node, build
from coretune.artifacts.store import ArtifactStore
from coretune.driver.build import CHUNKS_PER_SLOT, MAX_CHUNKS, build_artifacts, build_units
from coretune.driver.plan import Plan, plan_sweep
from coretune.search_spaces.schema import parse_spec

PLUGIN = "tests.plugins.batch_kinds"
SPEC = {"name": "batched", "plugins": [PLUGIN], "datasets": "digits", "archs": "mlp",
        "seeds": [0, 1, 2, 3], "ratios": [0.05, 0.1, 0.2],
        "selectors": [{"name": "random"}, {"name": "random", "args": {"class_balanced": True}}],
        "label_modes": [{"mode": "hard"}], "optimizer": {"lr": 0.05, "batch_size": 32},
        "budget": {"unit": "iterations", "value": 1, "max_reports": 1}}


def _plan(tmp_path: Path, cache: str = "cache", out: str = "out") -> Plan:
    return plan_sweep(parse_spec(SPEC), tmp_path / out, tmp_path / cache)


def _with_nodes(plan: Plan, nodes: list[Node]) -> Plan:
    """``plan`` building ``nodes`` (of the plugin kinds) instead of its own."""
    plan.nodes, plan.cached = list(nodes), set()
    return plan


def head(plan: Plan, value: int, **params) -> Node:
    sel = plan.nodes[0]  # any node of the plan: its dataset and fingerprint
    return Node("chain_head", {"value": value, **params}, (), sel.dataset, sel.fingerprint)


def link(on: Node, **params) -> Node:
    return Node("chain_link", dict(params), (("head", on),), on.dataset, on.fingerprint)


def _before(units: list[list[Node]]) -> None:
    """Every node's dependencies come in an earlier unit, or earlier in its own."""
    seen: set[str] = set()
    for unit in units:
        for node in unit:
            assert all(dep.key in seen for _, dep in node.deps), node
            seen.add(node.key)


def test_batch_kinds_are_chunked_to_fill_the_slots_a_few_times_over(tmp_path):
    plan = _plan(tmp_path)
    heads = [head(plan, i) for i in range(100)]
    chain = [heads[0]]
    for _ in range(30):
        chain.append(link(chain[-1]))
    nodes = heads + chain[1:]
    units = build_units(nodes, slots=2)
    assert len(units) == 2 * CHUNKS_PER_SLOT and sum(map(len, units)) == len(nodes)
    assert {len(u) for u in units[:-1]} == {-(-len(nodes) // len(units))}
    _before(units)
    assert len(build_units(nodes, slots=1000)) == len(nodes)  # never an empty chunk
    many = [head(plan, i) for i in range(12 * MAX_CHUNKS)]
    assert len(build_units(many, slots=10_000)) == MAX_CHUNKS
    # a "task" kind's node stays alone, before the chunks reading it
    sel = plan.nodes[0]
    teacher = Node("teacher", {"stand_in": 1}, (), sel.dataset, sel.fingerprint)
    units = build_units([teacher, *[link(teacher) for _ in range(20)]], slots=1)
    assert units[0] == [teacher] and len(units) == 1 + CHUNKS_PER_SLOT
    _before(units)


def test_batched_coresets_are_each_built_once_and_equal_to_one_at_a_time(ray_session,
                                                                       tmp_path):
    plan = _plan(tmp_path)
    nodes = list(plan.missing)
    assert len(nodes) == 24 and len(build_units(nodes, slots=2)) == 8  # 8 chunks of 3
    seconds, built = build_artifacts(plan)
    assert built == 24 and not plan.missing
    alone = ArtifactStore(tmp_path / "alone")
    dataset = next(iter(plan.datasets.values()))
    for node in nodes:
        art, _ = build(node, alone, dataset)
        batched = plan.store.load(node.key)
        assert np.array_equal(batched.array("indices"), art.array("indices"))
        assert sorted(batched.files) == sorted(art.files)
        assert {k: v for k, v in batched.meta.items() if k != "select_seconds"} == \
            {k: v for k, v in art.meta.items() if k != "select_seconds"}
    again = _plan(tmp_path, out="again")
    assert not again.missing and build_artifacts(again)[1] == 0


def test_dependencies_are_built_first_across_and_within_chunks(ray_session, tmp_path):
    plan = _plan(tmp_path)
    log = str(tmp_path / "builds.log")
    heads = [head(plan, 10 * i, log=log) for i in range(10)]
    chain = [heads[3]]
    for _ in range(12):  # each link reads the one before: across chunks and within one
        chain.append(link(chain[-1], log=log))
    spokes = [link(h, log=log, spoke=True) for h in reversed(heads)]
    nodes = heads + chain[1:] + spokes
    _, built = build_artifacts(_with_nodes(plan, nodes))
    assert built == len(nodes) == 32
    keys = Path(log).read_text().split()
    assert sorted(keys) == sorted(n.key for n in nodes)  # each built once
    value = lambda n: plan.store.load(n.key).array("value").item()  # noqa: E731
    assert value(chain[-1]) == 30 + 12
    assert [value(s) for s in spokes] == [10 * i + 1 for i in reversed(range(10))]


def test_a_chunk_raises_its_failing_nodes_error(ray_session, tmp_path):
    plan = _plan(tmp_path)
    nodes = [head(plan, i, fail=i == 13) for i in range(24)]
    with pytest.raises(ValueError, match="chain_head 13 fails on purpose"):
        build_artifacts(_with_nodes(plan, nodes))
    assert not plan.store.exists(nodes[13].key)
    chunk = next(u for u in build_units(nodes, slots=2) if nodes[13] in u)
    before = chunk[:chunk.index(nodes[13])]
    assert before and all(plan.store.exists(n.key) for n in before)  # kept, committed
    assert not list(Path(plan.store.root).rglob("_LOCK"))  # every lock released


def test_two_drivers_on_one_store_build_nothing_twice(ray_session, tmp_path):
    log = str(tmp_path / "builds.log")
    plans = [_plan(tmp_path, out=f"out{i}") for i in range(2)]
    nodes = [head(plans[0], i, log=log, sleep=0.02) for i in range(40)]
    _with_nodes(plans[0], nodes)
    _with_nodes(plans[1], list(reversed(nodes)))  # other chunks, in another order
    errors: list[BaseException] = []

    def drive(plan: Plan) -> None:
        try:
            build_artifacts(plan)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=drive, args=(p,)) for p in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors and not any(t.is_alive() for t in threads)
    keys = Path(log).read_text().split()
    assert sorted(keys) == sorted(n.key for n in nodes)  # each exactly once, by either
    assert all(not p.missing for p in plans)
