"""A teacher the user trained: a ``torch.export`` program (``.pt2``) loaded instead of training
the space's original network.

The program sees the images exactly as the students do (pixels / 255, normalised with the
training split's per-channel mean and std, at the search's resolution, channels first) and
must answer a batch of any size with one score per class, in the order of the dataset's
classes (sorted class-folder names for image folders). Only its logits are read, so it teaches
with the logit methods (``kdnas.distill.LOGIT_METHODS``: Hinton's KD).
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["EXPORT_HINT", "ExportedTeacher", "file_sha256", "load_exported_teacher"]

#: How to write a teacher kdnas can load, for error messages.
EXPORT_HINT = (
    "export it in eval mode with a dynamic batch: torch.export.save(torch.export.export("
    "model.eval(), (x,), dynamic_shapes=({0: torch.export.Dim('batch')},)), 'teacher.pt2')"
)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ExportedTeacher(nn.Module):
    """A loaded ``torch.export`` program as a module the trainer can hold.

    ``train()`` and ``eval()`` set this wrapper's flag only: an exported program keeps the
    mode it was exported in (and refuses to be switched), which for a teacher must be eval.
    """

    def __init__(self, program: nn.Module, source: str) -> None:
        super().__init__()
        self.program = program
        self.source = source

    def train(self, mode: bool = True) -> ExportedTeacher:
        self.training = mode
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.program(images)


def load_exported_teacher(
    path: str | os.PathLike[str], in_channels: int, resolution: int, num_classes: int
) -> ExportedTeacher:
    """Load the program at ``path`` and check it answers this data.

    Raises:
        ValueError: the file is missing or not a ``torch.export`` program, it was exported
            for a fixed batch size, or it does not return ``batch x num_classes`` scores for
            ``in_channels x resolution x resolution`` images (one line each, with the fix).
    """
    file = Path(path)
    where = f"--teacher {file}"
    if not file.is_file():
        raise ValueError(f"{where}: no such file (a torch.export program, .pt2)")
    if not zipfile.is_zipfile(file):  # what torch.export.save writes; anything else is refused
        raise ValueError(
            f"{where}: not a torch.export program (not a .pt2 archive); {EXPORT_HINT}"
        )
    try:
        program = torch.export.load(str(file)).module()
    except Exception as error:  # whatever the loader raises: not a program kdnas can use
        text = " ".join(str(error).split())[:200]
        raise ValueError(
            f"{where}: not a torch.export program ({type(error).__name__}: {text}); {EXPORT_HINT}"
        ) from None
    teacher = ExportedTeacher(program, str(file))
    shape: tuple[int, ...] = (3, in_channels, resolution, resolution)
    try:
        with torch.no_grad():
            logits: Any = teacher(torch.zeros(shape))
    except Exception as error:  # a guard of the program (its batch, its input shape)
        text = " ".join(str(error).split())[:200]
        raise ValueError(
            f"{where}: it fails on a {' x '.join(map(str, shape))} batch of this data "
            f"({type(error).__name__}: {text}); {EXPORT_HINT}"
        ) from None
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (3, num_classes):
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(
            f"{where}: it must return scores of shape (batch, {num_classes}) for this data's "
            f"{num_classes} classes, got {got}"
        )
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher
