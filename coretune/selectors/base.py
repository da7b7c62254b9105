"""Selector registry, selection context and result type.

Selectors are pure algorithms: arrays in, indices out. They import nothing from the
harness; the harness builds a :class:`SelectionContext` holding only the artifacts a
selector declared it needs and hands it over. Label-free selectors never see labels.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_type_hints

import numpy as np
from pydantic import ConfigDict, TypeAdapter, ValidationError, create_model

#: Artifacts a selector may declare it needs: the built-in ones, plus every need an
#: artifact kind registers as provided (see :func:`register_need`).
BUILTIN_NEEDS = ("labels", "scores", "embeddings", "knn", "pseudo_labels")
NEEDS: set[str] = set(BUILTIN_NEEDS)


def register_need(name: str) -> None:
    """Let selectors declare ``name`` (called when an artifact kind provides it)."""
    NEEDS.add(name)

#: The per-sample difficulty scores a training-dynamics artifact holds.
DynamicsScore = Literal["aum", "forgetting", "el2n"]

#: Orientation of training-dynamics scores: True if a higher raw value means harder.
#: AUM (Pleiss et al. 2020) is low for hard/mislabelled samples; forgetting counts
#: (Toneva et al. 2019) and EL2N (Paul et al. 2021) are high for hard samples.
HIGHER_IS_HARDER: dict[str, bool] = {
    "aum": False,
    "forgetting": True,
    "el2n": True,
    "entropy": True,
    "margin": False,
}


class UnknownSelectorError(ValueError):
    """Raised for a selector name that is not registered."""


class SelectorArgumentError(ValueError):
    """Raised for selector arguments the selector does not accept or cannot use."""


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
        if name not in HIGHER_IS_HARDER:
            raise SelectorArgumentError(
                f"unknown difficulty score {name!r}; known: {sorted(HIGHER_IS_HARDER)}"
            )
        raw = self.score(name)
        return raw if HIGHER_IS_HARDER[name] else -raw

    def rng(self, salt: int = 0) -> np.random.Generator:
        """A fresh generator determined by the context's seed (and an optional salt)."""
        return np.random.default_rng([self.seed, salt])


SelectorFn = Callable[..., Selection | np.ndarray]
NeedsSpec = Iterable[str] | Callable[[Mapping[str, Any]], Iterable[str]]
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


@dataclass(frozen=True)
class SelectorInfo:
    """A registered selector: its function, what it needs, and the paper it follows."""

    name: str
    fn: SelectorFn
    needs_spec: NeedsSpec
    label_free: bool
    paper: str

    def needs(self, args: Mapping[str, Any] | None = None) -> frozenset[str]:
        """Artifacts this selector needs under ``args``."""
        spec = self.needs_spec
        needs = frozenset(spec(dict(args or {})) if callable(spec) else spec)
        unknown = needs - NEEDS
        if unknown:
            raise ValueError(f"selector {self.name!r} declares unknown needs {sorted(unknown)}")
        if self.label_free and "labels" in needs:
            raise ValueError(f"label-free selector {self.name!r} may not need labels")
        return needs

    def parameters(self) -> dict[str, inspect.Parameter]:
        """Keyword arguments the selector accepts (beyond ``ctx`` and ``budget``)."""
        params = list(inspect.signature(self.fn).parameters.values())[2:]
        return {p.name: p for p in params if p.kind not in _VARIADIC}

    def validate_args(self, args: Mapping[str, Any]) -> None:
        """Check ``args`` against the selector's declared schema: its keyword parameters and
        their type hints (``Literal``, ``Annotated`` bounds), strictly (no coercion).

        Raises :class:`SelectorArgumentError` naming the argument and the bad value.
        """
        accepted = self.parameters()
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD
                        for p in inspect.signature(self.fn).parameters.values())
        unknown = [] if takes_any else sorted(set(args) - set(accepted))
        if unknown:
            raise SelectorArgumentError(
                f"selector {self.name!r} takes no argument(s) {unknown}; "
                f"it accepts {sorted(accepted) or 'none'}"
            )
        try:
            self._schema().validate_python({k: v for k, v in args.items() if k in accepted})
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            msg = first["msg"].replace("Input should", "should")
            raise SelectorArgumentError(f"selector {self.name!r}: argument {where!r} {msg} "
                                        f"(got {first.get('input')!r})") from None
        self.needs(args)

    def _schema(self) -> TypeAdapter:
        """A strict pydantic validator of the keyword arguments, from the signature."""
        if self.name not in _SCHEMAS:
            hints = get_type_hints(self.fn, include_extras=True)
            fields = {name: (hints.get(name, Any), p.default)
                      for name, p in self.parameters().items()}
            model = create_model(f"{self.name}_args", __config__=ConfigDict(
                strict=True, allow_inf_nan=False, extra="allow"), **fields)
            _SCHEMAS[self.name] = TypeAdapter(model)
        return _SCHEMAS[self.name]


