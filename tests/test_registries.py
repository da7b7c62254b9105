"""The registry contract, timm-style: every entry of every plugin registry is checked.

Each family (selectors, artifact kinds, label sources, datasets, models, encoders, ``--log``
loggers, and augmentation ops where :mod:`coretune.train.augment` has a registry) keeps one
:class:`~coretune.registry.Registry`. For every entry: its origin module imports, it has a
docstring or a ``paper``, its name round-trips through ``get``, a duplicate from another
module is refused while ``replace=True`` inside ``temporary()`` is undone afterwards, and a
misspelt name's error says what was meant. Then each family's own promise: models build and
classify small inputs and refuse mistyped arguments; encoders embed a tiny dataset without
its labels; label sources give a finite loss from what they declare they need; datasets
read tiny files written in their own on-disk format (``tests/train/formats.py``).

The same checks run on every plugin of ``tests/plugins/``: a plugin is held to the
contract of the built-ins.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import typing
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import coretune.artifacts  # noqa: F401 - registers the built-in kinds
import coretune.selectors  # noqa: F401 - registers the built-in selectors
import coretune.train  # noqa: F401 - registers the built-in datasets
from coretune.artifacts.graph import KINDS, provider_of
from coretune.driver.loggers import LOGGERS
from coretune.errors import DataMissingError, PluginArgumentError, UnknownNameError
from coretune.registry import DuplicateNameError, Registry
from coretune.selectors.base import NEEDS, SELECTORS
from coretune.spec import DataSpec
from coretune.train.data import DATASETS, load_dataset
from coretune.train.encoders import ENCODERS, encode
from coretune.train.labels import (
    LABEL_SOURCES,
    LabelConfig,
    LabelInputs,
    TeacherSignal,
    make_label_source,
)
from coretune.train.models import MODELS, ModelArgumentError, build_model
from tests.train.formats import DECODED, WRITERS

_augment = importlib.import_module("coretune.train.augment")
AUGMENTATIONS: Registry | None = getattr(_augment, "AUGMENTATIONS", None)

REGISTRIES: dict[str, Registry] = {
    "selector": SELECTORS, "kind": KINDS, "label_source": LABEL_SOURCES,
    "dataset": DATASETS, "model": MODELS, "encoder": ENCODERS, "logger": LOGGERS,
    **({"augmentation": AUGMENTATIONS} if AUGMENTATIONS is not None else {}),
}

#: what ships today: the registries must hold at least these (no vacuous pass)
BUILTINS: dict[str, set[str]] = {
    "selector": {"random", "forgetting", "el2n", "aum", "grand", "uncertainty", "topk", "ccs",
                 "double_end", "d2", "moderate", "kcenter", "herding", "facility_location",
                 "graph_cut", "craig", "gradmatch", "dual", "cld", "elfs", "prototypicality",
                 "d2_label_free", "zcore"},
    "kind": {"teacher", "dynamics", "selection", "external_scores", "embeddings", "knn",
             "pseudo_labels", "pseudo_dynamics", "beta_search"},
    "label_source": {"hard", "smooth", "soft", "kd", "pseudo"},
    "dataset": {"digits", "fashion_mnist", "cifar10", "cifar100", "cifar100n", "stl10",
                "tiny_imagenet", "imagenet1k"},
    "model": {"mlp", "small_cnn", "resnet18", "resnet34", "resnet50", "vgg16", "vit_small"},
    "encoder": {"pixels", "pca", "efficientnet_lite0", "simclr"},
    "augmentation": {"cutout"},
    "logger": {"tensorboard", "mlflow", "wandb"},
}

#: the attribute of each family's entry holding its code (its docstring is the doc)
CODE = {"selector": "fn", "kind": "compute", "label_source": "factory", "dataset": "loader",
        "model": "builder", "encoder": "fn", "augmentation": "fn", "logger": "factory"}

#: entries known to lack a docstring and a paper (none: every built-in is documented)
UNDOCUMENTED: dict[tuple[str, str], str] = {}
#: plugins of tests/plugins known to lack a docstring and a paper on an entry
UNDOCUMENTED_PLUGINS: dict[str, str] = {}
#: plugins that fail on purpose (fault and exit-code tests): registration checks only
FAULTY_ON_PURPOSE = {"tests.plugins.broken_selector"}


def names(family: str) -> list[str]:
    """The entries of a family registered when this module is collected, except those of
    test plugins (a test may have imported one): the plugin test checks those, each once,
    so the parameters are the same whichever tests ran first."""
    reg = REGISTRIES[family]
    return [n for n in reg.names() if not reg.origin(n).startswith("tests.")]


def entries() -> list:
    """One parameter per (family, name)."""
    return [pytest.param(family, name, id=f"{family}:{name}")
            for family in REGISTRIES for name in names(family)]


def _code(family: str, entry) -> Callable:
    fn = getattr(entry, CODE[family])
    fn = getattr(fn, "func", fn)  # a functools.partial
    return inspect.unwrap(fn)


def _paper(entry) -> str:
    return str(getattr(entry, "paper", "") or "")


# ------------------------------------------------------------------ the registries
def test_registries_hold_at_least_the_builtins():
    assert set(REGISTRIES) >= set(BUILTINS) - {"augmentation"}
    for family, reg in REGISTRIES.items():
        missing = BUILTINS[family] - set(reg.names())
        assert not missing, f"{family} registry lacks built-ins {sorted(missing)}"
    assert len(entries()) >= sum(len(BUILTINS[f]) for f in REGISTRIES)


# ------------------------------------------------------------------ every entry
def check_entry(family: str, name: str) -> None:
    """Origin module imports, a docstring or paper, ``get`` round-trips."""
    reg = REGISTRIES[family]
    entry = reg.get(name)
    assert name in reg and name in reg.names()
    assert reg.get(name) is entry
    if hasattr(entry, "name"):
        assert entry.name == name
    origin = reg.origin(name)
    module_name, _, qualname = origin.partition(":")
    assert module_name and qualname, origin
    module = importlib.import_module(module_name)
    code = _code(family, entry)
    assert code.__module__ == module_name, (origin, code.__module__)
    if "<locals>" not in qualname:  # a module-level function: the origin names it
        obj = module
        for part in qualname.split("."):
            obj = getattr(obj, part)
        assert inspect.unwrap(obj) is code, origin


def documented(family: str, name: str) -> bool:
    """Whether the entry's code has a docstring or the entry a ``paper``."""
    entry = REGISTRIES[family].get(name)
    return bool((inspect.getdoc(_code(family, entry)) or "").strip()
                or _paper(entry).strip())


