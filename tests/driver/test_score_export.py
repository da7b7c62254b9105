"""Scores out (``coretune scores export``) and in (``score_file`` of a sampler)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from coretune.artifacts.graph import build
from coretune.artifacts.selection import load_selection
from coretune.cli import main
from coretune.driver.plan import plan_sweep
from coretune.driver.score_export import export_scores
from coretune.spec import BudgetSpec, DataSpec, DynamicsSpec, OptimizerSpec
from tests.conftest import TINY_SPEC

RECIPE = DynamicsSpec(arch="mlp", optimizer=OptimizerSpec(lr=0.05, batch_size=64),
                      budget=BudgetSpec(value=3))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("scores")
    paths = export_scores(root / "out", DataSpec(name="digits"), RECIPE, ["aum", "el2n"],
                          str(root / "cache"))
    return root, paths


def test_export_orients_scores_so_that_higher_is_keep(exported):
    root, (aum, el2n) = exported
    table = pq.read_table(aum)
    meta = json.loads(table.schema.metadata[b"coretune"])
    assert meta["higher"] == "keep" and meta["score"] == "aum"
    df = table.to_pandas()
    assert df["index"].tolist() == list(range(1437))
    assert np.allclose(df["score"], -df["raw"])  # low AUM is hard: kept first
    e = pq.read_table(el2n).to_pandas()
    assert np.allclose(e["score"], e["raw"]) and (e["raw"] >= 0).all()


def _spec(tmp_path, score_file: str) -> str:
    text = TINY_SPEC.format(name="filed").replace(
        "  - name: ccs\n    args: {score: aum, beta: 0.1}\n",
        f"  - name: topk\n    args: {{score_file: {score_file}}}\n")
    path = tmp_path / "filed.yaml"
    path.write_text(text)
    return str(path)


def _selection_node(plan):
    return next(p.selection for p in plan.trials if p.spec.selector == "topk")


def test_a_score_file_feeds_a_sampler_by_content_not_path(exported, tmp_path):
    root, (aum, _) = exported
    plan = plan_sweep(_spec(tmp_path, str(aum)), tmp_path / "o", tmp_path / "c")
    node = _selection_node(plan)
    assert str(aum) not in json.dumps(node.params) and "sha256:" in node.params["args"][
        "score_file"]
    moved = tmp_path / "elsewhere.parquet"
    shutil.copy(aum, moved)
    moved_plan = plan_sweep(_spec(tmp_path, str(moved)), tmp_path / "o", tmp_path / "c")
    assert _selection_node(moved_plan).key == node.key  # moving the file keeps the keys
    # build it without Ray: the coreset is the top of the file's scores (higher = keep)
    ds = next(iter(plan.datasets.values()))
    for n in node.walk():
        build(n, plan.store, ds)
    idx, _ = load_selection(plan.store.load(node.key))
    score = pq.read_table(aum).to_pandas()["score"].to_numpy()
    assert sorted(idx) == sorted(np.argsort(-score, kind="stable")[:idx.size])


def test_changed_or_malformed_score_files_are_refused_before_ray(exported, tmp_path, capsys):
    root, (aum, _) = exported
    df = pq.read_table(aum).to_pandas()
    edited = tmp_path / "edited.csv"
    df.assign(score=df["score"][::-1].to_numpy()).to_csv(edited, index=False)
    plan = plan_sweep(_spec(tmp_path, str(aum)), tmp_path / "o", tmp_path / "c")
    other = plan_sweep(_spec(tmp_path, str(edited)), tmp_path / "o", tmp_path / "c")
    assert _selection_node(plan).key != _selection_node(other).key
    short = tmp_path / "short.csv"
    df.iloc[:-3].to_csv(short, index=False)
    for path, needle in ((short, "1434 rows"), (tmp_path / "absent.csv", "not found")):
        code = main(["sweep", _spec(tmp_path, str(path)), "--out", str(tmp_path / "out"),
                     "--cache", str(tmp_path / "cache")])
        err = capsys.readouterr().err
        assert code == 2 and "score_file" in err and needle in err, err
        assert not (tmp_path / "out").exists()


def test_scores_export_command(tmp_path, capsys):
    code = main(["scores", "export", str(tmp_path / "x"), "--dataset", "digits",
                 "--score", "forgetting", "--format", "csv", "--cache", str(tmp_path / "c"),
                 "--spec", "demo", "--set", "dynamics.budget.value=2"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "x" / "scores_digits_forgetting.csv").exists()
    assert json.loads((tmp_path / "x" / "scores_digits_forgetting.json").read_text())[
        "higher"] == "keep"
    code = main(["scores", "export", str(tmp_path / "x"), "--dataset", "digits",
                 "--score", "bogus", "--cache", str(tmp_path / "c")])
    assert code == 2 and "bogus" in capsys.readouterr().err
