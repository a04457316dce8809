"""Training losses: plain cross-entropy and the nine distillation methods of the paper.

``build_loss(method, ...)`` is the one entry point; method names are the tabular benchmark's
keys (see ``kdnas.core.METHODS``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

from kdnas.core import METHODS, Taps
from kdnas.distill.base import TrainingLoss

__all__ = [
    "LOGIT_METHODS",
    "LOSS_CLASSES",
    "TrainingLoss",
    "build_loss",
    "loss_hyperparameters",
]

#: method key -> "module:ClassName"; imported on first use so a method's extra code is only
#: loaded when it is asked for.
LOSS_CLASSES: dict[str, str] = {
    "nokd": "kdnas.distill.logit:CrossEntropyLoss",
    "kd": "kdnas.distill.logit:HintonKDLoss",
    "hint": "kdnas.distill.hint:HintLoss",
    "attention": "kdnas.distill.attention:AttentionTransferLoss",
    "similarity": "kdnas.distill.similarity:SimilarityPreservingLoss",
    "correlation": "kdnas.distill.correlation:CorrelationCongruenceLoss",
    "vid": "kdnas.distill.vid:VIDLoss",
    "pkt": "kdnas.distill.pkt:PKTLoss",
    "nst": "kdnas.distill.nst:NSTLoss",
    "crd": "kdnas.distill.crd:CRDLoss",
}

#: Methods that read only a network's logits (plain cross-entropy and Hinton's KD): they train
#: networks that have no ``forward_taps``, as a user's own space may build; the other methods
#: compare feature maps or embeddings and need the taps, of the student and of the teacher.
LOGIT_METHODS: tuple[str, ...] = ("nokd", "kd")


def _is_count(value: float) -> bool:
    return value >= 1 and float(value).is_integer()


#: Hyperparameter name -> (check, what it expects). A value outside its range would not fail
#: loudly but make every evaluation of a search fail or diverge (tau = 0 divides by zero).
_VALID_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "tau": (lambda value: value > 0, "> 0 (a temperature)"),
    "lambda": (lambda value: 0 <= value <= 1, "in [0, 1] (the share of the KD term)"),
    "beta": (lambda value: value >= 0, ">= 0 (a loss weight)"),
    "ce_weight": (lambda value: value >= 0, ">= 0 (a loss weight)"),
    "momentum": (lambda value: 0 <= value <= 1, "in [0, 1]"),
    "init_variance": (lambda value: value > 0, "> 0 (a variance)"),
    "embed_dim": (_is_count, "a positive integer"),
    "num_negatives": (_is_count, "a positive integer"),
}


def _loss_class(method: str) -> type[TrainingLoss]:
    if method not in LOSS_CLASSES:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    module_name, class_name = LOSS_CLASSES[method].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def loss_hyperparameters(
    method: str, space: str | None = None, overrides: Mapping[str, float] | None = None
) -> dict[str, float]:
    """The hyperparameters ``method`` would train with in ``space``, overrides applied.

    Checks user input (a CLI's ``--hp``) before any training starts.

    Raises:
        ValueError: unknown method, or an override the method does not have (both messages
            list the valid names), or a value outside the hyperparameter's range (tau = 0,
            a negative weight, lambda above 1, ...).
    """
    resolved = _loss_class(method).resolve_hyperparameters(space, dict(overrides or {}))
    for name, value in resolved.items():
        if name in _VALID_RANGES:
            is_valid, expected = _VALID_RANGES[name]
            if not is_valid(value):
                raise ValueError(
                    f"{method} hyperparameter {name!r} must be {expected}, got {value:g}"
                )
    return resolved


def build_loss(
    method: str,
    *,
    student_probe: Taps,
    teacher_probe: Taps | None,
    num_classes: int,
    n_train: int,
    space: str | None = None,
    hyperparameters: Mapping[str, float] | None = None,
    labels: object | None = None,
) -> TrainingLoss:
    """Build the loss of ``method`` for one student.

    Args:
        method: a key of ``kdnas.core.METHODS``.
        student_probe: the student's taps on a small probe batch (only shapes are read).
        teacher_probe: the teacher's taps on the same batch, None for "nokd".
        num_classes: number of classes K.
        n_train: number of samples in the training subset (CRD's memory-bank size).
        space: search-space name, used to pick the paper's per-space default weights.
        hyperparameters: overrides of the method's defaults (e.g. {"beta": 100.0}).
        labels: the training subset's labels as a 1-D tensor (CRD draws negatives by class).

    Raises:
        ValueError: unknown method (the message lists the valid ones) or hyperparameter.
    """
    return _loss_class(method).from_probe(
        student_probe=student_probe,
        teacher_probe=teacher_probe,
        num_classes=num_classes,
        n_train=n_train,
        space=space,
        hyperparameters=dict(hyperparameters or {}),
        labels=labels,
    )
