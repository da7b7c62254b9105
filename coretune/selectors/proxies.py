"""Proxy signals a selector may be handed, as plain numpy views (no torch, no harness).

A proxy run (``coretune.artifacts.dynamics``) trains a model on the full training split
and records, beside its per-sample scores:

- :class:`TrainingOutputs` — per-epoch probability of the assigned label and predicted
  class of every training sample, and the validation loss after each epoch;
- penultimate ``features`` of the final model (a float array ``[N, D]``);
- :class:`GradEmbedding` — per-sample last-layer gradients of the cross-entropy, held in
  closed form as (errors, features) and never materialised.

Every view has ``subset(positions)``, so a per-class (``class_balanced``) selection can
hand each class its own slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrainingOutputs:
    """What a proxy run saw of each sample, epoch by epoch, over ``R`` runs (seeds).

    ``p_true[r, e, i]``: softmax probability of sample ``i``'s assigned label at epoch ``e``
    of run ``r`` (NaN where the sample was not presented, e.g. a partial last epoch);
    ``pred[r, e, i]``: the predicted class then; ``val_loss[r, e]``: mean cross-entropy of
    the run's model on the validation split after epoch ``e`` (None without such a split).
    """

    p_true: np.ndarray
    pred: np.ndarray
    val_loss: np.ndarray | None = None

    @property
    def num_samples(self) -> int:
        return int(self.p_true.shape[-1])

    def __len__(self) -> int:
        return self.num_samples

    def subset(self, positions: np.ndarray) -> TrainingOutputs:
        pos = np.asarray(positions, dtype=np.int64)
        return TrainingOutputs(self.p_true[..., pos], self.pred[..., pos], self.val_loss)

    def losses(self) -> np.ndarray:
        """Per-epoch cross-entropy of each sample, ``−log p_true`` (float64, ``[R, E, N]``)."""
        return -np.log(np.clip(self.p_true.astype(np.float64), 1e-12, 1.0))


@dataclass(frozen=True)
class GradEmbedding:
    """Per-sample gradients of the cross-entropy w.r.t. the last linear layer, closed form.

    For logits ``z = W h + b`` and ``L = CE(softmax(z), y)``: ``∂L/∂b = p − onehot(y) =: e``
    and ``∂L/∂W = e hᵀ``. The embedding ``g = [e, vec(e hᵀ)]`` (the bias block only if the
    layer has a bias) has ``⟨g_i, g_j⟩ = (e_i·e_j)(b + h_i·h_j)`` with ``b`` ∈ {0, 1}, so
    norms, Gram matrices and distances cost O(n·(K + D)) per entry instead of O(K·D)
    (the "gradient embedding" of BADGE, Ash et al. 2020, and of CRAIG/GradMatch in DeepCore).
    """

    errors: np.ndarray  # [N, K] p − onehot(y)
    features: np.ndarray  # [N, D] input of the last layer
    bias: bool = True

    def __post_init__(self) -> None:
        if self.errors.shape[0] != self.features.shape[0]:
            raise ValueError(f"errors have {self.errors.shape[0]} rows, features "
                             f"{self.features.shape[0]}")

    def __len__(self) -> int:
        return int(self.errors.shape[0])

    @property
    def dim(self) -> int:
        k, d = self.errors.shape[1], self.features.shape[1]
        return k * d + (k if self.bias else 0)

    def subset(self, positions: np.ndarray) -> GradEmbedding:
        pos = np.asarray(positions, dtype=np.int64)
        return GradEmbedding(self.errors[pos], self.features[pos], self.bias)

    def _parts(self, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        e, h = self.errors, self.features
        if rows is not None:
            e, h = e[rows], h[rows]
        return e.astype(np.float64), h.astype(np.float64)

    def norms(self) -> np.ndarray:
        """‖g_i‖ = ‖e_i‖·sqrt(b + ‖h_i‖²) (GraNd's last-layer gradient norm)."""
        e, h = self._parts(None)
        return np.linalg.norm(e, axis=1) * np.sqrt(float(self.bias) + (h * h).sum(1))

    def gram(self, rows: np.ndarray | None = None, cols: np.ndarray | None = None
             ) -> np.ndarray:
        """⟨g_i, g_j⟩ for i in ``rows``, j in ``cols`` (all samples by default)."""
        er, hr = self._parts(rows)
        ec, hc = self._parts(cols)
        return (er @ ec.T) * (float(self.bias) + hr @ hc.T)

    def sq_distances(self, rows: np.ndarray | None = None, cols: np.ndarray | None = None
                     ) -> np.ndarray:
        """‖g_i − g_j‖² from the closed-form Gram (clipped at 0 against rounding)."""
        n2 = self.norms() ** 2
        nr = n2 if rows is None else n2[rows]
        nc = n2 if cols is None else n2[cols]
        return np.maximum(nr[:, None] + nc[None, :] - 2.0 * self.gram(rows, cols), 0.0)

    def dense(self, rows: np.ndarray | None = None) -> np.ndarray:
        """The explicit embeddings ``[n, dim]`` (for small n: tests and small classes)."""
        e, h = self._parts(rows)
        w = (e[:, :, None] * h[:, None, :]).reshape(e.shape[0], -1)
        return np.concatenate([e, w], axis=1) if self.bias else w

    def sketch(self, dim: int = 256, seed: int = 0) -> np.ndarray:
        """A TensorSketch (Pham & Pagh, KDD 2013) of the embeddings: ``[N, dim]`` float32
        whose inner products are unbiased estimates of ⟨g_i, g_j⟩, in O(N·(K + D)·dim).

        ``g = e ⊗ [1, h]`` (or ``e ⊗ h`` without bias): count-sketch each factor with its own
        hash and sign, multiply in the Fourier domain (a circular convolution of the sketches).
        """
        e, h = self._parts(None)
        if self.bias:
            h = np.concatenate([np.ones((h.shape[0], 1)), h], axis=1)
        rng = np.random.default_rng([seed, 0x75])
        out = np.ones((e.shape[0], dim // 2 + 1), dtype=np.complex128)
        for factor in (e, h):
            count_sketch = np.zeros((factor.shape[1], dim))  # one ±1 per input coordinate
            count_sketch[np.arange(factor.shape[1]), rng.integers(0, dim, factor.shape[1])] = (
                rng.choice([-1.0, 1.0], factor.shape[1]))
            out *= np.fft.rfft(factor @ count_sketch, axis=1)
        return np.fft.irfft(out, n=dim, axis=1).astype(np.float32)


def subset_view(value, positions: np.ndarray, num_samples: int):
    """``value`` restricted to ``positions``: a view with ``subset``, or an array whose first
    axis is the sample axis; anything else (a plugin's opaque object) is passed as it is."""
    if hasattr(value, "subset"):
        return value.subset(positions)
    if isinstance(value, dict):  # e.g. a dict of per-sample scores
        return {k: subset_view(v, positions, num_samples) for k, v in value.items()}
    if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == num_samples:
        return value[positions]
    return value
