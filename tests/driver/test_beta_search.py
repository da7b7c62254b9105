"""ELFS end to end through Ray Tune: β searches as Tune trials (ratios in parallel, Tune's
ASHA per search), the same β curves and β* as the in-process search, rows written, and
students trained on the ELFS coresets."""

from __future__ import annotations

import torch
import yaml

from coretune.artifacts.beta_search import SearchInputs, run_beta_search
from coretune.driver.plan import plan_sweep
from coretune.driver.run import run_sweep
from coretune.reports.results import ResultsStore

SPEC = {
    "name": "elfs_tune", "datasets": "digits", "archs": "mlp", "seeds": [0],
    "ratios": [0.1, 0.3],
    "selectors": [{"name": "elfs", "args": {
        "encoder": "pca", "encoder_args": {"dim": 16}, "knn_k": 10, "clustering": "kmeans",
        "beta_grid": [0.0, 0.1, 0.2, 0.9], "search_scheduler": "asha",
        "grace_period": 1, "reduction_factor": 2.0, "patience": 2}}],
    "label_modes": [{"mode": "hard"}, {"mode": "soft", "tau": 4.0, "lam": 1.0}],
    "budget": {"unit": "iterations", "value": 120, "max_reports": 4},
    "optimizer": {"lr": 0.05, "batch_size": 32},
    "teacher": {"arch": "mlp", "seed": 0, "optimizer": {"lr": 0.05, "batch_size": 64},
                "budget": {"value": 4}},
    "dynamics": {"arch": "mlp", "seed": 0, "optimizer": {"lr": 0.05, "batch_size": 64},
                 "budget": {"value": 3}},
}


def test_beta_search_as_tune_trials_matches_the_in_process_search(ray_session, tmp_path):
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    summary = run_sweep(tmp_path / "spec.yaml", tmp_path / "out", cache=tmp_path / "cache",
                        quiet=True)
    assert summary.status_counts == {"ok": 4}
    rows = ResultsStore(str(tmp_path / "out")).read("beta_search")
    assert set(rows["ratio"]) == {0.1, 0.3} and rows.groupby("ratio")["chosen"].sum().eq(1).all()
    assert (rows["status"] == "stopped").any()  # Tune's ASHA pruned weak β trials
    trials = ResultsStore(str(tmp_path / "out")).read("trials")
    chosen = rows[rows["chosen"]].set_index("ratio")["beta"]
    assert (trials["beta"] == trials["ratio"].map(chosen)).all()  # the rows carry β*
    plan = plan_sweep(tmp_path / "spec.yaml", tmp_path / "out2", tmp_path / "cache")
    searches = [n for n in plan.nodes if n.kind == "beta_search"]
    assert len(searches) == 2 and all(n.key in plan.cached for n in searches)
    ds = next(iter(plan.datasets.values()))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the trials (1 CPU each): the same float reductions
    try:
        _compare(plan, searches, ds, rows)
    finally:
        torch.set_num_threads(threads)


def _compare(plan, searches, ds, rows) -> None:
    for node in searches:
        deps = dict(node.deps)
        scores = plan.store.load(deps["scores"].key)
        reference = run_beta_search(SearchInputs.build(
            ds, plan.store.load(deps["labels"].key).array("labels"),
            {k: scores.array(k) for k in ("aum", "forgetting", "el2n")}, node.params))
        art = plan.store.load(node.key)
        assert art.meta["beta"] == reference.best()
        assert art.array("betas").tolist() == sorted(reference.results)
        assert art.array("heldout_acc").tolist() == [
            reference.results[b]["heldout_acc"] for b in sorted(reference.results)]
        assert art.array("stopped").tolist() == [
            reference.results[b]["status"] == "stopped" for b in sorted(reference.results)]
        mine = rows[rows["search_key"] == node.key].sort_values("beta")
        assert mine["beta"].tolist() == sorted(reference.results)
        assert mine.loc[mine["chosen"], "beta"].item() == reference.best()
        assert (mine["trials_run"] <= mine["grid_size"]).all()
