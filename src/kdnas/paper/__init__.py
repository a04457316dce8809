"""The paper in one place: its published figures (Tables 1-4, Appendix A and D, a small
data file), the tolerances within which kdnas reproduces them, and the paper's names.

Trofimov et al., "Multi-fidelity neural architecture search with knowledge distillation".
Keys follow the tabular benchmark: spaces "mobilenet"/"shufflenet", parts as strings
("27", "9", "3"), methods as in ``kdnas.core.METHODS``.

Where each table is computed: Table 1 ``kdnas.bench.correlation.table1``; Tables 2 and 4
``kdnas.reproduction.table2.run_table2`` / ``kdnas.reproduction.table4.run_table4`` (Table
4's rows: ``table4_rows()``, the paper's and the registry's, ``kdnas.search.registry``); the
figures ``kdnas.reproduction.figures``. ``kdnas reproduce``
prints each beside the published figures, marking cells outside these tolerances; the
faithfulness tests (tests/search/test_paper_faithfulness.py, tests/bench) hold them too.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

__all__ = [
    "METHOD_LABELS",
    "SPACE_BENCHMARK_KEYS",
    "SPACE_TITLES",
    "TABLE1_TOLERANCE",
    "TABLE2_TOLERANCE",
    "TABLE4_TOLERANCE",
    "best_algorithm2_cell",
    "paper_figures",
]

#: Table 1: how close (absolute difference) a recomputed Pearson cell must be to the paper's.
TABLE1_TOLERANCE = 0.03
#: Table 2: (percentile points, test-accuracy points) a recomputed cell may differ by.
TABLE2_TOLERANCE: tuple[float, float] = (2.5, 0.3)
#: Table 4: relative difference of a recomputed time to the optimum.
TABLE4_TOLERANCE = 0.12

#: The paper's column label of each method key, in its column order (SP is printed "SS").
METHOD_LABELS: dict[str, str] = {
    "nokd": "no KD",
    "kd": "orig. KD",
    "attention": "AT",
    "nst": "NST",
    "similarity": "SS",
    "vid": "VID",
    "pkt": "PKT",
    "crd": "CRD",
    "hint": "Hint",
    "correlation": "CC",
}

#: kdnas's search-space name -> the paper benchmark's space key.
SPACE_BENCHMARK_KEYS: dict[str, str] = {"mobilenetv2": "mobilenet", "shufflenetv2": "shufflenet"}

#: The paper's title of each benchmark space.
SPACE_TITLES: dict[str, str] = {
    "mobilenet": "MobileNetV2 search space",
    "shufflenet": "ShuffleNetV2 search space",
}


@cache
def paper_figures() -> dict[str, Any]:
    """The published figures as a nested dict (read once, then shared: do not mutate)."""
    text = resources.files(__package__).joinpath("paper_tables.json").read_text()
    return json.loads(text)


def best_algorithm2_cell(space: str) -> tuple[int, str]:
    """The paper's fastest Algorithm 2 cell of Table 4 for a benchmark space key
    ("mobilenet", "shufflenet"): (part, method), e.g. (27, "attention") for MobileNetV2."""
    cells = paper_figures()["table4_mf_avg_wall_time_to_optimum_seconds"][space]
    part, method = min(
        ((part, method) for part, row in cells.items() if part != "hf_only" for method in row),
        key=lambda cell: float(cells[cell[0]][cell[1]]),
    )
    return int(part), method
