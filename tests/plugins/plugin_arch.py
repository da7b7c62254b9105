"""A plugin model, in one file: a tiny MLP registered under a name no built-in has.

Used as the teacher's arch and as a β search's student arch, so every Ray process that
builds one — build tasks, teacher actors, β-search trials, student trainables — must have
imported this module (the spec's ``plugins``) before it looks the name up."""

from __future__ import annotations

import torch.nn as nn

from coretune.train.models import Size, register_model


@register_model("plugin_tiny_mlp")
def plugin_tiny_mlp(input_shape: tuple[int, int, int], num_classes: int,
                    hidden: Size = 32) -> nn.Module:
    """Flatten, one hidden layer with ReLU, a linear head (the classifier layer)."""
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU(),
                         nn.Linear(hidden, num_classes))
