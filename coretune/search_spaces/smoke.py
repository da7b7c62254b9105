"""Smoke runs: any search space shrunk to minutes (``coretune sweep SPACE --smoke``, after
big_vision's ``runlocal``), keeping its shape.

:func:`smoke_spec` is one pure function of a validated :class:`SweepSpec`: the shrunk space,
validated again and marked ``smoke`` (an execution-only field: the shrink changes the keys,
the flag never; rows carry ``smoke = true`` and reports never set them beside the papers).
It keeps every dataset, selector (its categorical grid values too: clusterings, samplers,
scores), label mode, architecture, artifact kind, scheduler and Tune path (the β search,
students per trial, fusing) and only ever lowers what the space says, rule by rule:

- **seeds** — the first one; **ratios** — the smallest and the largest; **ipcs** — the
  smallest at most :data:`IPCS` [0] and the largest at most :data:`IPCS` [1] images per
  class (stand-in data stays small: exact per-class counts need that many per class);
- **student budget** — one epoch, :data:`STUDENT_STEPS` iterations, that many batches of
  images, or one full-data epoch (a budget axis keeps its smallest and largest value,
  each shrunk); at most :data:`STUDENT_REPORTS` reports;
- **recipes** — ``teacher:`` (and each of ``teachers:``) one epoch, ``dynamics:``
  :data:`DYNAMICS_EPOCHS` (CLD correlates loss differences over three), each selector's own
  proxy run (NFG's 10 epochs) :data:`PROXY_EPOCHS` as a ``proxy:`` override; in iterations
  or batches of images :data:`RECIPE_STEPS`; at most :data:`RECIPE_REPORTS` reports,
  ``el2n_epoch`` within the epochs, at most two dynamics ``runs``; CAD-Prune's proxy
  follows the students' budget;
- **architectures** — the same names, with the size bounds each model declares
  (``register_model(smoke=…)``: ResNets and VGG-16 at width 8, ConvNet at 32, the small
  ViT at 48 dimensions and depth 2), for students, recipes and proxies alike;
- **datasets** that are decoded at a size (folder datasets) — at most :data:`IMAGE_SIZE` px;
- **grids** — τ, λ and ε lists and numeric selector ``grid:`` lists to their smallest and
  largest value; a categorical grid (``clustering: [temi, scan, kmeans]``) is kept whole
  and written as one selector entry per value (the same trials), so each gets its own
  pipeline arguments;
- **label-free pipeline** (in a selector's args or a label source's, where it declares
  the sub-spec) — encoder input :data:`ENCODER_SIZE` px and :data:`ENCODER_EPOCHS` epoch
  for encoders that take them (EfficientNet-Lite0, ``timm/…``, SimCLR), TEMI and SCAN
  :data:`CLUSTERING_EPOCHS` epochs, the β (or offset) search grid its first two values
  (a fixed ``beta`` searches nothing);
- **resources** — one CPU per trial and no GPU fraction unless ``gpu=True`` (a smoke run
  runs on the machine at hand).

Every rule only lowers a value, so shrinking a shrunk space changes nothing.
"""

from __future__ import annotations

import inspect
from typing import Any

from coretune.search_spaces.schema import SweepSpec, expand, parse_spec
from coretune.spec import PIPELINE_SPECS, BudgetSpec, DynamicsSpec, RecipeSpec

STUDENT_STEPS = 4
STUDENT_REPORTS = 2
TEACHER_EPOCHS = 1
DYNAMICS_EPOCHS = 3
PROXY_EPOCHS = 2
RECIPE_STEPS = 8
RECIPE_REPORTS = 3
IMAGE_SIZE = 32
ENCODER_SIZE = 64
ENCODER_EPOCHS = 1
CLUSTERING_EPOCHS = 2
GRID_POINTS = 2
IPCS = (2, 5)
PROXY_RUNS = 2