@pytest.mark.parametrize("family,name", entries())
def test_entry_origin_imports_and_name_round_trips(family, name):
    check_entry(family, name)


@pytest.mark.parametrize("family,name", [
    pytest.param(*p.values, id=p.id, marks=[pytest.mark.xfail(
        strict=True, reason=UNDOCUMENTED[tuple(p.values)])]) if tuple(p.values) in UNDOCUMENTED
    else p for p in entries()])
def test_entry_has_a_docstring_or_paper(family, name):
    assert documented(family, name), (
        f"{family} {name!r} ({REGISTRIES[family].origin(name)}) has neither a docstring "
        "nor a paper")


def check_duplicates(family: str, name: str) -> None:
    """Another module's registration is refused; ``replace=True`` lasts one block."""
    reg = REGISTRIES[family]
    entry, origin = reg.get(name), reg.origin(name)
    impostor = f"{__name__}:impostor_of_{name}"
    with pytest.raises(DuplicateNameError, match=origin.split(":")[0]):
        reg.add(name, entry, origin=impostor)
    assert reg.get(name) is entry and reg.origin(name) == origin
    sentinel = object()
    with reg.temporary():
        reg.add(name, entry, origin=origin)  # the same module again (a re-import): fine
        reg.add(name, sentinel, origin=impostor, replace=True)
        assert reg.get(name) is sentinel and reg.origin(name) == impostor
        reg.add(f"{name}__temporary", sentinel, origin=impostor)
    assert reg.get(name) is entry and reg.origin(name) == origin
    assert f"{name}__temporary" not in reg


@pytest.mark.parametrize("family,name", entries())
def test_duplicate_refused_and_replacement_undone(family, name):
    check_duplicates(family, name)


def _typos(name: str, reg: Registry) -> list[str]:
    typos = [name + "s"]
    if len(name) >= 4:
        typos.append(name[0] + name[2] + name[1] + name[3:])  # two letters swapped
    return [t for t in typos if t not in reg and t != name]


