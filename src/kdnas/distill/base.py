"""The interface every training loss implements, plain cross-entropy included.

A loss sees the student's ``Taps`` and, for distillation methods, a *teacher summary*: the
per-sample tensors it needs from the teacher, computed by ``teacher_summary`` from the
teacher's taps. The split lets the trainer compute teacher summaries once per subset and
reuse them for every student of a search (the shared teacher cache): a loss whose summary is
compact (attention maps, logits, embeddings) never needs the teacher network at train time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import torch
from torch import nn

from kdnas.core import Taps

__all__ = ["TrainingLoss", "autocast_off"]


def autocast_off(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast disabled on ``device``'s type, so products run in their inputs' dtype.

    Autocast runs matrix products and convolutions in bfloat16 even when handed float32
    tensors; a loss that casts its inputs to float32 and computes inside this context is
    float32 throughout (PKT's loss was 2.5 % off under bfloat16 autocast, its gradient's
    cosine 0.984). A device type without autocast (``meta``) gets a no-op.
    """
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


class TrainingLoss(nn.Module):
    """Base class of the training losses.

    Subclasses set ``name`` (the benchmark's method key), ``needs_teacher`` and implement
    ``forward``; distillation methods also implement ``teacher_summary``. Both compute in
    float32 whatever the autocast state (see ``autocast_off``). Trainable parts
    (connectors, regressors, embedding heads) are sub-modules, so ``parameters()`` yields
    them and the trainer optimises them with the student. Non-trainable state (memory banks)
    lives in buffers.

    Each loss also exposes ``hyperparameters`` (dict of the resolved values, e.g. tau and
    lambda) and ``weights`` (dict: the weight of each returned term in "total"); the trainer
    records both with every result (``TrainResult.loss_settings``).

    The trainer's teacher cache keys a loss's summaries by its ``name``: ``teacher_summary``
    must not depend on the loss's hyperparameters or trainable parts.
    """

    name: str = ""
    needs_teacher: bool = True
    #: True when the summary of a sample depends on the other samples of its batch (SP's
    #: batch similarity matrix); the cache then stores it per batch, not per sample.
    summary_is_per_batch: bool = False

    @classmethod
    def resolve_hyperparameters(
        cls, space: str | None, overrides: Mapping[str, float]
    ) -> dict[str, float]:
        """The method's hyperparameters for ``space`` (the paper's defaults) with ``overrides``.

        Raises:
            ValueError: an override names no hyperparameter of the method (the message lists
                the valid ones) or is not a finite number.
        """
        raise NotImplementedError

    def teacher_summary(self, teacher: Taps) -> dict[str, torch.Tensor]:
        """Per-sample teacher tensors this loss needs, first dimension B. No gradient.

        The result must depend only on the teacher's taps for this batch, so that it can be
        cached and reused across students that see the same batches.
        """
        raise NotImplementedError

    def forward(
        self,
        student: Taps,
        teacher: Mapping[str, torch.Tensor] | None,
        labels: torch.Tensor,
        indices: torch.Tensor,
        distillation_scale: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        """Named loss terms of one batch; the key "total" holds the weighted sum to minimise.

        Args:
            student: the student's taps for the batch (B samples).
            teacher: the teacher summary for the same batch, or None if ``needs_teacher`` is
                False.
            labels: B class indices.
            indices: B positions of the samples within the training subset (0-based), which
                CRD's memory banks need.
            distillation_scale: a factor in [0, 1] on the distillation term's weight (the
                trainer's warm-up, ``TrainConfig.distillation_warmup``); 1 is the method as
                specified. The returned terms stay unweighted.
        """
        raise NotImplementedError
