"""Selector registry, selection context and result type.

Selectors are pure algorithms: arrays in, indices out. They import nothing from the
harness; the harness builds a :class:`SelectionContext` holding only the artifacts a
selector declared it needs and hands it over. Label-free selectors never see labels.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from pydantic import ValidationError

from coretune.errors import UnknownNameError
from coretune.registry import Registry, TypedArguments, origin_of
from coretune.selectors.orientation import (  # noqa: F401 - re-exported: selectors use them
    HIGHER_IS_HARDER,
    DynamicsScore,
    SelectorArgumentError,
    check_score_name,
    oriented_difficulty,
)
from coretune.spec import (
    PIPELINE_SPECS,
    DynamicsSpec,
    Frozen,
    TrialSpec,
    argument_problem,
    merge_fields,
    sub_spec,
)

#: Artifacts a selector may declare it needs: the built-in ones (fields of the context),
#: the proxy signals of :mod:`coretune.selectors.proxies` (read with ``ctx.artifact``), plus
#: every need an artifact kind registers as provided (see :func:`register_need`).
BUILTIN_NEEDS = ("labels", "scores", "embeddings", "knn", "pseudo_labels")
PROXY_NEEDS = ("features", "outputs", "grad_embed", "external_scores")
#: needs of the label-free pipeline (ELFS): encoder embeddings, their k-NN graph, clustering
#: pseudo-labels, training dynamics on those pseudo-labels, and the β search's choice
LABEL_FREE_NEEDS = ("pseudo_scores", "beta_search")
NEEDS: set[str] = set(BUILTIN_NEEDS) | set(PROXY_NEEDS) | set(LABEL_FREE_NEEDS)
#: what carries ground truth: the labels, and every signal of a proxy run trained on them
#: (a label-free selector gets training dynamics only through ``pseudo_scores``)
SUPERVISED_NEEDS = frozenset({"labels", "scores", "outputs", "features", "grad_embed",
                              "gradient_neighbours", "checkpoint_scores", "offset_search"})


def register_need(name: str) -> None:
    """Let selectors declare ``name`` (called when an artifact kind provides it)."""
    NEEDS.add(name)

class UnknownSelectorError(UnknownNameError):
    """Raised for a selector name that is not registered."""


class MissingArtifactError(RuntimeError):
    """Raised when a selector reads an artifact it did not declare (or may not see)."""


@dataclass(frozen=True)
class Selection:
    """Selected training indices (sorted, unique, int64) and optional per-sample weights."""

    indices: np.ndarray
    weights: np.ndarray | None = None


@dataclass(frozen=True)
class SelectionContext:
    """What a selector may look at. Fields left ``None`` were not declared as needed.

    ``scores`` maps a training-dynamics name (``aum``, ``forgetting``, ``el2n``, ...) to a
    float array of length ``num_samples`` in its raw orientation; use :meth:`difficulty`
    for the "higher is harder" view.
    """

    num_samples: int
    num_classes: int
    seed: int
    labels_: np.ndarray | None = field(default=None, repr=False)
    scores_: Mapping[str, np.ndarray] | None = field(default=None, repr=False)
    embeddings_: np.ndarray | None = field(default=None, repr=False)
    knn_: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    pseudo_labels_: np.ndarray | None = field(default=None, repr=False)
    extras_: Mapping[str, Any] | None = field(default=None, repr=False)
    stream: tuple[int, ...] = ()  # sub-stream of the seed (one per class of a balanced run)

    @classmethod
    def from_needs(cls, num_samples: int, num_classes: int, seed: int,
                   artifacts: Mapping[str, Any]) -> SelectionContext:
        """A context holding ``artifacts`` by need name (built-in needs in their fields)."""
        builtin = {f"{k}_": v for k, v in artifacts.items() if k in BUILTIN_NEEDS}
        extras = {k: v for k, v in artifacts.items() if k not in BUILTIN_NEEDS}
        return cls(num_samples, num_classes, seed, **builtin, extras_=extras or None)

    def artifact(self, name: str) -> Any:
        """The artifact of need ``name`` (any need, built-in or registered by a plugin)."""
        if name in BUILTIN_NEEDS:
            return self._get(name)
        value = (self.extras_ or {}).get(name)
        if value is None:
            raise MissingArtifactError(
                f"this selection context holds no {name!r}: the selector must declare "
                f"needs={{{name!r}}}")
        return value

    def __post_init__(self) -> None:
        n = self.num_samples
        per_sample = {"labels": self.labels_, "embeddings": self.embeddings_,
                      "pseudo_labels": self.pseudo_labels_}
        per_sample |= {f"scores[{k!r}]": v for k, v in (self.scores_ or {}).items()}
        per_sample |= {"knn": None if self.knn_ is None else self.knn_[0]}
        for name, value in per_sample.items():
            if value is not None and len(value) != n:
                raise ValueError(f"{name} has {len(value)} rows, expected num_samples={n}")

    def _get(self, name: str) -> Any:
        value = getattr(self, name + "_")
        if value is None:
            raise MissingArtifactError(
                f"this selection context holds no {name!r}: the selector must declare "
                f"needs={{{name!r}}} (label-free selectors are never given labels)"
            )
        return value

    @property
    def labels(self) -> np.ndarray:
        return self._get("labels")

    @property
    def embeddings(self) -> np.ndarray:
        return self._get("embeddings")

    @property
    def knn(self) -> tuple[np.ndarray, np.ndarray]:
        """(indices[N, k], distances[N, k]) of each sample's nearest neighbours."""
        return self._get("knn")

    @property
    def pseudo_labels(self) -> np.ndarray:
        return self._get("pseudo_labels")

    def score(self, name: str) -> np.ndarray:
        """Raw training-dynamics score ``name`` (one float per sample)."""
        scores = self._get("scores")
        if name not in scores:
            raise MissingArtifactError(
                f"no score {name!r} in this context; available: {sorted(scores)}"
            )
        return np.asarray(scores[name], dtype=np.float64)

    def difficulty(self, name: str) -> np.ndarray:
        """Score ``name`` oriented so that a higher value means a harder sample."""
        check_score_name(name)
        return oriented_difficulty(name, self.score(name))

    def rng(self, salt: int = 0) -> np.random.Generator:
        """A fresh generator determined by the context's seed (and an optional salt)."""
        return np.random.default_rng([self.seed, *self.stream, salt])

    def subset(self, positions: np.ndarray, stream: int) -> SelectionContext:
        """The context restricted to samples ``positions`` (renumbered 0..n−1), on its own
        random sub-stream. kNN lists keep the neighbours inside the subset (renumbered) and
        mark the others −1 with distance +inf."""
        from coretune.selectors.proxies import subset_view

        pos = np.asarray(positions, dtype=np.int64)
        n = self.num_samples
        cut = lambda a: None if a is None else a[pos]  # noqa: E731
        knn = None
        if self.knn_ is not None:
            new_id = np.full(n, -1, dtype=np.int64)
            new_id[pos] = np.arange(pos.size)
            idx, dist = self.knn_[0][pos], np.asarray(self.knn_[1][pos], dtype=np.float64)
            mapped = np.where(idx >= 0, new_id[np.maximum(idx, 0)], -1)
            knn = (mapped, np.where(mapped >= 0, dist, np.inf))
        scores = None if self.scores_ is None else {k: np.asarray(v)[pos]
                                                     for k, v in self.scores_.items()}
        extras = None if self.extras_ is None else {
            k: subset_view(v, pos, n) for k, v in self.extras_.items()}
        return SelectionContext(pos.size, self.num_classes, self.seed, cut(self.labels_),
                                scores, cut(self.embeddings_), knn, cut(self.pseudo_labels_),
                                extras, (*self.stream, int(stream)))


