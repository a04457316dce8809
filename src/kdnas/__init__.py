"""kdnas: neural architecture search with low-fidelity evaluations and knowledge distillation."""

from __future__ import annotations

from kdnas.core import (
    HIGH_FIDELITY,
    METHODS,
    Architecture,
    EvalResult,
    Fidelity,
    Objective,
    Suggestion,
    Taps,
)

__version__ = "0.1.0"

__all__ = [
    "HIGH_FIDELITY",
    "METHODS",
    "Architecture",
    "EvalResult",
    "Fidelity",
    "Objective",
    "Suggestion",
    "Taps",
    "__version__",
]
