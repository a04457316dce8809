"""Similarity-preserving distillation (Tung and Mori, 2019), key ``similarity`` ("SP"/"SS").

On the last map, flattened per sample to G (B x C*H*W): ``A = G G^T`` (B x B), each row
l2-normalised; ``L = sum((A_S - A_T)^2) / B^2``. Channel counts and spatial sizes may differ
between student and teacher: only the B x B matrices are compared.

Cache: the teacher's normalised B x B matrix, B floats per sample, instead of the flattened
last map (1,280 floats per sample in the MobileNetV2 space, 7,424 in ShuffleNetV2). The matrix
depends on which samples share the batch, so ``summary_is_per_batch`` is True: it is valid
only when every student sees the same batches in the same order, as the trainer's per-epoch
order (a function of seed and epoch) guarantees. ``forward`` checks the matrix is B x B.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from kdnas.core import Taps
from kdnas.distill._combined import MethodPlusCrossEntropy, as_float
from kdnas.distill._maps import last_map

__all__ = ["SimilarityPreservingLoss", "similarity_matrix"]


def similarity_matrix(feature_map: torch.Tensor) -> torch.Tensor:
    """B x ... -> B x B: Gram matrix of the flattened samples, rows l2-normalised."""
    flat = as_float(feature_map).flatten(1)
    return F.normalize(flat @ flat.t(), dim=1)


class SimilarityPreservingLoss(MethodPlusCrossEntropy):
    """``CE + beta * ||A_S - A_T||_F^2 / B^2`` on the last map.

    Teacher summary: ``{"similarity": A_T}``, B x B (row i belongs to sample i of the batch).
    """

    name = "similarity"
    summary_is_per_batch = True

    def summarise_teacher(self, teacher: Taps) -> dict[str, torch.Tensor]:
        return {"similarity": similarity_matrix(last_map(teacher))}

    def method_term(
        self,
        student: Taps,
        teacher: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        indices: torch.Tensor,
    ) -> torch.Tensor:
        a_s = similarity_matrix(last_map(student))
        a_t = as_float(teacher["similarity"])
        batch = a_s.shape[0]
        if a_t.shape != (batch, batch):
            raise ValueError(
                f"similarity: the teacher matrix is {tuple(a_t.shape)} for a batch of {batch}; "
                "its summary is per batch and valid only for the same batch composition"
            )
        return (a_s - a_t).pow(2).sum() / batch**2
