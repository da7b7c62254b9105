"""The artifact graph: kinds registered with their version, dependencies and resources.

A kind is one compute function and one decorator::

    @register_artifact("teacher", version=1, params=lambda t: ..., provides={"teacher"})
    def teacher(ctx: BuildContext) -> Built: ...

``params(trial)`` is the part of a :class:`~coretune.spec.TrialSpec` the kind depends on
(None: the trial does not use this kind), ``deps(trial)`` names the kinds it is built from,
``provides`` the needs (of selectors and label sources) it satisfies, and ``context`` what a
consumer is handed for such a need. A kind also declares what the generic layers need to
know of it, so that none of them names a kind: ``recipes`` (the :class:`TrialSpec` recipe
fields its params read — the schema keeps a recipe only where some kind reads it),
``executor`` (``"task"``: one Ray task per node; ``"batch"``: many cheap nodes per Ray task,
in chunks committed together; ``"tune"``: the kind's nodes run as one Tune experiment, the
``module:function`` given as ``tune_executor``) and ``results_table``
(a result table the driver fills with ``results_rows`` of each built node). A :class:`Node`
is one artifact to build; its key is
:func:`coretune.spec.content_key` of (kind, version, params, dependency keys, the dataset's
fingerprint), so bumping a kind's version changes its key and every key downstream.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from coretune.artifacts.store import Artifact, Built
from coretune.errors import UnknownNameError
from coretune.registry import DuplicateNameError, Registry, origin_of
from coretune.spec import DataSpec, TrialSpec, content_key
from coretune.train.data import ImageDataset


@dataclass(frozen=True)
class BuildContext:
    """What a compute function gets: its params, built dependencies, the data, a device."""

    params: Mapping[str, Any]
    deps: Mapping[str, Artifact]
    dataset: ImageDataset
    device: str = "cpu"
    node: Node | None = None

    @property
    def local(self) -> Mapping[str, Any]:
        """Machine-local inputs of the node (paths), not part of its key."""
        return {} if self.node is None else self.node.local


@dataclass(frozen=True)
class ArtifactKind:
    name: str
    version: int
    compute: Callable[[BuildContext], Built]
    params: Callable[[TrialSpec], Mapping[str, Any] | None]
    deps: Callable[[TrialSpec], Mapping[str, str]]
    provides: frozenset[str]
    context: Callable[[Artifact], Any] | None
    gpu: bool  # wants the sweep's GPU share when built
    module: str  # imported by workers before they look the kind up
    views: Mapping[str, Callable[[Artifact], Any]] = field(default_factory=dict)
    local: Callable[[TrialSpec], Mapping[str, Any]] | None = None
    check: Callable[[Node, ImageDataset], None] | None = None  # at plan time, before Ray
    recipes: tuple[str, ...] = ()  # TrialSpec recipe fields its params read
    executor: str = "task"  # "task" (a Ray task per node), "batch" (chunks), "tune"
    tune_executor: str | None = None  # "module:function" running its nodes, if "tune"
    results_table: str | None = None  # a result table written from its built nodes
    results_key: str | None = None  # the table's column holding the node's key
    results_rows: Callable[[str, Node, Artifact], list[dict]] | None = None

    def view(self, need: str, art: Artifact) -> Any:
        """What a consumer of ``need`` is handed: the need's own view, the kind's
        ``context``, or the artifact itself."""
        fn = self.views.get(need, self.context)
        return art if fn is None else fn(art)


class UnknownKindError(UnknownNameError):
    """An artifact kind or a need that nothing registered provides."""


KINDS: Registry[ArtifactKind] = Registry("artifact kind", UnknownKindError)

#: how a kind's nodes are built: one Ray task each; many per Ray task, in chunks (cheap and
#: numerous nodes: coresets); or all together as one Tune experiment
EXECUTORS = ("task", "batch", "tune")


def register_artifact(kind: str, version: int, *,
                      params: Callable[[TrialSpec], Mapping[str, Any] | None],
                      deps: Callable[[TrialSpec], Mapping[str, str]] | None = None,
                      provides: Iterable[str] | Mapping[str, Callable[[Artifact], Any]] = (),
                      context: Callable[[Artifact], Any] | None = None,
                      gpu: bool = False,
                      local: Callable[[TrialSpec], Mapping[str, Any]] | None = None,
                      check: Callable[[Node, ImageDataset], None] | None = None,
                      recipes: Iterable[str] = (),
                      executor: str = "task",
                      tune_executor: str | None = None,
                      results_table: str | None = None,
                      results_key: str | None = None,
                      results_rows: Callable[[str, Node, Artifact], list[dict]] | None = None,
                      replace: bool = False) -> Callable:
    """Register ``compute(ctx: BuildContext) -> Built`` as artifact kind ``kind``.

    ``provides`` names the needs the kind satisfies; as a mapping it gives each need its
    own view of the artifact (else ``context`` is the view of all). ``local(trial)`` gives
    machine-local inputs (file paths) handed to the build as ``ctx.local`` but kept out of
    the key: ``params`` must carry their content (a checksum) instead. ``check(node,
    dataset)`` validates such inputs when the sweep is planned, before Ray starts.

    The declarations the generic layers read instead of naming kinds: ``recipes`` lists
    the :class:`TrialSpec` recipe fields ``params`` reads (``"teacher"``, ``"dynamics"``;
    a recipe no kind of a trial's graph declares is dropped from the trial, so a kind that
    reads one must declare it). ``executor="batch"`` has the driver build the kind's nodes
    in chunks, many per Ray task (:func:`build_batch`), for kinds whose nodes are many and
    cheap. ``executor="tune"`` has the driver build all missing nodes
    of the kind together with ``tune_executor``, a ``"module:function"`` path (imported
    only then: the executor needs Ray, this layer does not) called as ``fn(nodes,
    datasets, store, resources, plugins, tune_storage)``; it commits every node.
    ``results_table`` names a result table the driver fills, for each node of the plan
    whose key is not yet in the table's ``results_key`` column, with ``results_rows(sweep,
    node, artifact)``.
    """
    views = dict(provides) if isinstance(provides, Mapping) else {}
    recipes = tuple(recipes)
    if unknown := sorted(set(recipes) - set(TrialSpec.model_fields)):
        raise ValueError(f"artifact kind {kind!r}: recipes {unknown} are not TrialSpec fields")
    if executor not in EXECUTORS:
        raise ValueError(f"artifact kind {kind!r}: executor must be one of {EXECUTORS}, "
                         f"got {executor!r}")
    if (executor == "tune") != (tune_executor is not None):
        raise ValueError(f"artifact kind {kind!r}: tune_executor ('module:function') is "
                         "given exactly when executor is 'tune'")
    if (results_table is None) != (results_rows is None) or (
            (results_table is None) != (results_key is None)):
        raise ValueError(f"artifact kind {kind!r}: results_table, results_key and "
                         "results_rows go together")

    def decorate(fn: Callable[[BuildContext], Built]) -> Callable[[BuildContext], Built]:
        for need in provides:
            other = next((k for k in KINDS.entries() if need in k.provides and k.name != kind),
                         None)
            if other is not None:
                raise DuplicateNameError(f"need {need!r} is already provided by kind "
                                         f"{other.name!r}")
        KINDS.add(kind, ArtifactKind(kind, int(version), fn, params, deps or (lambda t: {}),
                                     frozenset(provides), context, gpu, fn.__module__, views,
                                     local, check, recipes, executor, tune_executor,
                                     results_table, results_key, results_rows),
                  origin=origin_of(fn), replace=replace)
        from coretune.selectors.base import register_need

        for need in provides:
            register_need(need)
        return fn

    return decorate


def get_kind(name: str) -> ArtifactKind:
    return KINDS.get(name)


def available_kinds() -> list[str]:
    return KINDS.names()


def tune_executor_of(kind: ArtifactKind) -> Callable[..., None]:
    """The function that builds ``kind``'s nodes as one Tune experiment (imported now)."""
    import importlib

    if kind.tune_executor is None:
        raise ValueError(f"artifact kind {kind.name!r} is built by Ray tasks, not by Tune")
    module, _, name = kind.tune_executor.partition(":")
    return getattr(importlib.import_module(module), name)