def check_unknown(family: str, name: str) -> None:
    reg = REGISTRIES[family]
    for typo in _typos(name, reg):
        with pytest.raises(UnknownNameError) as err:
            reg.get(typo)
        assert isinstance(err.value, reg.error) and isinstance(err.value, KeyError)
        message = str(err.value)
        assert "did you mean" in message and repr(name) in message.split("did you mean")[1], (
            message)
        assert repr(typo) in message


@pytest.mark.parametrize("family,name", entries())
def test_unknown_name_says_what_was_meant(family, name):
    check_unknown(family, name)


def _decorate(family: str, name: str, replace_: bool):
    """The family's own decorator registering ``name`` again, from this module."""
    if family == "selector":
        from coretune.selectors import register_selector

        return register_selector(name, replace=replace_)(lambda ctx, budget: np.arange(budget))
    if family == "kind":
        from coretune.artifacts import register_artifact

        return register_artifact(name, 1, params=lambda t: None, replace=replace_)(
            lambda ctx: None)
    if family == "label_source":
        from coretune.train.labels import register_label_source

        return register_label_source(name, replace=replace_)(lambda cfg, inputs: None)
    if family == "dataset":
        from coretune.spec import AugmentSpec
        from coretune.train.data import register_dataset

        return register_dataset(name, lambda root: Path("."), 2, AugmentSpec(),
                                replace=replace_)(lambda root, download, spec: None)
    if family == "model":
        from coretune.train.models import register_model

        return register_model(name, replace=replace_)(lambda shape, k: torch.nn.Flatten())
    if family == "encoder":
        from coretune.train.encoders import register_encoder

        return register_encoder(name, replace=replace_)(lambda ds, w, d: np.zeros((1, 1)))
    if family == "logger":
        from coretune.driver.loggers import ExperimentLogger, register_logger

        return register_logger(name, package=None, replace=replace_)(
            type("Impostor", (ExperimentLogger,), {}))
    from coretune.train.augment import register_augmentation

    return register_augmentation(name, replace=replace_)(lambda images, keys: images)


@pytest.mark.parametrize("family", sorted(REGISTRIES))
def test_each_family_decorator_refuses_a_duplicate_from_another_module(family):
    reg = REGISTRIES[family]
    name = sorted(BUILTINS[family] & set(reg.names()))[0]
    entry = reg.get(name)
    with reg.temporary():
        with pytest.raises(DuplicateNameError, match="already registered"):
            _decorate(family, name, replace_=False)
        assert reg.get(name) is entry
        _decorate(family, name, replace_=True)
        assert reg.get(name) is not entry and reg.origin(name).startswith(__name__)
    assert reg.get(name) is entry


def test_a_different_entry_from_a_shared_factory_origin_is_a_duplicate():
    from coretune.train.data import env_root, register_dataset
    from coretune.train.datasets.cifar import CIFAR_AUGMENT, _cifar

    assert DATASETS.origin("cifar10") == DATASETS.origin("cifar100")  # one factory
    with DATASETS.temporary():
        with pytest.raises(DuplicateNameError):
            register_dataset("cifar10", env_root("cifar10"), 100, CIFAR_AUGMENT)(
                _cifar("cifar100"))


# ------------------------------------------------------------------ models
SHAPES = [(3, 32, 32), (1, 8, 8)]
#: arguments that keep a model small on a CPU (its defaults otherwise)
MODEL_ARGS: dict[str, dict] = {}
BAD_VALUE = {"not": "an argument value"}


def check_model(name: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = build_model(name, shape, 7, MODEL_ARGS.get(name))
    assert isinstance(model, torch.nn.Module)
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(2, *shape))
    assert tuple(out.shape) == (2, 7) and out.dtype == torch.float32, (name, shape, out.shape)
    assert torch.isfinite(out).all()


def _accepts_any_mapping(annotation) -> bool:
    if annotation is typing.Any:
        return True
    text = repr(annotation).lower()
    return "dict" in text or "mapping" in text or "any" in text