def smoke_spec(spec: SweepSpec, *, gpu: bool = False) -> SweepSpec:
    """``spec`` shrunk for a smoke run (the rules above), validated and marked ``smoke``;
    ``gpu``: keep the space's GPU fractions (the machine has a GPU)."""
    data = spec.model_dump(exclude_unset=True)
    data.update(
        smoke=True, seeds=spec.seeds[:1], ratios=_ends(spec.ratios),
        datasets=[_dataset(d) for d in spec.datasets],
        archs=[{"name": a.name, "args": _arch_args(a.name, a.args)} for a in spec.archs],
        selectors=[s for sel in spec.selectors for s in _selectors(sel)],
        label_modes=[_label_mode(lm) for lm in spec.label_modes],
        budget=_budget_axis(spec), teacher=_recipe(spec.teacher, TEACHER_EPOCHS).model_dump(),
        dynamics=_recipe(spec.dynamics, DYNAMICS_EPOCHS).model_dump(),
        resources=spec.resources.model_dump() | ({} if gpu else {"gpu": 0.0,
                                                                  "teacher_gpu": 0.0})
        | {"cpu": min(spec.resources.cpu, 1.0)})
    if spec.ipcs:
        data["ipcs"] = _ipcs(spec.ipcs)
    if spec.teachers:  # a teachers axis: every teacher kept, each shrunk
        data["teachers"] = [_recipe(t, TEACHER_EPOCHS).model_dump() for t in spec.teachers]
    source = f"{spec.name} (smoke)"
    shrunk = parse_spec(data, source)
    proxies = [_proxy_override(shrunk, i) for i in range(len(shrunk.selectors))]
    if any(proxies):
        data["selectors"] = [{**sel.model_dump(exclude_unset=True), "proxy": proxy or sel.proxy}
                             for sel, proxy in zip(shrunk.selectors, proxies, strict=True)]
        shrunk = parse_spec(data, source)
    return shrunk


def _ends(values: list) -> list:
    """The smallest and the largest of ``values`` (in their order), or all if two or fewer."""
    if len(values) <= GRID_POINTS:
        return list(values)
    lo, hi = min(values), max(values)
    return [v for v in values if v in (lo, hi)][:GRID_POINTS]


def _ipcs(ipcs: list[int]) -> list[int]:
    ends = sorted(_ends(ipcs))
    if len(ends) == 1:
        return [min(ends[0], IPCS[1])]
    return list(dict.fromkeys([min(ends[0], IPCS[0]), min(ends[-1], IPCS[1])]))


