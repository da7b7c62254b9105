"""A plugin label source, in one file: cross-entropy on the noisy labels artifact."""

from __future__ import annotations

import torch

import tests.plugins.noisy_kind  # noqa: F401  (the kind it needs)
from coretune.train.labels import HardLabels, LabelConfig, LabelInputs, register_label_source


@register_label_source("noisy", needs=("noisy_labels",), paper="test plugin")
def noisy(cfg: LabelConfig, inputs: LabelInputs) -> HardLabels:
    y = torch.as_tensor(inputs.artifacts["noisy_labels"], device=inputs.targets.device)
    return HardLabels(y)