def provider_of(need: str) -> ArtifactKind:
    """The kind that builds what ``need`` names (a selector's or label source's need)."""
    for kind in KINDS.entries():
        if need in kind.provides:
            return kind
    raise UnknownKindError(f"nothing provides {need!r}: no artifact kind is registered for it "
                           f"(kinds: {', '.join(available_kinds())})")


@dataclass(frozen=True)
class Node:
    """One artifact of the graph: a kind applied to params, dependencies and a dataset."""

    kind: str
    params: Mapping[str, Any]
    deps: tuple[tuple[str, Node], ...]
    dataset: DataSpec
    fingerprint: str
    key: str = field(default="", compare=False)
    local: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        version = get_kind(self.kind).version
        dep_keys = {name: dep.key for name, dep in self.deps}
        object.__setattr__(self, "key", content_key(self.kind, version, self.params, dep_keys,
                                                    self.fingerprint))

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Node) and other.key == self.key

    def walk(self) -> list[Node]:
        """This node and everything it depends on, dependencies first, each once."""
        out: dict[str, Node] = {}

        def visit(node: Node) -> None:
            for _, dep in node.deps:
                visit(dep)
            out.setdefault(node.key, node)

        visit(self)
        return list(out.values())


def node_for(kind: str, trial: TrialSpec, fingerprint: str) -> Node:
    """The node of ``kind`` a trial uses (with its dependencies, recursively)."""
    info = get_kind(kind)
    params = info.params(trial)
    if params is None:
        raise UnknownKindError(f"trial does not configure artifact kind {kind!r}")
    deps = tuple(sorted((name, node_for(dep_kind, trial, fingerprint))
                        for name, dep_kind in info.deps(trial).items()))
    local = dict(info.local(trial)) if info.local is not None else {}
    return Node(kind, dict(params), deps, trial.dataset, fingerprint, local=local)


