"""A plugin label source, in one file: cross-entropy on the noisy labels artifact."""

from __future__ import annotations

import torch
from pydantic import Field

import tests.plugins.noisy_kind  # noqa: F401  (the kind it needs)
from coretune.spec import Frozen
from coretune.train.labels import HardLabels, LabelConfig, LabelInputs, register_label_source


class NoisyArgs(Frozen):
    rate: float = Field(0.2, gt=0, lt=1)  # share of labels flipped (read by noisy_labels)


@register_label_source("noisy", needs=("noisy_labels",), args=NoisyArgs, paper="test plugin")
def noisy(cfg: LabelConfig, inputs: LabelInputs) -> HardLabels:
    y = torch.as_tensor(inputs.artifacts["noisy_labels"], device=inputs.targets.device)
    return HardLabels(y)
