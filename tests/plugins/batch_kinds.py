"""Two cheap plugin kinds built in batches (``executor="batch"``), the second reading the
first (or itself): the artifact builder's chunks, dependency order, failures and
build-once across drivers are tested on them (``tests/driver/test_build.py``). A build
appends its key to the file ``params["log"]`` (if given), sleeps ``params["sleep"]``
seconds, and fails when ``params["fail"]`` is set."""

from __future__ import annotations

import time

import numpy as np

from coretune.artifacts import BuildContext, Built, register_artifact


def _logged(ctx: BuildContext) -> None:
    if ctx.params.get("log"):
        with open(ctx.params["log"], "a") as fh:
            fh.write(f"{ctx.node.key}\n")
    time.sleep(float(ctx.params.get("sleep", 0.0)))


@register_artifact("chain_head", version=1, params=lambda t: None, executor="batch")
def chain_head(ctx: BuildContext) -> Built:
    """An array holding ``params["value"]``."""
    _logged(ctx)
    if ctx.params.get("fail"):
        raise ValueError(f"chain_head {ctx.params['value']} fails on purpose")
    return Built({"value": np.array([ctx.params["value"]])}, {})


@register_artifact("chain_link", version=1, params=lambda t: None, executor="batch")
def chain_link(ctx: BuildContext) -> Built:
    """Its dependency's (``head``) value plus one."""
    _logged(ctx)
    return Built({"value": ctx.deps["head"].array("value") + 1}, {})