def check_model_arguments(name: str) -> None:
    info = MODELS.get(name)
    with pytest.raises(ModelArgumentError, match="nonsense"):
        build_model(name, (1, 8, 8), 3, {"nonsense": 1})
    if info.arguments is None:
        return
    for arg, field in info.arguments.model.model_fields.items():
        if _accepts_any_mapping(field.annotation):
            continue
        with pytest.raises(ModelArgumentError, match=arg):
            build_model(name, (1, 8, 8), 3, {arg: BAD_VALUE})
    info.validate_args({})  # the defaults are valid


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", names("model"))
def test_model_builds_and_classifies_small_inputs(name, shape):
    check_model(name, shape)


@pytest.mark.parametrize("name", names("model"))
def test_model_refuses_mistyped_and_unknown_arguments(name):
    check_model_arguments(name)


# ------------------------------------------------------------------ encoders
#: arguments that keep an encoder quick on a CPU, and how many images it embeds
ENCODER_ARGS: dict[str, dict] = {"simclr": {"epochs": 2, "batch_size": 8},
                                 "efficientnet_lite0": {"size": 64, "batch_size": 4}}
ENCODER_IMAGES = {"efficientnet_lite0": 4}


def _tiny_digits(n: int):
    ds = load_dataset("digits")
    return replace(ds, train_x=ds.train_x[:n], train_y=ds.train_y[:n])


def check_encoder(name: str) -> None:
    info = ENCODERS.get(name)
    if info.needs_weights:
        pytest.skip(f"encoder {name!r} needs a local weights file (encoder_weights)")
    ds = _tiny_digits(ENCODER_IMAGES.get(name, 16))
    args = ENCODER_ARGS.get(name, {})
    emb = encode(name, ds, args)
    assert emb.dtype == np.float32 and emb.ndim == 2, (emb.dtype, emb.shape)
    assert emb.shape[0] == len(ds.train_x) and emb.shape[1] >= 1
    assert np.isfinite(emb).all() and emb.std() > 0
    # label-free: other labels, the same embedding
    shuffled = replace(ds, train_y=np.roll(ds.train_y, 1))
    assert np.array_equal(encode(name, shuffled, args), emb)
    with pytest.raises(PluginArgumentError, match="nonsense"):
        encode(name, ds, {"nonsense": 1})
    for arg, field in info.arguments.model.model_fields.items():
        if not _accepts_any_mapping(field.annotation):
            with pytest.raises(PluginArgumentError, match=arg):
                info.validate_args({arg: BAD_VALUE})


@pytest.mark.parametrize("name", names("encoder"))
def test_encoder_embeds_a_tiny_dataset_as_float32_rows(name):
    check_encoder(name)


# ------------------------------------------------------------------ label sources
N_LABELLED, K_CLASSES = 40, 5
#: how each need a label source may declare is built by hand (besides ``teacher``)
NEED_INPUTS: dict[str, Callable[[np.random.Generator], object]] = {
    "pseudo_labels": lambda rng: rng.integers(0, K_CLASSES, N_LABELLED),
    "noisy_labels": lambda rng: rng.integers(0, K_CLASSES, N_LABELLED),
}


def _label_args(name: str, tmp_path: Path) -> dict:
    """``args`` a test plugin's label source reads (the built-ins take their defaults)."""
    return {"nan_after": {"at": 10**6},
            "flaky": {"marker": str(tmp_path / "flaky"), "fail_times": 0}}.get(name, {})


def _teacher() -> TeacherSignal:
    fixed = torch.randn(N_LABELLED, K_CLASSES, generator=torch.Generator().manual_seed(1))

    def views(seed, epochs, indices):
        gen = torch.Generator().manual_seed(int(seed) + 7)
        return torch.randn(len(epochs), len(indices), K_CLASSES, generator=gen)

    return TeacherSignal(fixed_logits=fixed, view_logits=views)


