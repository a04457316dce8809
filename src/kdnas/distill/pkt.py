"""Probabilistic knowledge transfer (Passalis and Tefas, 2018), key ``pkt``.

Each sample's embedding is l2-normalised (eps 1e-7, NaN -> 0); the cosine matrix
``C = X X^T`` is rescaled to ``(C + 1) / 2`` and each row normalised to sum 1, giving P_S and
P_T; ``L = mean over all B x B entries of P_T * log((P_T + eps) / (P_S + eps))``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from kdnas.core import Taps
from kdnas.distill._combined import MethodPlusCrossEntropy, as_float

__all__ = ["PKTLoss", "cosine_affinity", "unit_rows"]

_EPS = 1e-7


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows divided by (their l2 norm + 1e-7), NaN replaced by 0."""
    x = as_float(x)
    unit = x / (x.norm(dim=1, keepdim=True) + _EPS)
    return torch.nan_to_num(unit, nan=0.0)


def cosine_affinity(unit: torch.Tensor) -> torch.Tensor:
    """B x D unit rows -> B x B row-stochastic matrix of (cosine + 1) / 2."""
    similarity = (unit @ unit.t() + 1.0) / 2.0
    return similarity / similarity.sum(dim=1, keepdim=True)


class PKTLoss(MethodPlusCrossEntropy):
    """``CE + beta * mean(P_T * log((P_T + eps) / (P_S + eps)))`` on the embeddings.

    Teacher summary: ``{"unit_embedding": e_T / ||e_T||}`` (D floats per sample).
    """

    name = "pkt"

    def summarise_teacher(self, teacher: Taps) -> dict[str, torch.Tensor]:
        return {"unit_embedding": unit_rows(teacher.embedding)}

    def method_term(
        self,
        student: Taps,
        teacher: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        indices: torch.Tensor,
    ) -> torch.Tensor:
        p_s = cosine_affinity(unit_rows(student.embedding))
        p_t = cosine_affinity(as_float(teacher["unit_embedding"]))
        return (p_t * torch.log((p_t + _EPS) / (p_s + _EPS))).mean()
