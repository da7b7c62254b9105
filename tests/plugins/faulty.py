"""Label sources that misbehave on purpose, for the fault tests (one file, two decorators)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from coretune.spec import Frozen
from coretune.train.labels import HardLabels, LabelConfig, LabelInputs, register_label_source


class _NanAfter(HardLabels):
    def __init__(self, targets, at: int):
        super().__init__(targets)
        self.at, self.calls = at, 0

    def loss(self, logits, idx, pos, epoch, weights):
        loss = super().loss(logits, idx, pos, epoch, weights)
        self.calls += 1
        return loss * float("nan") if self.calls > self.at else loss


class NanAfterArgs(Frozen):
    at: int = Field(ge=0)  # steps before the loss turns NaN


class FlakyArgs(Frozen):
    fail_times: int = Field(ge=0)  # attempts that raise before one succeeds
    marker: str  # a file counting the attempts


@register_label_source("nan_after", args=NanAfterArgs,
                       paper="test plugin: the loss turns NaN after `at` steps")
def nan_after(cfg: LabelConfig, inputs: LabelInputs) -> HardLabels:
    return _NanAfter(inputs.targets, int(cfg.args["at"]))


@register_label_source("flaky", args=FlakyArgs,
                       paper="test plugin: raises the first `fail_times` times")
def flaky(cfg: LabelConfig, inputs: LabelInputs) -> HardLabels:
    marker = Path(cfg.args["marker"])
    attempts = int(marker.read_text()) if marker.exists() else 0
    marker.write_text(str(attempts + 1))
    if attempts < int(cfg.args["fail_times"]):
        raise RuntimeError(f"flaky label source: attempt {attempts + 1} fails on purpose")
    return HardLabels(inputs.targets)
