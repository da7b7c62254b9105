"""``include:`` inheritance, ``--set`` overrides and packaged names."""

from __future__ import annotations

import pytest

from coretune.search_spaces.files import apply_overrides, resolve_spec_path
from coretune.search_spaces.schema import SpecError, expand, load_spec
from tests.conftest import TINY_SPEC


def test_include_merges_mappings_and_the_including_file_wins(tmp_path):
    (tmp_path / "base.yaml").write_text(TINY_SPEC.format(name="base"))
    (tmp_path / "child.yaml").write_text(
        "include: base.yaml\nname: child\nseeds: [3, 4]\nbudget: {value: 12}\n")
    spec = load_spec(tmp_path / "child.yaml")
    assert spec.name == "child" and spec.seeds == [3, 4]
    # budget merged key by key: value from the child, unit and max_reports from the base
    assert (spec.budget.unit, spec.budget.value, spec.budget.max_reports) == (
        "iterations", 12, 3)
    assert len(expand(spec)) == 2 * 2 * 4 * 2


def test_include_cycles_and_missing_files_are_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("include: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("include: a.yaml\nname: b\n")
    with pytest.raises(SpecError, match="include cycle"):
        load_spec(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("include: nowhere.yaml\nname: c\n")
    with pytest.raises(SpecError, match="'nowhere.yaml' not found"):
        load_spec(tmp_path / "c.yaml")


def test_a_packaged_space_is_included_and_named_by_its_stem():
    assert resolve_spec_path("demo").name == "demo.yaml"
    spec = load_spec("soft_label_table1_digits")  # includes soft_label_table1.yaml
    table1 = load_spec("soft_label_table1")
    assert [s.name for s in spec.selectors] == [s.name for s in table1.selectors]
    assert spec.datasets[0].name == "digits" and table1.datasets[0].name == "cifar100"


def test_set_overrides_values_and_swaps_the_dataset_keeping_its_split(tmp_path):
    spec = load_spec("soft_label_table1", ["dataset=fashion_mnist", "budget.value=3",
                                           "seeds=[0, 1]", "arch=mlp"])
    assert spec.datasets[0].name == "fashion_mnist" and spec.datasets[0].val_fraction == 0.02
    assert spec.budget.value == 3 and spec.seeds == [0, 1] and spec.archs[0].name == "mlp"
    with pytest.raises(SpecError, match="expected key=value"):
        apply_overrides({"name": "x"}, ["budget"])
    with pytest.raises(SpecError, match="'name' is not a mapping"):
        apply_overrides({"name": "x"}, ["name.deeper=1"])
    with pytest.raises(SpecError, match="budget.value"):
        load_spec("demo", ["budget.value=-1"])


PACKAGED = sorted(p.stem for p in resolve_spec_path("demo").parent.glob("*.yaml"))


@pytest.mark.parametrize("name", PACKAGED)
def test_every_packaged_space_dry_runs_here(name, tmp_path):
    """Even without its datasets (CIFAR, ImageNet…) or its GPUs: a dry run plans it."""
    from coretune.driver.plan import describe, plan_sweep

    plan = plan_sweep(name, tmp_path / "out", tmp_path / "cache", dry_run=True)
    text = describe(plan)
    assert f"sweep {name}: " in text and len(plan.trials) > 0 and plan.nodes
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_the_readme_lists_every_packaged_space_with_its_trial_count():
    import re
    from pathlib import Path

    from coretune.search_spaces.schema import expand

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for name in PACKAGED:
        row = re.search(rf"^\| `{name}` \|.*\| (\d+) \|$", readme, re.M)
        assert row, f"README lacks {name}"
        assert int(row.group(1)) == len(expand(load_spec(name))), name
