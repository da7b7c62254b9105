"""Smoke runs (``coretune sweep SPACE --smoke``): the shrink rule by rule, what it keeps of
every packaged space, and keys that stay put when not smoking."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from coretune.cli import main
from coretune.errors import SpecError
from coretune.search_spaces.files import packaged_spaces
from coretune.search_spaces.schema import expand, load_spec
from coretune.search_spaces.smoke import smoke_spec
from coretune.spec import DataSpec, TrialSpec

RULES = """
name: rules
datasets: [digits, tiny_imagenet, {name: imagenet1k, image_size: 16}]
archs: [resnet18, {name: vgg16, args: {width: 8}}, mlp,
        {name: vit_small, args: {depth: 4, embed_dim: 96, num_heads: 3}}]
seeds: [3, 1, 2]
ratios: [0.1, 0.01, 0.5, 0.2]
ipcs: [50, 1, 10]
selectors:
  - name: random
  - name: ccs
    args: {score: aum}
    grid: {beta: [0.0, 0.1, 0.2, 0.3]}
  - name: elfs
    args: {encoder: efficientnet_lite0}
    grid: {clustering: [temi, scan, kmeans]}
  - name: nfg
label_modes:
  - mode: hard
  - {mode: soft, tau: [1.0, 8.0, 2.0], lam: [0.25, 0.5, 1.0]}
  - {mode: smooth, eps: [0.1, 0.05, 0.2]}
  - {mode: pseudo, args: {encoder: simclr, clustering: scan}}