def _numeric(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _dataset(d) -> dict:
    from coretune.train.data import dataset_info

    out = d.model_dump(exclude_unset=True)
    default = dataset_info(d.name).image_size
    if default is not None:
        out["image_size"] = min(d.image_size or default, IMAGE_SIZE)
    return out


def _arch_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """``args`` with the smoke bounds the model declares (its defaults where unset)."""
    from coretune.train.models import MODELS

    info = MODELS.get(name)
    if not info.smoke:
        return dict(args)
    defaults = info.arguments.defaults if info.arguments is not None else {}
    out = dict(args)
    for key, bound in info.smoke.items():
        current = out.get(key, defaults.get(key))
        if current is None or (_numeric(current) and current > bound):
            out[key] = bound
    return out


def _budget(unit: str, value: int | float, batch: int, epochs: int, steps: int
            ) -> int | float:
    """One budget value at most ``epochs`` epochs or full-data epochs, ``steps``
    iterations or batches of images."""
    cap = {"epochs": epochs, "iterations": steps, "images": steps * batch,
           "full_epochs": epochs}[unit]
    return min(value, cap)


def _budget_axis(spec: SweepSpec) -> dict:
    axis = spec.budget
    values = axis.value if isinstance(axis.value, list) else [axis.value]
    shrunk = [_budget(axis.unit, v, spec.optimizer.batch_size, 1, STUDENT_STEPS)
              for v in _ends(values)]
    shrunk = list(dict.fromkeys(shrunk))
    return {"unit": axis.unit, "value": shrunk if isinstance(axis.value, list) else shrunk[0],
            "max_reports": min(axis.max_reports, STUDENT_REPORTS)}


def _recipe(recipe: RecipeSpec, epochs: int) -> RecipeSpec:
    """A full-data run (teacher, dynamics, a selector's proxy) shrunk to ``epochs``."""
    b = recipe.budget
    value = _budget(b.unit, b.value, recipe.optimizer.batch_size, epochs, RECIPE_STEPS)
    update: dict[str, Any] = {
        "budget": BudgetSpec(unit=b.unit, value=value,
                             max_reports=min(b.max_reports, RECIPE_REPORTS)),
        "arch_args": _arch_args(recipe.arch, recipe.arch_args)}
    if isinstance(recipe, DynamicsSpec):
        update["runs"] = min(recipe.runs, PROXY_RUNS)
        if recipe.el2n_epoch is not None and b.unit == "epochs":
            update["el2n_epoch"] = min(recipe.el2n_epoch, value)
    return recipe.model_copy(update=update)


def _selectors(sel) -> list[dict]:
    """One entry per grid combination (numeric grids at their ends), each with its
    label-free pipeline shrunk."""
    from coretune.selectors import get_selector

    uses = set(get_selector(sel.name).uses)
    grid = {k: _ends(v) if all(_numeric(x) for x in v) else list(v)
            for k, v in sel.grid.items()}
    base = sel.model_dump(exclude_unset=True)
    base.pop("grid", None)
    combos = type(sel).model_construct(name=sel.name, args=sel.args, grid=grid).expand()
    return [{**base, "args": _pipeline(args, uses)} for args in combos]


def _label_mode(lm) -> dict:
    from coretune.train.labels import get_label_source

    out = lm.model_dump(exclude_unset=True)
    for knob in ("tau", "lam", "eps"):
        value = getattr(lm, knob)
        if isinstance(value, list):
            out[knob] = _ends(value)
    args_model = get_label_source(lm.mode).args
    uses = {n for n, model in PIPELINE_SPECS.items() if issubclass(args_model, model)}
    if uses and lm.args:
        out["args"] = _pipeline(lm.args, uses)
    return out


def _pipeline(args: dict[str, Any], uses: set[str]) -> dict[str, Any]:
    """Flat label-free pipeline arguments (``encoder``, ``encoder_args``, ``clustering``,
    ``clustering_args``, ``beta_grid``) shrunk, for the sub-specs the plugin uses."""
    from coretune.spec import BetaSearchSpec, ClusteringSpec, EncoderSpec
    from coretune.train import clustering as clusterings
    from coretune.train.encoders import get_encoder

    out = dict(args)
    if "encoder" in uses:
        defaults = get_encoder(out.get("encoder", EncoderSpec().encoder)).arguments.defaults
        enc = _bounded(out.get("encoder_args", {}), defaults,
                       {"size": ENCODER_SIZE, "epochs": ENCODER_EPOCHS})
        if enc != out.get("encoder_args", {}):
            out["encoder_args"] = enc
    if "clustering" in uses:
        fn = getattr(clusterings, out.get("clustering", ClusteringSpec().clustering))
        defaults = {p.name: p.default for p in inspect.signature(fn).parameters.values()}
        cl = _bounded(out.get("clustering_args", {}), defaults,
                      {"epochs": CLUSTERING_EPOCHS})
        if cl != out.get("clustering_args", {}):
            out["clustering_args"] = cl
    if "beta_search" in uses and not _numeric(out.get("beta")):
        grid = list(out.get("beta_grid", BetaSearchSpec().beta_grid))
        if len(grid) > GRID_POINTS:
            out["beta_grid"] = grid[:GRID_POINTS]
    return out


def _bounded(args: dict[str, Any], defaults: dict[str, Any], bounds: dict[str, int]
             ) -> dict[str, Any]:
    """``args`` with each bounded argument the function takes at most its bound."""
    out = dict(args)
    for key, bound in bounds.items():
        if key not in defaults:
            continue
        current = out.get(key, defaults[key])
        if current is None or current is inspect.Parameter.empty or (
                _numeric(current) and current > bound):
            out[key] = bound
    return out


def _proxy_override(spec: SweepSpec, index: int) -> dict[str, Any] | None:
    """The ``proxy:`` override that shrinks selector ``index``'s own proxy run (None: it
    declares none, or it is small already)."""
    from coretune.selectors import get_selector
    from coretune.selectors.base import proxy_recipe

    sel = spec.selectors[index]
    if get_selector(sel.name).proxy is None:
        return None
    trials = expand(spec.model_copy(update={"selectors": [sel]}))
    if not trials:
        return None
    recipe = proxy_recipe(trials[0])
    shrunk = _recipe(recipe, PROXY_EPOCHS)
    changed = {k: getattr(shrunk, k).model_dump() if k == "budget" else getattr(shrunk, k)
               for k in ("budget", "arch_args", "runs", "el2n_epoch")
               if getattr(shrunk, k) != getattr(recipe, k)}
    return {**sel.proxy, **changed} if changed else None


__all__ = ["smoke_spec"]
