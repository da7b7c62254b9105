"""A plugin encoder, in one file: a seeded Gaussian random projection of the pixels.

Johnson–Lindenstrauss (1984; Dasgupta & Gupta 2003): ``x ↦ Rᵀx / √dim`` with
``R ~ N(0, 1)^{P×dim}`` keeps pairwise distances within 1 ± ε with high probability for
``dim = O(log N / ε²)``, so k-NN graphs and clusterings of the projection approximate
those of the pixels at a fraction of the dimension. Label-free: only the images enter.

Cost: one ``[N, P] × [P, dim]`` product (in batches of 4,096 images, so memory stays
O(batch · P) beyond the output).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
from annotated_types import Ge

from coretune.train.data import ImageDataset
from coretune.train.encoders import register_encoder


@register_encoder("random_projection",
                  paper="Johnson & Lindenstrauss 1984; Dasgupta & Gupta 2003 (Gaussian "
                        "random projection)")
def random_projection(ds: ImageDataset, weights: Path | None, device: str,
                      dim: Annotated[int, Ge(1)] = 32, seed: Annotated[int, Ge(0)] = 0
                      ) -> np.ndarray:
    """``float32 [N, dim]``: the centred pixels in [0, 1] times a seeded Gaussian matrix."""
    x = ds.train_x.reshape(len(ds.train_x), -1)
    proj = np.random.default_rng([seed, 0x5EED]).standard_normal((x.shape[1], dim))
    proj = (proj / np.sqrt(dim)).astype(np.float32)
    mean = x.mean(axis=0, dtype=np.float64).astype(np.float32) / 255.0
    out = np.empty((len(x), dim), dtype=np.float32)
    for start in range(0, len(x), 4096):
        block = x[start:start + 4096].astype(np.float32) / 255.0 - mean
        out[start:start + 4096] = block @ proj
    return out
