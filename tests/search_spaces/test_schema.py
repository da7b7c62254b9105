import pytest

from coretune.artifacts.graph import node_for
from coretune.search_spaces import DEMO_SPEC
from coretune.search_spaces.schema import SpecError, expand, load_spec, parse_spec
from coretune.spec import AugmentSpec


def test_demo_spec_is_valid_and_big_enough():
    spec = load_spec(DEMO_SPEC)
    trials = expand(spec)
    assert len(trials) == len(spec.selectors) * 3 * 3 * 2
    assert len(spec.selectors) >= 5 and {t.label_mode for t in trials} == {"hard", "soft", "kd"}


def test_expand_crosses_every_axis_and_grids(write_spec):
    path = write_spec(replace={"args: {score: aum, beta: 0.1}": "args: {score: aum}\n"
                               "    grid: {beta: [0.0, 0.2]}",
                               "{mode: kd, tau: 4.0, lam: 0.9}":
                                   "{mode: kd, tau: [2, 4], lam: 0.9}"})
    trials = expand(load_spec(path))
    # selectors: random + ccs×2 betas = 3; ratios 2; label settings: hard, smooth, soft, kd×2
    assert len(trials) == 3 * 2 * 5
    assert len({t.trial_id("fp") for t in trials}) == len(trials)
    assert sorted({t.beta for t in trials if t.selector == "ccs"}) == [0.0, 0.2]
    hard = [t for t in trials if t.label_mode == "hard"]
    assert all(t.teacher is None and t.tau == 1.0 and t.lam == 0.0 for t in hard)
    assert all(t.dynamics is None for t in trials if t.selector == "random")
    assert all(t.dynamics is not None for t in trials if t.selector == "ccs")
    assert all(t.teacher is not None for t in trials if t.label_mode in ("soft", "kd"))
    # the dataset's default augmentation is resolved into every recipe
    assert all(t.augment == AugmentSpec(pad=1) for t in trials)
    # label modes share one coreset per (selector, args, ratio, seed)
    ccs = [t for t in trials if t.selector == "ccs" and t.ratio == 0.05 and t.beta == 0.0]
    assert len({node_for("selection", t, "fp").key for t in ccs}) == 1 and len(ccs) == 5


@pytest.mark.parametrize("old,new,field", [
    ("name: random", "name: nonsense", "unknown selector 'nonsense'"),
    ("ratios: [0.05, 0.2]", "ratios: [0, 0.2]", "field 'ratios': ratio must be in (0, 1], got 0"),
    ("ratios: [0.05, 0.2]", "ratios: [0.05, 1.5]", "got 1.5"),
    ("{mode: soft, tau: 4.0, lam: 1.0}", "{mode: soft, tau: 0.0, lam: 1.0}",
     "tau must be > 0, got 0.0"),
    ("{mode: soft, tau: 4.0, lam: 1.0}", "{mode: soft, tau: -1, lam: 1.0}", "tau"),
    ("{mode: kd, tau: 4.0, lam: 0.9}", "{mode: kd, tau: 4.0, lam: 1.5}",
     "lam must be in [0, 1], got 1.5"),
    ("{mode: kd, tau: 4.0, lam: 0.9}", "{mode: kd, tau: 4.0, lam: -0.1}", "lam"),
    ("datasets: digits", "datasets: imagenet_typo", "unknown dataset 'imagenet_typo'"),
    ("archs: mlp", "archs: resnet9000", "unknown arch 'resnet9000'"),
    ("args: {score: aum, beta: 0.1}", "args: {scroe: aum}", "scroe"),
    ("args: {score: aum, beta: 0.1}", "args: {beta: 1.0}", "beta"),
    ("budget: {unit: iterations", "budget: {unit: hours", "budget.unit"),
    ("seeds: [0]", "seeds: [0]\nbogus_key: 1", "bogus_key"),
    ("archs: mlp", "archs: [{name: mlp, args: {widht: 3}}]", "widht"),
    ("archs: mlp", "archs: timm/does_not_exist", "timm has no model"),
    ("- mode: hard", "- mode: hardest", "unknown label mode 'hardest'"),
    ("seeds: [0]", "seeds: [0]\nmetric: val_acc", "needs a validation split"),
    ("seeds: [0]", "seeds: [0]\nmetric: test_accuracy", "metric must be"),
    ("seeds: [0]", "seeds: [0]\nplugins: [no_such_module_xyz]", "no_such_module_xyz"),
    ("datasets: digits", "datasets: [{name: fashion_mnist, test_fraction: 0.3}]",
     "canonical test split"),
])
def test_bad_specs_name_the_field_and_value(write_spec, old, new, field):
    with pytest.raises(SpecError) as err:
        load_spec(write_spec(replace={old: new}))
    assert field in str(err.value)