SelectorFn = Callable[..., Selection | np.ndarray]
NeedsSpec = Iterable[str] | Callable[[Mapping[str, Any]], Iterable[str]]
#: a selector's own proxy recipe as a function of the student it selects for
ProxyRule = Callable[[TrialSpec], DynamicsSpec]
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


@dataclass(frozen=True)
class SelectorInfo:
    """A registered selector: its function, what it needs, and the paper it follows.

    ``uses`` names the typed sub-specs of :data:`coretune.spec.PIPELINE_SPECS` (``encoder``,
    ``knn``, ``clustering``, ``beta_search``) whose settings the selector reads through
    artifacts, not as parameters: their fields are accepted as its arguments, each
    validated by its model, and ``fn`` drops them before calling the function as written.
    """

    name: str
    fn: SelectorFn
    needs_spec: NeedsSpec
    label_free: bool
    paper: str
    balanced_default: bool = False
    needs_validation: bool = False  # its proxies need the dataset's validation split
    version: int = 1  # bumped when the algorithm changes: its cached coresets are rebuilt
    uses: tuple[str, ...] = ()
    proxy: ProxyRule | None = None  # the recipe of its own proxy run (see proxy_recipe)
    #: builds new images (a distilled set: RDED, CA2D, a file), not a subset of the data:
    #: ``fn(ctx: SynthesisContext, ipc, **args)``, run by the ``synthetic_set`` kind
    synthesizes: bool = False

    def class_balanced(self, args: Mapping[str, Any] | None = None) -> bool:
        """Whether ``args`` ask for per-class budgets (else the selector's default):
        :func:`select` then runs the selector once per class on that class's slice."""
        return bool((args or {}).get("class_balanced", self.balanced_default))

    def needs(self, args: Mapping[str, Any] | None = None) -> frozenset[str]:
        """Artifacts this selector needs under ``args`` (labels too if class-balanced)."""
        spec = self.needs_spec
        needs = frozenset(spec(dict(args or {})) if callable(spec) else spec)
        if self.class_balanced(args):
            needs |= {"labels"}
        unknown = needs - NEEDS
        if unknown:
            raise ValueError(f"selector {self.name!r} declares unknown needs {sorted(unknown)}")
        if self.label_free and "labels" in needs:
            raise ValueError(f"label-free selector {self.name!r} may not need labels")
        supervised = needs & SUPERVISED_NEEDS
        if self.label_free and supervised:
            raise ValueError(f"label-free selector {self.name!r} may not need "
                             f"{sorted(supervised)}: they are computed from ground-truth labels")
        return needs

    def call(self, ctx: SelectionContext, budget: int, args: Mapping[str, Any]
             ) -> Selection | np.ndarray:
        """The selector function on ``ctx`` with ``args``, less the settings of the
        sub-specs it uses but does not take itself (they reach it through artifacts)."""
        own = self.parameters()
        drop = {f for model in self.sub_specs().values() for f in model.model_fields} - set(own)
        return self.fn(ctx, budget, **{k: v for k, v in args.items() if k not in drop})

    def parameters(self) -> dict[str, inspect.Parameter]:
        """Keyword arguments the selector function takes (beyond ``ctx`` and ``budget``)."""
        params = list(inspect.signature(self.fn).parameters.values())[2:]
        return {p.name: p for p in params if p.kind not in _VARIADIC}

    @cached_property
    def arguments(self) -> TypedArguments:
        """The strict typed model of the keyword arguments, from the signature, plus
        ``class_balanced`` with the selector's default."""
        return TypedArguments(self.fn, 2, f"selector {self.name!r}",
                              {"class_balanced": (bool, self.balanced_default)})

    def sub_specs(self) -> dict[str, type[Frozen]]:
        """The typed sub-specs the selector declared it uses, by name."""
        return {name: PIPELINE_SPECS[name] for name in self.uses}

    def sub_spec(self, name: str, args: Mapping[str, Any]) -> Frozen | None:
        """Sub-spec ``name`` from ``args`` (None if the selector does not use it)."""
        return sub_spec(PIPELINE_SPECS[name], args) if name in self.uses else None

    def accepted(self) -> list[str]:
        """Every argument name the selector accepts: its own and its sub-specs' fields."""
        names = set(self.arguments.names)
        for model in self.sub_specs().values():
            names |= set(model.model_fields)
        return sorted(names)

    def validate_args(self, args: Mapping[str, Any]) -> None:
        """Check ``args`` strictly (no coercion): the selector's keyword parameters against
        their type hints (``Literal``, ``Annotated`` bounds), the fields of each sub-spec it
        uses against that model. Raises :class:`SelectorArgumentError` naming the argument
        and the bad value (or the unknown names and the accepted ones).
        """
        what = f"selector {self.name!r}"
        if not isinstance(args, Mapping):
            raise SelectorArgumentError(f"{what}: arguments must be a mapping, got {args!r}")
        args = dict(args)
        accepted = self.accepted()
        unknown = [] if self.arguments.takes_any else sorted(set(args) - set(accepted))
        if unknown:
            raise SelectorArgumentError(f"{what} takes no argument(s) {unknown}; it accepts "
                                        f"{accepted}")
        own = set(self.arguments.names)
        self.arguments.validate({k: v for k, v in args.items() if k in own},
                                SelectorArgumentError)
        for model in self.sub_specs().values():
            try:
                sub_spec(model, args)
            except ValidationError as err:
                raise SelectorArgumentError(argument_problem(what, err)) from None
        self.needs(args)


