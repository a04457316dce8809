"""``TabularObjective``: an ``Objective`` that looks results up instead of training.

It maps each ``Architecture`` of a search space to its index in the benchmark (the caller
supplies the architectures in benchmark order, e.g. the paper's listed architectures) and each
``Fidelity`` to a (method, part) column of the table.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from kdnas.bench.tabular import METRICS, TabularBenchmark
from kdnas.core import Architecture, EvalResult, Fidelity

__all__ = ["TabularObjective"]

logger = logging.getLogger(__name__)


class TabularObjective:
    """Answers ``evaluate(arch, fidelity)`` from a ``TabularBenchmark``.

    ``evaluate`` returns the stored valid and test accuracies, and as ``cost_s`` the stored
    ``wall_time``: the seconds the full training run at that fidelity took on the benchmark's
    hardware. Each call is charged in full; a scheduler that resumes a run at a higher fidelity
    must subtract what it already paid.

    Behaviour at the edges, chosen to follow the ``Objective`` contract (never raise for a bad
    architecture, raise for a misconfigured caller):

    - an architecture that is not among ``candidates``, or one whose entry the table lacks
      (a hole): an ``EvalResult`` with status "failed", NaN accuracies and ``cost_s`` 0 (nothing
      was trained), the reason in ``info["error"]``;
    - a fidelity whose (method, part) the table does not hold, or one that sets ``epochs``
      (the table holds one epoch budget per part): ``ValueError`` listing the held fidelities.

    Args:
        benchmark: the table.
        space: the benchmark's space key, e.g. "mobilenet" (see ``PAPER_SPACE_KEYS``).
        candidates: the space's architectures in benchmark order (element i is index i); their
            number must equal ``benchmark.num_architectures(space, dataset)``.
        dataset: the benchmark's dataset key.
    """

    def __init__(
        self,
        benchmark: TabularBenchmark,
        space: str,
        candidates: Sequence[Architecture],
        dataset: str = "cifar100",
    ) -> None:
        size = benchmark.num_architectures(space, dataset)
        candidates = tuple(candidates)
        if len(candidates) != size:
            raise ValueError(
                f"{dataset}/{space} holds {size} architectures, got {len(candidates)} candidates; "
                f"pass exactly the first {size} in benchmark order"
            )
        if not all(isinstance(arch, Architecture) for arch in candidates):
            raise TypeError("candidates must be Architecture objects")
        space_names = sorted({arch.space for arch in candidates})
        if len(space_names) != 1:
            raise ValueError(
                f"candidates must share one search space, got {', '.join(space_names)}"
            )
        index: dict[Architecture, int] = {}
        for position, arch in enumerate(candidates):
            first = index.setdefault(arch, position)
            if first != position:
                raise ValueError(
                    f"candidates {first} and {position} are the same architecture "
                    f"({arch.key()}); a benchmark index must identify one architecture"
                )
        self._benchmark = benchmark
        self._space = space
        self._dataset = dataset
        self._candidates = candidates
        self._index = index
        self._keys = tuple(arch.key() for arch in candidates)
        self._fidelities = tuple(
            Fidelity(part=part, method=method)
            for method in benchmark.methods(space, dataset)
            for part in benchmark.parts(space, method, dataset)
        )

        self._held = frozenset((f.method, f.part) for f in self._fidelities)
        # Column views per (method, part), so a simulated search pays the lookups once.
        self._columns: dict[tuple[str, int], dict[str, np.ndarray]] = {}

    @property
    def candidates(self) -> tuple[Architecture, ...]:
        """The architectures, in benchmark order."""
        return self._candidates

    @property
    def space(self) -> str:
        """The benchmark's space key."""
        return self._space

    @property
    def dataset(self) -> str:
        """The benchmark's dataset key."""
        return self._dataset

    @property
    def benchmark(self) -> TabularBenchmark:
        return self._benchmark

    def fidelities(self) -> tuple[Fidelity, ...]:
        """The fidelities the table holds for this space (methods in canonical order)."""
        return self._fidelities

    def index_of(self, arch: Architecture) -> int:
        """The benchmark index of ``arch``.

        Raises:
            KeyError: ``arch`` is not among the candidates.
        """
        try:
            return self._index[arch]
        except KeyError:
            raise KeyError(
                f"architecture {arch.key()} is not among the {len(self._candidates)} "
                f"candidates of {self._dataset}/{self._space}"
            ) from None

    def column(self, fidelity: Fidelity, metric: str) -> np.ndarray:
        """One metric for every candidate at ``fidelity`` (read-only, indexed like candidates).

        Raises:
            ValueError: the table does not hold ``fidelity``, or ``metric`` is unknown.
        """
        self._check_fidelity(fidelity)
        return self._benchmark.column(
            self._space, fidelity.method, fidelity.part, metric, self._dataset
        )

    def evaluate(self, arch: Architecture, fidelity: Fidelity) -> EvalResult:
        """Look up ``arch`` at ``fidelity``; ``cost_s`` is the stored training seconds."""
        self._check_fidelity(fidelity)
        cell = f"{self._dataset}/{self._space}/{fidelity.method}/{fidelity.part}"
        index = self._index.get(arch)
        if index is None:
            return self._failed(arch, fidelity, f"not among the candidates of {cell}")
        columns = self._columns.get((fidelity.method, fidelity.part))
        if columns is None:
            columns = {name: self.column(fidelity, name) for name in METRICS}
            self._columns[(fidelity.method, fidelity.part)] = columns
        values = {name: float(column[index]) for name, column in columns.items()}
        if math.isnan(values["test_acc"]):
            return self._failed(arch, fidelity, f"{cell} has no entry for architecture {index}")
        return EvalResult(
            arch_key=self._keys[index],
            fidelity=fidelity,
            valid_acc=values["valid_acc"],
            test_acc=values["test_acc"],
            cost_s=values["wall_time"],
            status="ok",
            info={"source": "tabular", "cell": cell, "arch_index": str(index)},
        )

    def _failed(self, arch: Architecture, fidelity: Fidelity, reason: str) -> EvalResult:
        logger.warning("tabular lookup failed for %s: %s", arch.key(), reason)
        return EvalResult(
            arch_key=arch.key(),
            fidelity=fidelity,
            valid_acc=math.nan,
            test_acc=math.nan,
            cost_s=0.0,
            status="failed",
            info={"source": "tabular", "error": reason},
        )

    def _check_fidelity(self, fidelity: Fidelity) -> None:
        if fidelity.epochs is not None or (fidelity.method, fidelity.part) not in self._held:
            listing = ", ".join(f.label() for f in self._fidelities)
            raise ValueError(
                f"{self._dataset}/{self._space} does not hold the fidelity {fidelity.label()!r}"
                f"{' (the table has no epochs axis)' if fidelity.epochs is not None else ''}; "
                f"it holds {listing}"
            )

    def __repr__(self) -> str:
        return (
            f"TabularObjective({self._dataset}/{self._space}, {len(self._candidates)} candidates, "
            f"{len(self._fidelities)} fidelities)"
        )