def test_non_mapping_and_missing_file(tmp_path):
    with pytest.raises(SpecError, match="mapping"):
        parse_spec([1, 2])
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "nope.yaml")


@pytest.mark.parametrize("path", sorted(DEMO_SPEC.parent.glob("*.yaml")), ids=lambda p: p.name)
def test_every_packaged_search_space_validates(path):
    spec = load_spec(path)
    assert spec.name == path.stem and len(expand(spec)) > 0


def test_spec_knobs_enter_the_trial(write_spec):
    path = write_spec(replace={
        "archs: mlp": "archs: [{name: mlp, args: {hidden: [64], batchnorm: false}}]",
        "datasets: digits": "datasets: [{name: digits, test_fraction: 0.3, val_fraction: 0.1}]",
        "optimizer: {lr: 0.05, batch_size: 32}":
            "optimizer: {lr: 0.05, batch_size: 32, nesterov: false, decay_norm_and_bias: true}",
        "seeds: [0]": "seeds: [0]\naugment: {pad: 0, noise_std: 0.1}\nmetric: val_nll"})
    spec = load_spec(path)
    trials = expand(spec)
    t = trials[0]
    assert t.arch_args == {"hidden": [64], "batchnorm": False}
    assert t.dataset.test_fraction == 0.3 and t.dataset.val_fraction == 0.1
    assert not t.optimizer.nesterov and t.optimizer.decay_norm_and_bias
    assert t.augment == AugmentSpec(pad=0, noise_std=0.1) and t.metric == "val_nll"
    assert spec.metric_mode == "min"
    base = expand(load_spec(write_spec(name="base")))[0]
    assert t.trial_id("fp") != base.trial_id("fp")


@pytest.mark.parametrize("args,needle", [
    ("{knn_kk: 10}", "field 'label_modes.1.args': label mode 'pseudo' takes no argument(s) "
                     "['knn_kk']"),
    ("{knn_k: ten}", "field 'label_modes.1.args': label mode 'pseudo': argument 'knn_k' "
                     "should be a valid integer (got 'ten')"),
    ("{clustering: dbscan}", "argument 'clustering' should be 'temi', 'scan' or 'kmeans'"),
])
def test_label_source_arguments_are_validated_strictly(write_spec, args, needle):
    path = write_spec(replace={"  - mode: hard\n": f"  - mode: hard\n  - {{mode: pseudo, "
                                                   f"args: {args}}}\n"})
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_label_arguments_stay_as_written_and_a_bad_one_exits_2(write_spec, tmp_path, capsys):
    from coretune.cli import main

    good = write_spec(replace={"  - mode: hard\n": "  - {mode: pseudo, args: {knn_k: 10}}\n"})
    pseudo = [t for t in expand(load_spec(good)) if t.label_mode == "pseudo"]
    assert pseudo and all(t.label_args == {"knn_k": 10} for t in pseudo)  # no defaults added
    bad = write_spec(name="bad", replace={"  - mode: hard\n": "  - {mode: hard, args: {x: 1}}\n"})
    code = main(["sweep", str(bad), "--out", str(tmp_path / "o"), "--cache",
                 str(tmp_path / "c"), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "label mode 'hard' takes no argument(s) ['x']" in err.replace("\n", " ")
