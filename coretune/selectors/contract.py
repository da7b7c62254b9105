"""The selection contract: :func:`select` runs a registered selector on a context, withholds
what it did not declare, splits the budget per class when asked, and checks its output."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from coretune.selectors.base import (
    BUILTIN_NEEDS,
    Selection,
    SelectionContext,
    SelectorInfo,
    get_selector,
)


def budget_for(num_samples: int, ratio: float) -> int:
    """Number of samples kept at selection ratio ``ratio`` (at least one)."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    return max(1, min(num_samples, int(round(ratio * num_samples))))


def select(name: str, ctx: SelectionContext, budget: int, **args: Any) -> Selection:
    """Run selector ``name`` and check its contract: exactly ``budget`` unique in-range indices.

    Artifacts the selector did not declare (under ``args``) are withheld from it, so reading
    one raises :class:`MissingArtifactError` whatever the caller put in ``ctx``; in particular
    label-free selectors never see labels. With ``class_balanced`` the budget is split over
    the classes as evenly as their sizes allow (:func:`balanced_quotas`) and the selector runs
    on each class's slice of the context. The returned indices are sorted int64; weights (if
    any) are reordered to match.
    """
    info = get_selector(name)
    if info.synthesizes:
        raise ValueError(f"{name!r} builds a synthetic set, not a coreset: the "
                         "synthetic_set kind runs it")
    info.validate_args(args)
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer):
        raise TypeError(f"budget must be an integer, got {budget!r}")
    if not 1 <= budget <= ctx.num_samples:
        raise ValueError(f"budget must be in [1, {ctx.num_samples}], got {budget}")
    needs = info.needs(args)
    withheld: dict[str, Any] = {f"{a}_": None for a in set(BUILTIN_NEEDS) - needs}
    withheld["extras_"] = {k: v for k, v in (ctx.extras_ or {}).items() if k in needs} or None
    ctx = dataclasses.replace(ctx, **withheld)
    balanced = info.class_balanced(args)
    args = {k: v for k, v in args.items() if k != "class_balanced"}
    if balanced:
        idx, weights = _per_class(info, ctx, int(budget), args)
    else:
        idx, weights = _checked(info, ctx, int(budget), args)
    order = np.argsort(idx, kind="stable")
    return Selection(indices=idx[order], weights=None if weights is None else weights[order])


def _per_class(info: SelectorInfo, ctx: SelectionContext, budget: int, args: dict
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """Run the selector on each class alone with its share of the budget."""
    from coretune.selectors.random_sampling import balanced_quotas

    classes, inverse = np.unique(ctx.labels, return_inverse=True)
    inverse = inverse.ravel()
    quotas = balanced_quotas(np.bincount(inverse, minlength=classes.size), budget,
                             ctx.rng(0x5EED))
    parts: list[tuple[np.ndarray, np.ndarray | None]] = []
    for c in np.flatnonzero(quotas):  # one call per class, not per sample
        members = np.flatnonzero(inverse == c)
        idx, w = _checked(info, ctx.subset(members, int(classes[c])), int(quotas[c]), args)
        parts.append((members[idx], w))
    idx = np.concatenate([p[0] for p in parts])
    if all(p[1] is None for p in parts):
        return idx, None
    return idx, np.concatenate([np.ones(p[0].size) if p[1] is None else p[1] for p in parts])


def _checked(info: SelectorInfo, ctx: SelectionContext, budget: int, args: dict
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """One call of the selector function, its output checked against the contract."""
    name = info.name
    out = info.call(ctx, budget, args)
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
    weights = None
    if sel.weights is not None:
        weights = np.asarray(sel.weights, dtype=np.float64).ravel()
        if weights.size != idx.size:
            raise RuntimeError(f"selector {name!r} returned {weights.size} weights for "
                               f"{idx.size} indices")
        if not (np.isfinite(weights).all() and (weights >= 0).all()):
            raise RuntimeError(f"selector {name!r} returned weights that are negative or "
                               "not finite")
    return idx, weights
