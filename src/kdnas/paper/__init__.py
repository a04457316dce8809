"""The paper's published figures (Tables 1-4, Appendix A and D), as a small data file.

Trofimov et al., "Multi-fidelity neural architecture search with knowledge distillation".
Keys follow the tabular benchmark: spaces "mobilenet"/"shufflenet", parts as strings
("27", "9", "3"), methods as in ``kdnas.core.METHODS``.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["paper_figures"]


@cache
def paper_figures() -> dict[str, Any]:
    """The published figures as a nested dict (read once, then shared: do not mutate)."""
    text = resources.files(__package__).joinpath("paper_tables.json").read_text()
    return json.loads(text)
