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
    "load_model",
]


def __getattr__(name: str) -> object:
    """``kdnas.load_model``, imported when first used (it loads torch; ``import kdnas`` does
    not)."""
    if name == "load_model":
        from kdnas.deploy import load_model

        return load_model
    raise AttributeError(f"module 'kdnas' has no attribute {name!r}")