_SCHEMAS: dict[str, TypeAdapter] = {}
_REGISTRY: dict[str, SelectorInfo] = {}


def register_selector(
    name: str, *, needs: NeedsSpec = (), label_free: bool = False, paper: str = ""
) -> Callable[[SelectorFn], SelectorFn]:
    """Register ``fn(ctx, budget, **args) -> Selection`` under ``name``.

    ``needs`` is an iterable of artifact names from :data:`NEEDS`, or a function of the
    selector's arguments returning one. ``label_free`` selectors may not need labels.
    """

    def decorate(fn: SelectorFn) -> SelectorFn:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"selector {name!r} is already registered")
        info = SelectorInfo(name=name, fn=fn, needs_spec=needs, label_free=label_free,
                            paper=paper)
        info.needs({})  # fail at import time on a bad declaration
        _REGISTRY[name] = info
        return fn

    return decorate


def get_selector(name: str) -> SelectorInfo:
    """The registered selector ``name``; :class:`UnknownSelectorError` if there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownSelectorError(
            f"unknown selector {name!r}; available: {', '.join(available_selectors())}"
        ) from None


def available_selectors() -> list[str]:
    """Names of all registered selectors, sorted."""
    return sorted(_REGISTRY)


def budget_for(num_samples: int, ratio: float) -> int:
    """Number of samples kept at selection ratio ``ratio`` (at least one)."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    return max(1, min(num_samples, int(round(ratio * num_samples))))


def select(name: str, ctx: SelectionContext, budget: int, **args: Any) -> Selection:
    """Run selector ``name`` and check its contract: exactly ``budget`` unique in-range indices.

    Artifacts the selector did not declare (under ``args``) are withheld from it, so reading
    one raises :class:`MissingArtifactError` whatever the caller put in ``ctx``; in particular
    label-free selectors never see labels. The returned indices are sorted int64; weights (if
    any) are reordered to match.
    """
    info = get_selector(name)
    info.validate_args(args)
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer):
        raise TypeError(f"budget must be an integer, got {budget!r}")
    if not 1 <= budget <= ctx.num_samples:
        raise ValueError(f"budget must be in [1, {ctx.num_samples}], got {budget}")
    needs = info.needs(args)
    withheld: dict[str, Any] = {f"{a}_": None for a in set(BUILTIN_NEEDS) - needs}
    withheld["extras_"] = {k: v for k, v in (ctx.extras_ or {}).items() if k in needs} or None
    out = info.fn(dataclasses.replace(ctx, **withheld), int(budget), **args)
    sel = out if isinstance(out, Selection) else Selection(np.asarray(out))
    raw = np.asarray(sel.indices)
    if not np.issubdtype(raw.dtype, np.integer):
        raise RuntimeError(f"selector {name!r} returned {raw.dtype} indices, expected integers")
    idx = raw.astype(np.int64).ravel()
    if idx.size != budget or np.unique(idx).size != budget:
        raise RuntimeError(
            f"selector {name!r} returned {idx.size} indices ({np.unique(idx).size} unique); "
            f"expected exactly {budget} unique"
        )
    if idx.min() < 0 or idx.max() >= ctx.num_samples:
        raise RuntimeError(f"selector {name!r} returned indices outside [0, {ctx.num_samples})")
    order = np.argsort(idx, kind="stable")
    weights = None
    if sel.weights is not None:
        weights = np.asarray(sel.weights, dtype=np.float64).ravel()
        if weights.size != idx.size:
            raise RuntimeError(f"selector {name!r} returned {weights.size} weights for "
                               f"{idx.size} indices")
        weights = weights[order]
    return Selection(indices=idx[order], weights=weights)