budget: {unit: iterations, value: [100, 1000, 10000], max_reports: 10}
optimizer: {batch_size: 64}
teacher: {arch: resnet34, budget: {unit: epochs, value: 200}}
teachers: [{arch: resnet34, budget: {unit: epochs, value: 200}}, {arch: small_cnn}]
dynamics: {arch: resnet18, runs: 5, el2n_epoch: 20, budget: {unit: epochs, value: 50}}
resources: {cpu: 4, gpu: 0.5, teacher_gpu: 0.25}
scheduler: {name: asha, grace_period: 3}
"""


@pytest.fixture(scope="module")
def rules(tmp_path_factory):
    path = tmp_path_factory.mktemp("smoke") / "rules.yaml"
    path.write_text(RULES)
    spec = load_spec(path)
    return spec, smoke_spec(spec)


def test_seeds_sizes_budgets_recipes_and_resources_shrink(rules):
    spec, s = rules
    assert s.smoke and not spec.smoke and s.name == spec.name
    assert s.seeds == [3] and s.ratios == [0.01, 0.5] and s.ipcs == [1, 5]
    assert [(d.name, d.image_size) for d in s.datasets] == [
        ("digits", None), ("tiny_imagenet", 32), ("imagenet1k", 16)]  # folder datasets only
    assert (s.budget.unit, s.budget.value, s.budget.max_reports) == ("iterations", [4], 2)
    assert (s.teacher.budget.value, s.teacher.budget.max_reports) == (1, 3)
    assert [(t.arch, t.arch_args, t.budget.value) for t in s.teachers] == [
        ("resnet34", {"width": 8}, 1), ("small_cnn", {}, 1)]  # every teacher kept
    d = s.dynamics
    assert (d.budget.unit, d.budget.value, d.runs, d.el2n_epoch) == ("epochs", 3, 2, 3)
    assert s.resources.model_dump() == {"cpu": 1.0, "gpu": 0.0, "teacher_gpu": 0.0,
                                        "teacher_placement": "auto"}
    assert smoke_spec(spec, gpu=True).resources.gpu == 0.5
    assert s.scheduler == spec.scheduler  # ASHA stays ASHA


def test_archs_keep_their_names_at_the_sizes_their_models_declare(rules):
    _, s = rules
    assert [(a.name, a.args) for a in s.archs] == [
        ("resnet18", {"width": 8}), ("vgg16", {"width": 8}), ("mlp", {}),
        ("vit_small", {"depth": 2, "embed_dim": 48, "num_heads": 3})]
    assert s.teacher.arch_args == {"width": 8} and s.dynamics.arch_args == {"width": 8}


def test_grids_keep_their_ends_and_every_categorical_value(rules):
    _, s = rules
    soft, smooth = s.label_modes[1], s.label_modes[2]
    assert (soft.tau, soft.lam, smooth.eps) == ([1.0, 8.0], [0.25, 1.0], [0.05, 0.2])
    ccs = [sel.args for sel in s.selectors if sel.name == "ccs"]
    assert ccs == [{"score": "aum", "beta": 0.0}, {"score": "aum", "beta": 0.3}]
    elfs = {sel.args["clustering"]: sel.args for sel in s.selectors if sel.name == "elfs"}
    assert set(elfs) == {"temi", "scan", "kmeans"}
    for method, args in elfs.items():  # the label-free pipeline, per clustering
        assert args["encoder_args"] == {"size": 64} and args["beta_grid"] == [0.0, 0.1]
        assert args.get("clustering_args") == (None if method == "kmeans" else {"epochs": 2})
    pseudo = s.label_modes[3].args
    assert pseudo == {"encoder": "simclr", "encoder_args": {"epochs": 1}, "clustering": "scan",
                      "clustering_args": {"epochs": 2}}


def test_a_selector_s_own_proxy_run_shrinks_through_its_override(rules):
    _, s = rules
    (nfg,) = [sel for sel in s.selectors if sel.name == "nfg"]
    assert nfg.proxy == {"budget": {"unit": "epochs", "value": 2, "max_reports": 3}}
    from coretune.selectors.base import proxy_recipe

    trial = next(t for t in expand(s) if t.selector == "nfg")
    assert proxy_recipe(trial).budget.value == 2 and proxy_recipe(trial).arch_args == {
        "width": 8}


def test_the_shrink_is_idempotent_and_keeps_every_trial_kind(rules):
    spec, s = rules
    assert smoke_spec(s) == s
    trials = expand(s)
    assert {(t.dataset.name, t.arch, t.selector, t.label_mode) for t in trials} == {
        (d.name, a.name, sel.name, lm.mode) for d in spec.datasets for a in spec.archs
        for sel in spec.selectors for lm in spec.label_modes}
    assert all(t.smoke for t in trials)
    assert len(trials) == 3 * 4 * 7 * 4 * (8 + 4)  # the 4 soft settings: 2 teachers each


@pytest.mark.parametrize("path", packaged_spaces(), ids=lambda p: p.stem)
def test_every_packaged_space_shrinks_keeping_its_shape(path):
    """Every selector (and categorical argument), label mode, arch, dataset and artifact
    kind of the space is in its smoke run's plan; one seed, at most two sizes."""
    from coretune.driver.plan import plan_sweep

    spec = load_spec(path)
    small = smoke_spec(spec)

    def shape(s):
        tmp = Path(tempfile.mkdtemp())
        plan = plan_sweep(s, tmp / "out", tmp / "cache", dry_run=True)
        trials = [p.spec for p in plan.trials]
        return ({n.kind for n in plan.nodes}, {t.selector for t in trials},
                {t.label_mode for t in trials}, {t.arch for t in trials},
                {t.dataset.name for t in trials},
                {(k, v) for t in trials for k, v in t.selector_args.items()
                 if isinstance(v, str)}), len(trials)

    (full, n_full), (smoke, n_smoke) = shape(spec), shape(small)
    assert full == smoke
    assert n_smoke <= n_full and len(small.seeds) == 1 and len(small.ratios) <= 2


def test_the_smoke_flag_enters_no_key():
    data = DataSpec(name="digits")
    trial = TrialSpec(sweep="s", dataset=data, arch="mlp", selector="random", ratio=0.1)
    assert trial.model_copy(update={"smoke": True}).trial_id("f") == trial.trial_id("f")
    assert "smoke" not in trial.model_copy(update={"smoke": True}).key_dump()


def test_a_file_or_set_cannot_claim_a_smoke_run(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(RULES + "smoke: true\n")
    with pytest.raises(SpecError, match="field 'smoke' is set by --smoke"):
        load_spec(path)
    with pytest.raises(SpecError, match="field 'smoke' is set by --smoke"):
        load_spec("demo", ["smoke=true"])


def test_the_plan_says_it_is_a_smoke_run(tmp_path, capsys):
    assert main(["sweep", "soft_label_table1", "--smoke", "--dry-run", "--out",
                 str(tmp_path / "o"), "--cache", str(tmp_path / "c")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("sweep soft_label_table1 (a smoke run: shrunk by --smoke, never "
                            "compared with the papers): 52 trials")
    assert main(["sweep", "demo", "--dry-run", "--out", str(tmp_path / "o"), "--cache",
                 str(tmp_path / "c")]) == 0
    assert "smoke" not in capsys.readouterr().out.splitlines()[0]