def need_nodes(needs: Iterable[str], trial: TrialSpec, fingerprint: str) -> dict[str, Node]:
    """The node providing each need (``labels`` come with the dataset, not the graph)."""
    return {need: node_for(provider_of(need).name, trial, fingerprint)
            for need in sorted(set(needs) - {"labels"})}


def build(node: Node, store, dataset: ImageDataset, device: str = "cpu"
          ) -> tuple[Artifact, bool]:
    """Build ``node`` once in ``store`` (its dependencies must be committed already)."""
    deps = {name: store.load(dep.key) for name, dep in node.deps}
    ctx = BuildContext(node.params, deps, dataset, device, node)
    kind = get_kind(node.kind)
    return store.build_once(node.key, lambda: kind.compute(ctx))


def build_batch(nodes: Sequence[Node], store, datasets: Mapping[str, ImageDataset],
                device: str = "cpu") -> list[tuple[str, bool, float]]:
    """Build ``nodes`` (dependencies first; what they need from outside the list committed
    already) in ``store``, each exactly once, committed together by one
    :meth:`~coretune.artifacts.store.ArtifactStore.batch` (one flush, not fsyncs per file);
    a node that reads one still staged commits the batch first. ``datasets`` by
    fingerprint; a dependency is loaded (and verified) once. Returns (key, built here,
    seconds) per node; a failing node raises its error, the nodes before it committed."""
    out, loaded = [], {}
    with store.batch() as batch:
        for node in nodes:
            started = time.perf_counter()
            if any(dep.key in batch.pending for _, dep in node.deps):
                batch.commit()
            for _, dep in node.deps:
                if dep.key not in loaded:
                    loaded[dep.key] = store.load(dep.key)
            ctx = BuildContext(node.params, {name: loaded[dep.key] for name, dep in node.deps},
                               datasets[node.fingerprint], device, node)
            kind = get_kind(node.kind)
            _, built = batch.build_once(node.key, lambda k=kind, c=ctx: k.compute(c))
            out.append((node.key, built, time.perf_counter() - started))
    return out
