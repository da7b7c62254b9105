"""τ-independent top-k teacher logits: FKD's compressed soft labels.

FKD (Shen & Xing, "A Fast Knowledge Distillation Framework for Visual Recognition", ECCV
2022) stores only each image's top-k teacher outputs and spreads the remaining mass evenly
over the other classes. :class:`TopKLogits` keeps, per row, the top-k *logits* (float16),
their class indices (int16 when C ≤ 32767, else int32) and one float32, the log-sum-exp at
τ = 1 of the other m = C − k logits, ``LSE_rest``. :meth:`TopKLogits.dense` gives back
``[…, C]`` logits: the top-k positions hold their logits and every other position holds

    z_rest = LSE_rest − log m,

the one value that m equal logits must take to carry the same total mass exp(LSE_rest).
Storing logits rather than probabilities leaves τ free: any temperature is applied later.

**The approximation, exactly.** For softmax(z / τ) of the dense logits:

- the ratios among the top-k entries, exp((z_i − z_j) / τ), are exact at every τ (up to
  float16 rounding of the stored logits);
- the rest's total mass, m·exp(z_rest) = exp(LSE_rest), is exact at τ = 1, so there the
  top-k probabilities are exact too;
- at τ ≠ 1 the rest's mass m·exp(z_rest / τ) = m·(mean_i e^{z_i})^{1/τ} is, by the
  power-mean inequality (M_p ≤ M_1 for p = 1/τ < 1, M_p ≥ M_1 for p > 1), an **upper
  bound** of the true Σ_rest exp(z_i / τ) for τ > 1 and a **lower bound** for τ < 1; equal
  when the rest's logits are equal. So at τ > 1 the compressed targets put at least as much
  probability on the tail as the teacher does.

**Cost.** k·(2 + 2) + 4 bytes per row with int16 indices (k·(2 + 4) + 4 with int32), against
4·C for float32 logits: 44 against 4000 bytes at C = 1000, k = 10 (91× smaller). Compression
is one ``topk`` and one masked ``logsumexp`` over the rows; :meth:`~TopKLogits.dense` one
fill and one scatter per batch. k ≥ C stores every logit (exact, empty rest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

#: the largest class count whose indices fit int16
INT16_CLASSES = torch.iinfo(torch.int16).max


def index_dtype(num_classes: int) -> torch.dtype:
    """int16 when every class index fits (C ≤ 32767), else int32."""
    return torch.int16 if num_classes <= INT16_CLASSES else torch.int32


@dataclass(frozen=True)
class TopKLogits:
    """Top-k teacher logits of rows ``[…]`` of ``num_classes`` classes (FKD, see the module).

    ``values`` float16 ``[…, k]`` (descending), ``indices`` int16/int32 ``[…, k]``,
    ``rest_lse`` float32 ``[…]``: log Σ exp(z) over the other C − k classes (−inf if none).
    Leading dimensions are free: ``[N]`` rows, or ``[E, n]`` views of E epochs.
    """

    values: Tensor
    indices: Tensor
    rest_lse: Tensor
    num_classes: int

    @classmethod
    def compress(cls, logits: Tensor | np.ndarray, k: int) -> TopKLogits:
        """Keep the top ``k`` of each row of ``logits`` ``[…, C]`` (k ≥ C: all of them)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        z = torch.as_tensor(logits).float()
        num_classes = z.shape[-1]
        top, idx = z.topk(min(k, num_classes), dim=-1)
        if top.shape[-1] == num_classes:
            rest = torch.full(z.shape[:-1], -math.inf, dtype=torch.float32, device=z.device)
        else:
            rest = z.scatter(-1, idx, -math.inf).logsumexp(dim=-1)
        return cls(top.to(torch.float16), idx.to(index_dtype(num_classes)), rest, num_classes)

    @property
    def k(self) -> int:
        return self.values.shape[-1]

    @property
    def shape(self) -> torch.Size:
        """The shape of the dense logits, ``[…, C]``."""
        return torch.Size((*self.rest_lse.shape, self.num_classes))

    @property
    def device(self) -> torch.device:
        return self.values.device

    @property
    def nbytes(self) -> int:
        """Bytes stored: k·(2 + index bytes) + 4 per row."""
        return sum(t.numel() * t.element_size()
                   for t in (self.values, self.indices, self.rest_lse))

    def __len__(self) -> int:
        return self.rest_lse.shape[0]

    def __getitem__(self, rows: int | slice | Tensor | np.ndarray) -> TopKLogits:
        """The rows ``rows`` of the leading dimension (e.g. a coreset, or one epoch)."""
        if isinstance(rows, np.ndarray):
            rows = torch.as_tensor(rows, device=self.device)
        elif isinstance(rows, Tensor):
            rows = rows.to(self.device)
        return TopKLogits(self.values[rows], self.indices[rows], self.rest_lse[rows],
                          self.num_classes)

    def select(self, rows: int | slice | Tensor | np.ndarray) -> TopKLogits:
        """Same as ``self[rows]``."""
        return self[rows]

    def to(self, device: torch.device | str) -> TopKLogits:
        """The same logits on ``device``."""
        return TopKLogits(self.values.to(device), self.indices.to(device),
                          self.rest_lse.to(device), self.num_classes)

    def rest_logit(self) -> Tensor:
        """z_rest = LSE_rest − log(C − k) ``[…]`` (−inf when nothing is left out)."""
        rest = self.num_classes - self.k
        return self.rest_lse - math.log(rest) if rest else self.rest_lse.clone()

    def dense(self, rows: int | slice | Tensor | np.ndarray | None = None) -> Tensor:
        """float32 logits ``[…, C]`` (of ``rows`` only, if given): the top-k logits in place
        and z_rest everywhere else."""
        part = self if rows is None else self[rows]
        out = part.rest_logit().unsqueeze(-1).expand(part.shape).clone()
        return out.scatter_(-1, part.indices.long(), part.values.float())


def teacher_rows(logits: Tensor | TopKLogits, rows: Tensor) -> Tensor:
    """Dense teacher logits of ``rows``: plain indexing, or :meth:`TopKLogits.dense`."""
    return logits.dense(rows) if isinstance(logits, TopKLogits) else logits[rows]


def as_teacher_logits(got: Tensor | np.ndarray | TopKLogits, k: int | None,
                      device: torch.device) -> Tensor | TopKLogits:
    """Teacher logits on ``device``: as given when ``k`` is None (or already compressed,
    e.g. by the teacher service before it sent them), else compressed to the top ``k``."""
    if isinstance(got, TopKLogits):
        return got.to(device)
    dense = torch.as_tensor(got, device=device)
    return dense if k is None else TopKLogits.compress(dense, k)