def check_label_source(name: str, tmp_path: Path) -> None:
    info = LABEL_SOURCES.get(name)
    rng = np.random.default_rng(0)
    unknown = sorted(set(info.needs) - {"teacher"} - set(NEED_INPUTS))
    assert not unknown, f"teach this test to build needs {unknown} of label mode {name!r}"
    artifacts = {n: NEED_INPUTS[n](rng) for n in sorted(info.needs) if n != "teacher"}
    targets = torch.arange(N_LABELLED) % K_CLASSES
    teacher = _teacher() if "teacher" in info.needs else None
    cfg = LabelConfig(mode=name, tau=4.0, lam=0.5, eps=0.1, smoothing="paper",
                      args=_label_args(name, tmp_path))
    if info.needs:  # what it declares is what it gets: without one need, refused
        first = sorted(info.needs)[0]
        partial = LabelInputs(targets, None if first == "teacher" else teacher,
                              {k: v for k, v in artifacts.items() if k != first})
        with pytest.raises(ValueError, match=first):
            make_label_source(cfg, partial)
    source = make_label_source(cfg, LabelInputs(targets, teacher, artifacts))
    coreset = torch.arange(0, N_LABELLED, 2)
    source.bind(coreset, 0)
    source.begin_segment(0, np.arange(0, 2), coreset.numpy())
    pos = torch.arange(8)
    for epoch in (0, 1):
        for weights in (None, torch.full((8,), 0.5)):
            logits = torch.randn(8, K_CLASSES, requires_grad=True)
            loss = source.loss(logits, coreset[pos], pos, epoch, weights)
            assert loss.ndim == 0 and torch.isfinite(loss), (name, loss)
            loss.backward()
            assert logits.grad is not None and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("name", names("label_source"))
def test_label_source_gives_a_finite_loss_from_what_it_needs(name, tmp_path):
    check_label_source(name, tmp_path)


# ------------------------------------------------------------------ datasets
def check_dataset(name: str, tmp_path: Path, monkeypatch, image_size: int | None = None
                  ) -> None:
    monkeypatch.setenv("CORETUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CORETUNE_DATA", raising=False)
    info = DATASETS.get(name)
    writer = WRITERS.get(name)
    root, written = None, None
    if writer is not None:
        root = tmp_path / "data" / name
        root.mkdir(parents=True)
        written = writer(root, np.random.default_rng(0))
    spec = DataSpec(name=name, image_size=image_size)
    try:
        ds = load_dataset(spec, root)
    except DataMissingError as err:
        pytest.fail(f"dataset {name!r} is read from files but tests/train/formats.py has no "
                    f"writer of its format ({err})")
    assert ds.name == name and ds.num_classes == info.num_classes
    for split, x, y in (("train", ds.train_x, ds.train_y), ("test", ds.test_x, ds.test_y)):
        assert x.dtype == np.uint8 and x.ndim == 4 and x.shape[1] in (1, 3), (split, x.shape)
        assert y.dtype == np.int64 and len(y) == len(x) > 0, split
        assert 0 <= y.min() and y.max() < info.num_classes, (split, y.min(), y.max())
    assert ds.augment == info.augment_for(spec)
    if written is not None:
        assert np.array_equal(ds.train_y, written.train_y)
        assert np.array_equal(ds.test_y, written.test_y)
        if written.train_x is not None:
            assert np.array_equal(ds.train_x, written.train_x)
            assert np.array_equal(ds.test_x, written.test_x)
    if name in DECODED:
        side = image_size or 64
        assert ds.train_x.shape[1:] == (3, side, side) and ds.test_x.shape[1:] == (3, side, side)
        assert ds.augment.pad == side // 8  # the crop pad follows the decoded size
        assert list((tmp_path / "cache" / "decoded").glob("*.npy"))
    assert ds.fingerprint and load_dataset(spec, root).fingerprint == ds.fingerprint


def dataset_params() -> list:
    out = []
    for name in names("dataset"):
        out.append(pytest.param(name, None, id=name))
        if name in DECODED:
            out.append(pytest.param(name, 32, id=f"{name}-32px"))
    return out


@pytest.mark.parametrize("name,image_size", dataset_params())
def test_dataset_reads_its_own_format(name, image_size, tmp_path, monkeypatch):
    check_dataset(name, tmp_path, monkeypatch, image_size)


def test_every_dataset_read_from_files_has_a_writer():
    embedded = {"digits"}
    assert set(names("dataset")) - embedded <= set(WRITERS), (
        "add a writer of the new dataset's format to tests/train/formats.py")


# ------------------------------------------------------------------ augmentation ops
def check_augmentation(name: str) -> None:
    from coretune.train.augment import view_keys

    info = AUGMENTATIONS.get(name)
    for shape in ((6, 3, 12, 12), (6, 1, 8, 8)):
        images = torch.randint(0, 256, shape, dtype=torch.uint8,
                               generator=torch.Generator().manual_seed(0))
        before = images.clone()
        keys = view_keys(0, 1, np.arange(shape[0]))
        out = info.fn(images, keys)
        assert out.dtype == torch.uint8 and out.shape == images.shape, (name, out.shape)
        assert torch.equal(images, before), f"augmentation {name!r} changed its input"
        assert torch.equal(info.fn(images, keys), out)  # replayable from the keys
    with pytest.raises(PluginArgumentError, match="nonsense"):
        info.validate_args({"nonsense": 1})


