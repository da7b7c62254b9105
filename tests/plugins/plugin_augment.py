"""A plugin augmentation op, in one file: invert the pixels (255 − x) of a key-chosen share
of the views. Replayable (a pure function of each view's key), vectorised, any device."""

from __future__ import annotations

from typing import Annotated

import numpy as np
import torch
from annotated_types import Interval

from coretune.train.augment import host_to_device, key_uniform, register_augmentation


@register_augmentation("invert", paper="test plugin: pixel inversion of a share of the views")
def invert(images: torch.Tensor, keys: np.ndarray,
           share: Annotated[float, Interval(ge=0, le=1)] = 0.5) -> torch.Tensor:
    chosen = host_to_device(key_uniform(keys) < share, images.device)
    return torch.where(chosen[:, None, None, None], 255 - images, images)