#: methods the papers evaluate that coretune does not implement, and why (none today)
NOT_IMPLEMENTED: dict[str, str] = {}

SELECTORS: Registry[SelectorInfo] = Registry(
    "selector", UnknownSelectorError, hint=lambda name: NOT_IMPLEMENTED.get(name, ""))


def register_selector(
    name: str, *, needs: NeedsSpec = (), label_free: bool = False, paper: str = "",
    class_balanced: bool = False, needs_validation: bool = False, version: int = 1,
    uses: Iterable[str] = (), proxy: ProxyRule | None = None, synthesizes: bool = False,
    replace: bool = False,
) -> Callable[[SelectorFn], SelectorFn]:
    """Register ``fn(ctx, budget, **args) -> Selection`` under ``name``.

    ``needs`` is an iterable of artifact names from :data:`NEEDS`, or a function of the
    selector's arguments returning one. ``label_free`` selectors may not need labels.
    Every selector takes ``class_balanced`` (default ``class_balanced``): per-class budgets,
    the selector run on each class alone (see :func:`select`). ``needs_validation``:
    the selector reads validation-split signals (the spec must hold out a split).
    ``version``: bump it when the algorithm changes; it enters the key of every coreset
    the selector builds, so exactly those (and the students trained on them) are redone.
    ``uses``: the typed sub-specs (:data:`coretune.spec.PIPELINE_SPECS`) whose settings the
    selector reads through its artifacts; their fields are its arguments too, and the
    function takes one as a parameter only if it reads it itself (with the same default).
    ``proxy(trial)``: the recipe of the proxy run the selector is defined with (NFG's
    10-epoch run, CAD-Prune's compute-matched one), read by its kinds through
    :func:`proxy_recipe`; a selector without one uses the sweep's ``dynamics:``.
    ``synthesizes``: the method builds a synthetic set (``fn(ctx, ipc, **args)`` with a
    :class:`~coretune.selectors.synthesis.SynthesisContext`), sized by images per class.
    """
    uses = tuple(uses)

    def decorate(fn: SelectorFn) -> SelectorFn:
        if "class_balanced" in inspect.signature(fn).parameters:
            raise ValueError(f"selector {name!r}: class_balanced is handled by select(); "
                             "set register_selector(class_balanced=...) for its default")
        unknown = sorted(set(uses) - set(PIPELINE_SPECS))
        if unknown:
            raise ValueError(f"selector {name!r} uses unknown sub-specs {unknown}; known: "
                             f"{sorted(PIPELINE_SPECS)}")
        params = inspect.signature(fn).parameters
        for model in (PIPELINE_SPECS[u] for u in uses):
            for shared in set(model.model_fields) & set(params):  # read by both: one default
                default = model.model_fields[shared].get_default(call_default_factory=True)
                if params[shared].default != default:
                    raise ValueError(f"selector {name!r}: parameter {shared!r} defaults to "
                                     f"{params[shared].default!r}, its sub-spec "
                                     f"{model.__name__} to {default!r}")
        info = SelectorInfo(name=name, fn=fn,
                            needs_spec=needs, label_free=label_free, paper=paper,
                            balanced_default=class_balanced,
                            needs_validation=needs_validation, version=version, uses=uses,
                            proxy=proxy, synthesizes=synthesizes)
        info.needs({})  # fail at import time on a bad declaration
        SELECTORS.add(name, info, origin=origin_of(fn), replace=replace)
        return fn

    return decorate


def get_selector(name: str) -> SelectorInfo:
    """The registered selector ``name``; :class:`UnknownSelectorError` if there is none."""
    return SELECTORS.get(name)


def available_selectors() -> list[str]:
    """Names of all registered selectors, sorted."""
    return SELECTORS.names()


def proxy_recipe(trial: TrialSpec) -> DynamicsSpec | None:
    """The recipe of the selector's own proxy run for ``trial``: what the selector declares
    (``register_selector(proxy=…)``) with the spec's per-selector ``proxy:`` override
    (``trial.selector_proxy``, merged field by field) applied; None if it declares none."""
    rule = get_selector(trial.selector).proxy
    if rule is None:
        return None
    declared = rule(trial).model_dump(mode="json")
    return DynamicsSpec.model_validate(merge_fields(declared, trial.selector_proxy))
