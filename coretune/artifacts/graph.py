"""The artifact graph: kinds registered with their version, dependencies and resources.

A kind is one compute function and one decorator::

    @register_artifact("teacher", version=1, params=lambda t: ..., provides={"teacher"})
    def teacher(ctx: BuildContext) -> Built: ...

``params(trial)`` is the part of a :class:`~coretune.spec.TrialSpec` the kind depends on
(None: the trial does not use this kind), ``deps(trial)`` names the kinds it is built from,
``provides`` the needs (of selectors and label sources) it satisfies, and ``context`` what a
consumer is handed for such a need. A :class:`Node` is one artifact to build; its key is
:func:`coretune.spec.content_key` of (kind, version, params, dependency keys, the dataset's
fingerprint), so bumping a kind's version changes its key and every key downstream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
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

    def view(self, need: str, art: Artifact) -> Any:
        """What a consumer of ``need`` is handed: the need's own view, the kind's
        ``context``, or the artifact itself."""
        fn = self.views.get(need, self.context)
        return art if fn is None else fn(art)


class UnknownKindError(UnknownNameError):
    """An artifact kind or a need that nothing registered provides."""


KINDS: Registry[ArtifactKind] = Registry("artifact kind", UnknownKindError)


def register_artifact(kind: str, version: int, *,
                      params: Callable[[TrialSpec], Mapping[str, Any] | None],
                      deps: Callable[[TrialSpec], Mapping[str, str]] | None = None,
                      provides: Iterable[str] | Mapping[str, Callable[[Artifact], Any]] = (),
                      context: Callable[[Artifact], Any] | None = None,
                      gpu: bool = False,
                      local: Callable[[TrialSpec], Mapping[str, Any]] | None = None,
                      check: Callable[[Node, ImageDataset], None] | None = None,
                      replace: bool = False) -> Callable:
    """Register ``compute(ctx: BuildContext) -> Built`` as artifact kind ``kind``.

    ``provides`` names the needs the kind satisfies; as a mapping it gives each need its
    own view of the artifact (else ``context`` is the view of all). ``local(trial)`` gives
    machine-local inputs (file paths) handed to the build as ``ctx.local`` but kept out of
    the key: ``params`` must carry their content (a checksum) instead. ``check(node,
    dataset)`` validates such inputs when the sweep is planned, before Ray starts.
    """
    views = dict(provides) if isinstance(provides, Mapping) else {}

    def decorate(fn: Callable[[BuildContext], Built]) -> Callable[[BuildContext], Built]:
        for need in provides:
            other = next((k for k in KINDS.entries() if need in k.provides and k.name != kind),
                         None)
            if other is not None:
                raise DuplicateNameError(f"need {need!r} is already provided by kind "
                                         f"{other.name!r}")
        KINDS.add(kind, ArtifactKind(kind, int(version), fn, params, deps or (lambda t: {}),
                                     frozenset(provides), context, gpu, fn.__module__, views,
                                     local, check), origin=origin_of(fn), replace=replace)
        from coretune.selectors.base import register_need

        for need in provides:
            register_need(need)
        return fn

    return decorate


def get_kind(name: str) -> ArtifactKind:
    return KINDS.get(name)


def available_kinds() -> list[str]:
    return KINDS.names()


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
