"""Contrastive representation distillation (Tian et al., 2020), key ``crd``.

Notation: N training samples (the subset), D_S / D_T embedding widths, d = ``embed_dim`` (128),
K = ``num_negatives``, t = ``tau`` (the NCE temperature).

Trainable linear heads map e_S and e_T to d dims, each followed by l2 normalisation (s_i, t_i).
Two memory banks of N x d rows (buffers, initialised uniformly in +-1/sqrt(d/3)) hold one
student and one teacher vector per training sample. For each sample i, K negatives are drawn
among the training samples of other classes. The student vector is scored against the teacher
bank (row i is the positive, the negatives' rows the noise) and the teacher vector against the
student bank: ``p = exp(m . v / t) / Z``, where each side's normaliser Z is fixed on the first
training batch as ``mean score * N``. With noise probability 1/N, each side's NCE loss is
``-[log(p_0 / (p_0 + K/N)) + sum_j log((K/N) / (p_j + K/N))]`` (eps 1e-7 in the divisions),
averaged over the batch; ``L = student side + teacher side``. After each training step the
banks move: ``row_i <- normalise(m * row_i + (1 - m) * new_i)``, with momentum m = 0.5.

Negatives: K is capped at the smallest other-class pool (logged when it bites). RepDistiller's
default K = 16,384 exceeds the pool of small subsets (about 1,800 samples in a 1/27 CIFAR-100
subset), where drawing with replacement would repeat every negative about nine times for nine
times the work. Each row's K negatives are then a uniformly random K-subset of its pool, drawn
without replacement as RepDistiller does whenever K fits the pool (with the cap, always): the
K smallest of B x N uniform keys, own-class keys pushed past the others, in one ``topk``.
(Drawing with replacement, as kdnas did before, left only 63 % of a row's draws distinct at
K = 1,832 and N = 1,851.)

When K + 1 is within a few times N (always once K is capped on a small subset) the scores come
from one B x N product with each bank and a gather, instead of gathering B x (K+1) x d bank
rows (16 MB per side at B = 128, K = 256; far more at RepDistiller's K).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from kdnas.core import Taps
from kdnas.distill._combined import MethodPlusCrossEntropy, as_float

logger = logging.getLogger(__name__)

__all__ = ["CRDLoss", "nce_loss"]

_EPS = 1e-7


def nce_loss(scores: torch.Tensor, n_data: int) -> torch.Tensor:
    """NCE loss of B x (K+1) normalised scores, column 0 the positive; noise probability 1/N."""
    negatives = scores.shape[1] - 1
    noise = negatives / n_data
    # log(p_0 / (p_0 + c)) + sum_j log(noise / (p_j + c)) with c = noise + eps, rearranged
    # into one log over all K + 1 columns (no B x K division or slice).
    per_sample = (
        torch.log(scores[:, 0])
        + negatives * math.log(noise)
        - torch.log(scores + (noise + _EPS)).sum(dim=1)
    )
    return -per_sample.mean()


class CRDLoss(MethodPlusCrossEntropy):
    """``CE + beta * (NCE_student + NCE_teacher)`` with memory banks over the training subset.

    Teacher summary: ``{"embedding": e_T}`` (D floats per sample): the teacher head is
    trainable, so its input is cached, not its output.

    Args:
        hyperparameters: resolved values (``tau``, ``beta``, ``num_negatives``, ...).
        student_dim: D_S.
        teacher_dim: D_T.
        labels: the training subset's labels, N class indices (negatives come from other
            classes).
    """

    name = "crd"
    extra_defaults: ClassVar[dict[str, float]] = {
        "num_negatives": 16384.0,
        "embed_dim": 128.0,
        "momentum": 0.5,
    }

    def __init__(
        self,
        hyperparameters: Mapping[str, float],
        student_dim: int,
        teacher_dim: int,
        labels: torch.Tensor,
    ) -> None:
        super().__init__(hyperparameters)
        hp = self.hyperparameters
        embed_dim = int(hp["embed_dim"])
        if embed_dim < 1 or hp["tau"] <= 0 or not 0.0 <= hp["momentum"] < 1.0:
            raise ValueError(f"crd: need embed_dim >= 1, tau > 0, 0 <= momentum < 1; got {hp}")
        labels = torch.as_tensor(labels).long().flatten().cpu()
        n_data = int(labels.numel())
        counts = torch.bincount(labels)
        present = counts[counts > 0]
        pool = n_data - int(present.max()) if n_data else 0
        if pool < 1:
            raise ValueError(
                "crd: the training labels need at least two classes to draw negatives from"
            )
        requested = int(hp["num_negatives"])
        if requested < 1:
            raise ValueError(f"crd: num_negatives must be >= 1, got {requested}")
        self.num_negatives = min(requested, pool)
        if self.num_negatives < requested:
            logger.info(
                "crd: %d negatives requested but the smallest other-class pool holds %d; using %d",
                requested,
                pool,
                self.num_negatives,
            )
        self.n_data = n_data
        self.temperature = float(hp["tau"])
        self.momentum = float(hp["momentum"])
        self.student_head = nn.Linear(student_dim, embed_dim)
        self.teacher_head = nn.Linear(teacher_dim, embed_dim)
        bound = 1.0 / math.sqrt(embed_dim / 3.0)
        self.register_buffer("student_bank", torch.rand(n_data, embed_dim) * 2 * bound - bound)
        self.register_buffer("teacher_bank", torch.rand(n_data, embed_dim) * 2 * bound - bound)
        # Z of each side (student vector vs teacher bank, teacher vector vs student bank);
        # negative until fixed on the first training batch.
        self.register_buffer("normalisers", torch.full((2,), -1.0))
        self._normalisers_fixed = False
        self.register_buffer("labels", labels)

    @classmethod
    def _build(
        cls,
        *,
        student_probe: Taps,
        teacher_probe: Taps,
        num_classes: int,
        n_train: int,
        hyperparameters: dict[str, float],
        labels: object | None,
    ) -> CRDLoss:
        if labels is None:
            raise ValueError("crd draws negatives by class: pass the training subset's labels")
        labels_tensor = torch.as_tensor(labels)
        if labels_tensor.numel() != n_train:
            raise ValueError(
                f"crd: got {labels_tensor.numel()} labels for a training subset of {n_train}"
            )
        return cls(
            hyperparameters,
            int(student_probe.embedding.shape[1]),
            int(teacher_probe.embedding.shape[1]),
            labels_tensor,
        )

    def summarise_teacher(self, teacher: Taps) -> dict[str, torch.Tensor]:
        return {"embedding": teacher.embedding.detach()}

    def draw_negatives(self, indices: torch.Tensor) -> torch.Tensor:
        """B x K indices of samples of other classes than each sample's, K distinct per row.

        Each row is a uniformly random K-subset of its sample's other-class pool (K never
        exceeds the smallest pool): the positions of the K smallest of N uniform keys, the
        own class's keys set above every other. Costs a B x N ``topk`` per step (0.5 s on one
        CPU thread at N = 45,000, K = 16,384; 0.02 s at N = 1,851).
        """
        own_class = self.labels.unsqueeze(0) == self.labels[indices].unsqueeze(1)
        keys = torch.rand(own_class.shape, device=own_class.device).masked_fill_(own_class, 2.0)
        return keys.topk(self.num_negatives, dim=1, largest=False, sorted=False).indices

    def _scores(
        self, vectors: torch.Tensor, bank: torch.Tensor, candidates: torch.Tensor, side: int
    ) -> torch.Tensor:
        """exp(bank[candidates] . v / t) / Z for B x (K+1) candidates (column 0 positive)."""
        if self.n_data <= 4 * candidates.shape[1]:
            products = torch.gather(vectors @ bank.t(), 1, candidates)
        else:
            rows = bank[candidates]
            products = torch.bmm(rows, vectors.unsqueeze(2)).squeeze(2)
        scores = torch.exp(products / self.temperature)
        if not self._normalisers_fixed:
            if self.normalisers[side] < 0:
                normaliser = scores.detach().mean() * self.n_data
                if not self.training:
                    return scores / normaliser
                self.normalisers[side] = normaliser
            self._normalisers_fixed = bool((self.normalisers >= 0).all())
        # A copy: fixing the other side's normaliser writes into the same buffer.
        return scores / self.normalisers[side].clone()

    def method_term(
        self,
        student: Taps,
        teacher: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        indices: torch.Tensor,
    ) -> torch.Tensor:
        indices = indices.to(self.labels.device).long()
        s = F.normalize(self.student_head(as_float(student.embedding)), dim=1)
        t = F.normalize(self.teacher_head(as_float(teacher["embedding"])), dim=1)
        candidates = torch.cat([indices.unsqueeze(1), self.draw_negatives(indices)], dim=1)
        student_scores = self._scores(s, self.teacher_bank, candidates, side=0)
        teacher_scores = self._scores(t, self.student_bank, candidates, side=1)
        loss = nce_loss(student_scores, self.n_data) + nce_loss(teacher_scores, self.n_data)
        if self.training:
            self._update_banks(indices, s.detach(), t.detach())
        return loss

    @torch.no_grad()
    def _update_banks(self, indices: torch.Tensor, s: torch.Tensor, t: torch.Tensor) -> None:
        # Out of place: this step's graph still holds the old banks for its backward pass.
        for name, new in (("student_bank", s), ("teacher_bank", t)):
            bank = getattr(self, name)
            moved = bank[indices] * self.momentum + new.to(bank.dtype) * (1.0 - self.momentum)
            setattr(self, name, bank.index_copy(0, indices, F.normalize(moved, dim=1)))
