"""Deep clustering of frozen embeddings into pseudo-labels (ELFS, Sec. 4.1), and its metrics.

- TEMI (Adaloglou et al., BMVC 2023, "Exploring the Limits of Deep Image Clustering using
  Pretrained Models", Sec. 3): an ensemble of ``H`` MLP heads on the embeddings, each a
  student trained against an EMA teacher on pairs (x, x') of k-nearest neighbours in
  embedding space, with the weighted pointwise-mutual-information loss (Eq. 6–8)

      L = −Σ_h w(x, x') · log Σ_c (q_s^h(c|x) · q_t^h(c|x'))^β / q̃^h(c),
      w(x, x') = (1/H) Σ_h Σ_c q_t^h(c|x) q_t^h(c|x'),

  symmetrised over (x, x'), β = 0.6, student and teacher temperatures 0.1, ``q̃`` an EMA
  (0.9) of the teacher's batch-mean probabilities, teacher momentum 0.996 → 1 (cosine),
  AdamW at lr 1e-4; the head with the lowest loss gives the pseudo-labels.
- SCAN (Van Gansbeke et al., ECCV 2020, Eq. 2): ``−log ⟨Φ(x), Φ(x')⟩`` over neighbour pairs
  plus λ = 5 times the negative entropy of the mean prediction, several heads, the lowest
  loss wins.
- k-means: scikit-learn (``n_init`` restarts) below 200,000 points, faiss above.

The heads of an ensemble are one batched module (stacked weights, ``baddbmm``), so 50 heads
cost one pass. Ground truth is never seen here: :func:`clustering_metrics` (Hungarian-matched
accuracy, NMI, ARI) is computed afterwards for the report only.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from coretune.selectors.neighbors import kmeans
from coretune.train.evaluate import hungarian_accuracy

__all__ = ["EnsembleHeads", "clustering_metrics", "hungarian_accuracy", "kmeans", "scan",
           "temi", "temi_loss"]


class EnsembleHeads(nn.Module):
    """``H`` MLP heads D → hidden → hidden → C, evaluated together: ``[B, D] → [H, B, C]``."""

    def __init__(self, heads: int, dim: int, hidden: int, clusters: int):
        super().__init__()
        sizes = [dim, hidden, hidden, clusters]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            w = torch.empty(heads, a, b)
            for h in range(heads):  # torch's Linear initialisation, per head
                nn.init.kaiming_uniform_(w[h].T, a=math.sqrt(5))
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.empty(heads, 1, b).uniform_(
                -1 / math.sqrt(a), 1 / math.sqrt(a))))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z.unsqueeze(0).expand(self.weights[0].shape[0], -1, -1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = F.gelu(x)
        return x


def temi_loss(student: torch.Tensor, teacher_x: torch.Tensor, teacher_nbr: torch.Tensor,
              student_nbr: torch.Tensor, prior: torch.Tensor, beta: float, tau_s: float,
              tau_t: float) -> torch.Tensor:
    """Per-head symmetrised, weighted PMI loss ``[H]`` (logits ``[H, B, C]``, prior ``[H, C]``)."""
    qs_x = torch.softmax(student / tau_s, dim=-1)
    qs_n = torch.softmax(student_nbr / tau_s, dim=-1)
    qt_x = torch.softmax(teacher_x / tau_t, dim=-1).detach()
    qt_n = torch.softmax(teacher_nbr / tau_t, dim=-1).detach()
    weight = (qt_x * qt_n).sum(-1).mean(0, keepdim=True)  # [1, B], ensemble average

    def pmi(qs: torch.Tensor, qt: torch.Tensor) -> torch.Tensor:
        joint = ((qs * qt).clamp_min(1e-12) ** beta) / prior[:, None, :]
        return torch.log(joint.sum(-1))  # [H, B]

    loss = -(weight * (pmi(qs_x, qt_n) + pmi(qs_n, qt_x)) / 2)
    return loss.mean(dim=1)


def _pairs(knn: np.ndarray, batch: np.ndarray, gen: np.random.Generator) -> np.ndarray:
    """A random one of the k nearest neighbours of each anchor."""
    pick = gen.integers(0, knn.shape[1], batch.size)
    return knn[batch, pick]


def temi(embeddings: np.ndarray, knn: np.ndarray, clusters: int, seed: int = 0,
         heads: int = 50, hidden: int = 512, epochs: int = 100, batch_size: int = 256,
         lr: float = 1e-4, beta: float = 0.6, tau_s: float = 0.1, tau_t: float = 0.1,
         momentum: float = 0.996, device: str = "cpu") -> tuple[np.ndarray, dict]:
    """TEMI pseudo-labels and a training record (per-epoch mean loss, chosen head).

    ``momentum`` is the teacher's EMA momentum at the start; it rises to 1 on a cosine.
    """
    dev = torch.device(device)
    z = F.normalize(torch.as_tensor(embeddings, dtype=torch.float32), dim=1).to(dev)
    n = z.shape[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        student = EnsembleHeads(heads, z.shape[1], hidden, clusters).to(dev)
    teacher = EnsembleHeads(heads, z.shape[1], hidden, clusters).to(dev)
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=1e-4)
    prior = torch.full((heads, clusters), 1.0 / clusters, device=dev)
    gen = np.random.default_rng([seed, 0x7E])
    bs = min(batch_size, n)
    steps_per_epoch = max(1, n // bs)
    total = epochs * steps_per_epoch
    history, head_loss = [], torch.zeros(heads, device=dev)
    step = 0
    for _ in range(epochs):
        order = gen.permutation(n)
        epoch_loss = torch.zeros(heads, device=dev)
        for b in range(steps_per_epoch):
            anchor = order[b * bs:(b + 1) * bs]
            nbr = _pairs(knn, anchor, gen)
            za, zn = z[torch.as_tensor(anchor, device=dev)], z[torch.as_tensor(nbr, device=dev)]
            with torch.no_grad():
                ta, tn = teacher(za), teacher(zn)
            per_head = temi_loss(student(za), ta, tn, student(zn), prior, beta, tau_s, tau_t)
            opt.zero_grad(set_to_none=True)
            per_head.sum().backward()
            opt.step()
            m = 1 - (1 - momentum) * (math.cos(math.pi * step / total) + 1) / 2
            with torch.no_grad():
                for ps, pt in zip(student.parameters(), teacher.parameters(), strict=True):
                    pt.mul_(m).add_(ps.detach(), alpha=1 - m)
                batch_prior = torch.softmax(ta / tau_t, dim=-1).mean(1)
                prior.mul_(0.9).add_(batch_prior, alpha=0.1)
            epoch_loss += per_head.detach()
            step += 1
        head_loss = epoch_loss / steps_per_epoch
        history.append(float(head_loss.mean()))
    best = int(torch.argmin(head_loss))
    with torch.no_grad():
        logits = torch.cat([teacher(z[i:i + 4096])[best] for i in range(0, n, 4096)])
    labels = logits.argmax(dim=1).cpu().numpy()
    return labels, {"loss_per_epoch": history, "head": best,
                    "head_loss": float(head_loss[best]), "heads": heads}


def scan(embeddings: np.ndarray, knn: np.ndarray, clusters: int, seed: int = 0,
         heads: int = 10, hidden: int = 512, epochs: int = 100, batch_size: int = 256,
         lr: float = 1e-4, entropy_weight: float = 5.0, device: str = "cpu"
         ) -> tuple[np.ndarray, dict]:
    """SCAN's clustering step on frozen embeddings: neighbour consistency + entropy."""
    dev = torch.device(device)
    z = F.normalize(torch.as_tensor(embeddings, dtype=torch.float32), dim=1).to(dev)
    n = z.shape[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = EnsembleHeads(heads, z.shape[1], hidden, clusters).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = np.random.default_rng([seed, 0x5C])
    bs = min(batch_size, n)
    steps_per_epoch = max(1, n // bs)
    history, head_loss = [], torch.zeros(heads, device=dev)
    for _ in range(epochs):
        order = gen.permutation(n)
        epoch_loss = torch.zeros(heads, device=dev)
        for b in range(steps_per_epoch):
            anchor = order[b * bs:(b + 1) * bs]
            nbr = _pairs(knn, anchor, gen)
            pa = torch.softmax(model(z[torch.as_tensor(anchor, device=dev)]), dim=-1)
            pn = torch.softmax(model(z[torch.as_tensor(nbr, device=dev)]), dim=-1)
            consistency = -torch.log((pa * pn).sum(-1).clamp_min(1e-8)).mean(1)
            mean = pa.mean(1)
            neg_entropy = (mean * torch.log(mean.clamp_min(1e-8))).sum(-1)
            per_head = consistency + entropy_weight * neg_entropy
            opt.zero_grad(set_to_none=True)
            per_head.sum().backward()
            opt.step()
            epoch_loss += per_head.detach()
        head_loss = epoch_loss / steps_per_epoch
        history.append(float(head_loss.mean()))
    best = int(torch.argmin(head_loss))
    with torch.no_grad():
        logits = torch.cat([model(z[i:i + 4096])[best] for i in range(0, n, 4096)])
    return logits.argmax(dim=1).cpu().numpy(), {"loss_per_epoch": history, "head": best,
                                                 "head_loss": float(head_loss[best])}


def clustering_metrics(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """ACC (Hungarian), NMI and ARI (scikit-learn) of pseudo-labels: reported, never chosen on."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return {"acc": hungarian_accuracy(truth, pred),
            "nmi": float(normalized_mutual_info_score(truth, pred)),
            "ari": float(adjusted_rand_score(truth, pred))}
