"""Experimental optimizers: measured, documented and selectable, but not recommended.

``OptimumSearch`` is the base of the parallel-workers result (docs/results.md): with several
workers its KD runs pay where the zero-cost proxy misleads, but it is not faster than
proxy-prior GP-UCB. Nothing here is re-exported by ``kdnas.search``; import it from
``kdnas.search.experimental``.
"""

from __future__ import annotations

from kdnas.search.experimental.optimum_search import (
    OptimumSearch,
    OptimumSearchConfig,
    search_config_for,
)

__all__ = ["OptimumSearch", "OptimumSearchConfig", "search_config_for"]