@pytest.mark.parametrize("name", names("augmentation") if AUGMENTATIONS is not None else [])
def test_augmentation_is_a_replayable_uint8_op(name):
    check_augmentation(name)


# ------------------------------------------------------------------ artifact kinds
def check_kind(name: str) -> None:
    kind = KINDS.get(name)
    importlib.import_module(kind.module)  # workers import it before looking the kind up
    assert isinstance(kind.version, int) and kind.version >= 1
    for need in kind.provides:
        assert need in NEEDS and provider_of(need) is kind
    if getattr(kind, "executor", "task") == "tune":
        from coretune.artifacts.graph import tune_executor_of

        assert callable(tune_executor_of(kind))


@pytest.mark.parametrize("name", names("kind"))
def test_kind_module_imports_and_it_provides_its_needs(name):
    check_kind(name)


# ------------------------------------------------------------------ selectors
def check_selector(name: str) -> None:
    """The selection contract on the shared full context (``tests/selectors``)."""
    from coretune.selectors import select
    from tests.selectors.conftest import N, context_for

    for budget in (1, 37, N):
        idx = select(name, context_for(name), budget).indices
        assert idx.dtype == np.int64 and idx.size == budget and np.unique(idx).size == budget
        assert np.array_equal(idx, select(name, context_for(name), budget).indices)
    with pytest.raises(PluginArgumentError, match="nonsense"):
        select(name, context_for(name), 3, nonsense=1)


# ------------------------------------------------------------------ the plugins
PLUGINS_DIR = Path(__file__).parent / "plugins"
PLUGIN_MODULES = sorted(f"tests.plugins.{p.stem}" for p in PLUGINS_DIR.glob("*.py")
                        if p.stem != "__init__")


def _family_checks(family: str, name: str, tmp_path: Path, monkeypatch) -> None:
    tmp_path.mkdir(parents=True, exist_ok=True)
    if family == "model":
        for shape in SHAPES:
            check_model(name, shape)
        check_model_arguments(name)
    elif family == "encoder":
        check_encoder(name)
    elif family == "label_source":
        check_label_source(name, tmp_path)
    elif family == "dataset":
        check_dataset(name, tmp_path, monkeypatch)
    elif family == "augmentation":
        check_augmentation(name)
    elif family == "kind":
        check_kind(name)
    elif family == "selector":
        check_selector(name)


@pytest.mark.parametrize("module", PLUGIN_MODULES)
def test_plugin_keeps_the_contract_of_the_builtins(module, tmp_path, monkeypatch):
    """Imported inside ``temporary()`` of every registry (and forgotten after, unless it was
    imported already), each entry the plugin registers passes its family's checks."""
    loaded = set(sys.modules)
    with ExitStack() as stack:
        for reg in REGISTRIES.values():
            stack.enter_context(reg.temporary())
        importlib.import_module(module)
        mine = [(family, name) for family, reg in REGISTRIES.items() for name in reg.names()
                if reg.origin(name).partition(":")[0] == module]
        try:
            assert mine, f"plugin {module} registers nothing"
            for family, name in mine:
                check_entry(family, name)
                check_duplicates(family, name)
                check_unknown(family, name)
                if module not in FAULTY_ON_PURPOSE:
                    _family_checks(family, name, tmp_path / f"{family}-{name}", monkeypatch)
            undocumented = [f"{f} {n!r}" for f, n in mine if not documented(f, n)]
            if module in UNDOCUMENTED_PLUGINS:
                assert undocumented, f"{module} is documented now: drop it from the list"
                pytest.xfail(f"{module}: {UNDOCUMENTED_PLUGINS[module]}")
            assert not undocumented, f"{module}: no docstring nor paper on {undocumented}"
        finally:
            for new in set(sys.modules) - loaded:  # re-imported later: registers again
                if new.startswith("tests.plugins."):
                    del sys.modules[new]
