"""NFG in a packaged Table 1 sweep is planned on its own 10-epoch proxy run, not on the
sweep's 200-epoch ``dynamics:`` recipe that the other selectors share."""

from __future__ import annotations

import pytest

from coretune.driver.plan import plan_sweep


@pytest.mark.parametrize("space", ["soft_label_table1_digits", "soft_label_table2"])
def test_nfg_in_table1_builds_its_own_ten_epoch_proxy(space, tmp_path):
    plan = plan_sweep(space, tmp_path / "o", tmp_path / "c", dry_run=True)
    nfg = [t for t in plan.trials if t.spec.selector == "nfg"]
    others = [t for t in plan.trials if t.spec.selector == "forgetting"]
    assert nfg and others
    proxies = {n.key: n for t in nfg for n in t.selection.walk()
               if n.kind == "gradient_neighbours"}
    assert len(proxies) == 1  # one proxy for every seed, ratio and label mode
    (proxy,) = proxies.values()
    recipe = proxy.params["recipe"]
    assert recipe["budget"]["value"] == 10 and recipe["budget"].get("unit", "epochs") == \
        "epochs"
    assert recipe["optimizer"]["batch_size"] == 32 and recipe["optimizer"]["lr"] == 0.1
    assert recipe["optimizer"]["momentum"] == 0.0 and proxy.params["radius"] == 0.2
    assert not any(n.kind == "dynamics" for t in nfg for n in t.selection.walk())
    shared = {n.params["budget"]["value"] for t in others for n in t.selection.walk()
              if n.kind == "dynamics"}
    assert shared and 10 not in shared  # the sweep's recipe is not NFG's
