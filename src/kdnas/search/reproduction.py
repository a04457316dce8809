"""The paper's search experiments on its tabular benchmark: Tables 2 and 4, Figures 1, 3-5.

Protocol (from the paper's notebook, checked against its tables):

- Algorithm 1 fits the low-fidelity ``valid_acc`` of ``n_lf`` random architectures with the
  raw-target GP (``GPConfig.paper_algorithm1()``) and is judged by the chosen architecture's
  high-fidelity ``test_acc`` and its percentile in the space (``percentile_in_space``).
- GP-UCB and Algorithm 2 fit ``valid_acc`` with mean-centred targets and 3 restarts
  (``GPConfig.paper_gp_ucb()``), beta = 0.5. Algorithm 2's low-fidelity phase is ``n_lf``
  points in all (one random, then UCB); its high-fidelity phase starts at the best of them.
- The optimum is the architecture with the best high-fidelity ``valid_acc``; a run's time is the
  sum of the benchmark's ``wall_time`` of every evaluation it made (low and high fidelity)
  until the optimum has been evaluated at high fidelity.
- Random search evaluates a random order of the space at high fidelity.

Table 4 is assembled from named row builders (``TABLE4_ROWS``). The paper's rows use the
batched engine (``kdnas.search.engine``), an accelerator tested equivalent to the evaluation
loop; any other optimizer joins by ``register_optimizer``: one factory, and its runs go through
``kdnas.search.loop`` on the benchmark (``ArraysObjective``), charged the stored wall times.
"""

from __future__ import annotations

import logging
import math
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from kdnas.core import METHODS, Architecture, EvalResult, Fidelity, Optimizer
from kdnas.search.candidates import CandidateSet, random_subsets, standardize_columns
from kdnas.search.engine import EngineConfig, simulate_algorithm1, simulate_gp_ucb_phase
from kdnas.search.gp import GPConfig
from kdnas.search.harness import Trace, TraceStep, percentile_in_space
from kdnas.search.loop import InProcessWorkers, LoopLimits, run_loop

__all__ = [
    "TABLE2_PARTS",
    "TABLE4_ROWS",
    "ArraysObjective",
    "CellStats",
    "OptimizerFactory",
    "SpaceArrays",
    "Table2Cell",
    "Table4Settings",
    "algorithm2_times",
    "anytime_curve",
    "cell_rng",
    "gp_ucb_hf_times",
    "load_space_arrays",
    "random_search_times",
    "register_optimizer",
    "register_table4_row",
    "run_on_arrays",
    "run_table2",
    "run_table4",
    "time_to_optimum_of_orders",
]

logger = logging.getLogger(__name__)

#: Low-fidelity parts of Table 2, in the paper's row order.
TABLE2_PARTS: tuple[int, ...] = (27, 9, 3)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class SpaceArrays:
    """Everything a simulation needs about one space of the benchmark, as arrays.

    Args:
        space: the benchmark's space key ("mobilenet", "shufflenet").
        features: [N, d] standardised architecture features.
        hf_valid, hf_test: [N] high-fidelity accuracies (fractions).
        hf_time: [N] high-fidelity training seconds.
        low: (method, part) -> {"valid_acc": [N], "test_acc": [N], "wall_time": [N]}.
        parameters: [N] parameter counts (for Figure 1), if known.
        multiply_adds: [N] multiply-adds of one forward pass at the dataset's resolution (the
            zero-cost proxy of ``kdnas.search.multifidelity``), if known.
    """

    space: str
    features: np.ndarray
    hf_valid: np.ndarray
    hf_test: np.ndarray
    hf_time: np.ndarray
    low: Mapping[tuple[str, int], Mapping[str, np.ndarray]]
    parameters: np.ndarray | None = None
    multiply_adds: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.hf_valid)
        for name in ("features", "hf_test", "hf_time", "parameters", "multiply_adds"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"SpaceArrays.{name} must have {n} rows like hf_valid")
        if not (np.isfinite(self.hf_valid).all() and np.isfinite(self.hf_time).all()):
            raise ValueError(f"{self.space}: high-fidelity entries are missing (NaN)")

    @property
    def size(self) -> int:
        return len(self.hf_valid)

    @property
    def optimum(self) -> int:
        """Index of the best high-fidelity valid_acc (the target of time-to-optimum)."""
        return int(np.argmax(self.hf_valid))

    def subset(self, indices: Sequence[int] | np.ndarray) -> SpaceArrays:
        """The space restricted to the architectures ``indices`` (distinct), in that order,
        with the features standardised again over them (as the paper standardises over the
        searched architectures). Its optimum is the best of the subset."""
        rows = np.asarray(indices, dtype=int)
        if rows.ndim != 1 or len(rows) == 0 or len(np.unique(rows)) != len(rows):
            raise ValueError("SpaceArrays.subset needs distinct indices")
        if rows.min() < 0 or rows.max() >= self.size:
            raise ValueError(f"SpaceArrays.subset: indices must lie in [0, {self.size})")
        low = {key: {m: v[rows] for m, v in cols.items()} for key, cols in self.low.items()}
        return SpaceArrays(
            self.space,
            standardize_columns(self.features[rows]),
            self.hf_valid[rows],
            self.hf_test[rows],
            self.hf_time[rows],
            low,
            None if self.parameters is None else self.parameters[rows],
            None if self.multiply_adds is None else self.multiply_adds[rows],
        )

    def low_column(self, method: str, part: int, metric: str) -> np.ndarray:
        try:
            return self.low[(method, part)][metric]
        except KeyError:
            raise ValueError(
                f"{self.space}: the benchmark holds no {metric} for method {method!r} at "
                f"part 1/{part}"
            ) from None

    def placeholder_candidates(self) -> CandidateSet:
        """The candidates as optimizers see them: ``Architecture(space key, (i,))`` stands for
        benchmark index i (the optimizers need only the features), with ``features``."""
        archs = tuple(Architecture(self.space, (i,)) for i in range(self.size))
        return CandidateSet(archs, self.features)


class ArraysObjective:
    """An ``Objective`` answering from ``SpaceArrays``: ``candidates.archs[i]`` is benchmark row
    i; high fidelity reads ``hf_*``, a low fidelity (part, method) reads ``low``; ``cost_s`` is
    the stored training seconds. The simulations' counterpart of ``TabularObjective``.

    Raises (from ``evaluate``):
        KeyError: the architecture is not a candidate.
        ValueError: the benchmark holds no such fidelity.
    """

    def __init__(self, arrays: SpaceArrays, candidates: CandidateSet | None = None) -> None:
        self.arrays = arrays
        self.candidates = candidates or arrays.placeholder_candidates()
        if len(self.candidates) != arrays.size:
            raise ValueError(
                f"ArraysObjective: {len(self.candidates)} candidates for {arrays.size} rows"
            )
        self._keys = tuple(arch.key() for arch in self.candidates.archs)

    def evaluate(self, arch: Architecture, fidelity: Fidelity) -> EvalResult:
        i = self.candidates.index_of(arch)
        arrays = self.arrays
        if fidelity.is_high:
            valid, test, cost = arrays.hf_valid[i], arrays.hf_test[i], arrays.hf_time[i]
        else:
            valid = arrays.low_column(fidelity.method, fidelity.part, "valid_acc")[i]
            test = arrays.low_column(fidelity.method, fidelity.part, "test_acc")[i]
            cost = arrays.low_column(fidelity.method, fidelity.part, "wall_time")[i]
        return EvalResult(self._keys[i], fidelity, float(valid), float(test), float(cost))


def load_space_arrays(
    bench: Any, space_key: str, listed_dir: str | Path | None = None, dataset: str = "cifar100"
) -> SpaceArrays:
    """Read one space of a ``kdnas.bench.TabularBenchmark`` into ``SpaceArrays``.

    Args:
        bench: the benchmark.
        space_key: "mobilenet" or "shufflenet".
        listed_dir: folder of the paper's random_arcs_*.pickle (default: ``$KDNAS_DATA``,
            see ``kdnas.spaces.load_listed_architectures``).
    """
    from kdnas.spaces import load_listed_architectures, space_for_benchmark_key

    space = space_for_benchmark_key(space_key)
    size = bench.num_architectures(space_key, dataset)
    archs = load_listed_architectures(space.name, listed_dir, count=size)
    features = standardize_columns(space.feature_matrix(archs))
    high = bench.high_fidelity(space_key, dataset)
    low: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    for method in bench.methods(space_key, dataset):
        for part in bench.parts(space_key, method, dataset):
            if part == 1:
                continue
            low[(method, int(part))] = {
                metric: bench.column(space_key, method, part, metric, dataset)
                for metric in ("valid_acc", "test_acc", "wall_time")
            }
    parameters = np.array([space.parameter_count(arch) for arch in archs], dtype=float)
    resolution = 224 if dataset == "imagenet" else 32
    multiply_adds = np.array([space.multiply_adds(arch, resolution) for arch in archs], float)
    return SpaceArrays(
        space_key,
        features,
        high["valid_acc"],
        high["test_acc"],
        high["wall_time"],
        low,
        parameters,
        multiply_adds,
    )


def cell_rng(seed: int, *names: object) -> np.random.Generator:
    """An independent stream per experiment cell, stable across runs and machines."""
    key = zlib.crc32("/".join(str(n) for n in names).encode())
    return np.random.default_rng([seed, key])


@dataclass(frozen=True)
class CellStats:
    """Mean and standard error of a per-run quantity over ``runs`` runs."""

    mean: float
    stderr: float
    runs: int

    @classmethod
    def of(cls, values: np.ndarray) -> CellStats:
        values = np.asarray(values, dtype=float)
        stderr = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
        return cls(float(values.mean()), stderr, len(values))


@dataclass(frozen=True)
class Table2Cell:
    """One (space, part, method) cell of Table 2.

    Attributes:
        percentile: the chosen architectures' percentile in the space (lower is better).
        test_acc: their high-fidelity test accuracy, in percent.
        p_value_vs_nokd: two-sided Student t-test of the per-run test accuracies against the
            same part's no-KD cell (NaN for no-KD itself).
        chosen: [runs] indices of the chosen architectures.
    """

    percentile: CellStats
    test_acc: CellStats
    p_value_vs_nokd: float
    chosen: np.ndarray = field(repr=False)


def _two_sample_p_value(a: np.ndarray, b: np.ndarray) -> float:
    """Student's two-sample t-test p-value; when neither sample varies (few runs that all
    choose one architecture) the test is undefined, and the answer is exact instead: 1.0 for
    equal constants, 0.0 for different ones."""
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return 1.0 if a[0] == b[0] else 0.0
    with warnings.catch_warnings():
        # One constant sample is fine (its variance is exactly 0), but scipy's moment check
        # still warns about cancellation on it.
        warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        return float(stats.ttest_ind(a, b).pvalue)


def algorithm1_choices(
    arrays: SpaceArrays,
    method: str,
    part: int,
    runs: int,
    n_lf: int,
    rng: np.random.Generator,
    gp: GPConfig | None = None,
    engine: EngineConfig | None = None,
) -> np.ndarray:
    """[runs] architectures chosen by Algorithm 1 on one low fidelity."""
    subsets = random_subsets(rng, runs, arrays.size, n_lf)
    valid = arrays.low_column(method, part, "valid_acc")
    return simulate_algorithm1(arrays.features, valid, subsets, gp=gp, engine=engine)


def run_table2(
    spaces: Mapping[str, SpaceArrays],
    runs: int = 1000,
    n_lf: int = 30,
    seed: int = 0,
    parts: Sequence[int] = TABLE2_PARTS,
    methods: Sequence[str] = METHODS,
    progress: Progress | None = None,
) -> dict[str, dict[int, dict[str, Table2Cell]]]:
    """Table 2: Algorithm 1 (``n_lf`` random LF evaluations, raw-target GP) per cell.

    Returns:
        {space: {part: {method: Table2Cell}}}.
    """
    out: dict[str, dict[int, dict[str, Table2Cell]]] = {}
    for space, arrays in spaces.items():
        out[space] = {}
        for part in parts:
            raw: dict[str, np.ndarray] = {}
            for method in methods:
                if (method, part) not in arrays.low:
                    continue
                rng = cell_rng(seed, "table2", space, part, method)
                raw[method] = algorithm1_choices(arrays, method, part, runs, n_lf, rng)
                if progress is not None:
                    progress(f"{space} 1/{part} {method}")
            base = arrays.hf_test[raw["nokd"]] if "nokd" in raw else None
            cells = {}
            for method, chosen in raw.items():
                acc = 100.0 * arrays.hf_test[chosen]
                p_value = math.nan
                if base is not None and method != "nokd":
                    p_value = _two_sample_p_value(acc, 100.0 * base)
                cells[method] = Table2Cell(
                    CellStats.of(percentile_in_space(arrays.hf_test, chosen)),
                    CellStats.of(acc),
                    p_value,
                    chosen,
                )
            out[space][part] = cells
    return out


# ---------------------------------------------------------------------------- Table 4


@dataclass(frozen=True)
class Table4Settings:
    """Settings shared by the rows of Table 4.

    Args:
        runs: simulated runs per cell (the paper: 100).
        n_lf: Algorithm 2's low-fidelity evaluations (the paper: 10).
        methods, parts: Algorithm 2's low fidelities.
        beta: UCB weight of the posterior std.
        gp: the GP of every GP-UCB (default: the paper's, mean-centred targets).
        seed: master seed; each cell draws an independent stream from it.
    """

    runs: int = 100
    n_lf: int = 10
    methods: tuple[str, ...] = ("nokd", "kd", "attention", "nst")
    parts: tuple[int, ...] = (27, 9)
    beta: float = 0.5
    gp: GPConfig = field(default_factory=GPConfig.paper_gp_ucb)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.runs < 1 or self.n_lf < 1:
            raise ValueError("Table4Settings needs runs >= 1 and n_lf >= 1")


def _order_times(order: np.ndarray, times: np.ndarray) -> np.ndarray:
    return np.where(order >= 0, times[np.maximum(order, 0)], 0.0).sum(1)


def time_to_optimum_of_orders(arrays: SpaceArrays, orders: np.ndarray) -> np.ndarray:
    """[runs] seconds one worker needs to reach the optimum evaluating, at high fidelity, each
    row of ``orders`` [runs, N] (permutations of the space) in turn: what the loop measures
    for ``RandomSearch`` with those orders (tests/search/test_loop.py)."""
    orders = np.asarray(orders)
    position = np.argmax(orders == arrays.optimum, axis=1)
    costs = np.cumsum(arrays.hf_time[orders], axis=1)
    return costs[np.arange(len(orders)), position]


def random_search_times(arrays: SpaceArrays, runs: int, rng: np.random.Generator) -> np.ndarray:
    """[runs] seconds random search (a random order at high fidelity) needs to reach the
    optimum: uniformly random orders, timed by ``time_to_optimum_of_orders``."""
    return time_to_optimum_of_orders(arrays, np.argsort(rng.random((runs, arrays.size)), axis=1))


def gp_ucb_hf_times(
    arrays: SpaceArrays,
    runs: int,
    rng: np.random.Generator,
    beta: float = 0.5,
    gp: GPConfig | None = None,
    return_order: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """[runs] seconds GP-UCB at high fidelity only (random start) needs to reach the optimum
    (with ``return_order``, also the [runs, T] evaluation order)."""
    first = rng.integers(0, arrays.size, runs)
    order = simulate_gp_ucb_phase(
        arrays.features,
        arrays.hf_valid,
        first,
        target=arrays.optimum,
        beta=beta,
        rng=rng,
        gp=gp or GPConfig.paper_gp_ucb(),
    )
    times = _order_times(order, arrays.hf_time)
    return (times, order) if return_order else times


def algorithm2_times(
    arrays: SpaceArrays,
    method: str,
    part: int,
    runs: int,
    n_lf: int,
    rng: np.random.Generator,
    beta: float = 0.5,
    gp: GPConfig | None = None,
    return_orders: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[runs] seconds Algorithm 2 needs to reach the optimum (low-fidelity phase included).

    With ``return_orders``, also the [runs, n_lf] low-fidelity and [runs, T] high-fidelity
    evaluation orders.
    """
    gp = gp or GPConfig.paper_gp_ucb()
    valid = arrays.low_column(method, part, "valid_acc")
    cost = arrays.low_column(method, part, "wall_time")
    first = rng.integers(0, arrays.size, runs)
    low = simulate_gp_ucb_phase(
        arrays.features, valid, first, steps=n_lf, beta=beta, rng=rng, gp=gp
    )
    start = low[np.arange(runs), np.argmax(np.where(low >= 0, valid[np.maximum(low, 0)], -1), 1)]
    high = simulate_gp_ucb_phase(
        arrays.features,
        arrays.hf_valid,
        start,
        target=arrays.optimum,
        beta=beta,
        rng=rng,
        gp=gp,
    )
    times = _order_times(low, cost) + _order_times(high, arrays.hf_time)
    return (times, low, high) if return_orders else times


#: A Table 4 row: (space arrays, settings, progress) -> {column: per-run seconds} where a column
#: is a name ("hf_only") or a nested {part: {method: seconds}} mapping.
Table4Row = Callable[
    [SpaceArrays, Table4Settings, "Progress | None"],
    Mapping[str, "np.ndarray | Mapping[str, Mapping[str, np.ndarray]]"],
]


def _row_hf_only(
    arrays: SpaceArrays, settings: Table4Settings, progress: Progress | None
) -> dict[str, np.ndarray]:
    rng = cell_rng(settings.seed, "table4", arrays.space, "hf_only")
    times = gp_ucb_hf_times(arrays, settings.runs, rng, settings.beta, settings.gp)
    if progress is not None:
        progress(f"{arrays.space} GP-UCB high fidelity only")
    return {"hf_only": np.asarray(times)}


def _row_random_search(
    arrays: SpaceArrays, settings: Table4Settings, progress: Progress | None
) -> dict[str, np.ndarray]:
    rng = cell_rng(settings.seed, "table4", arrays.space, "random_search")
    times = random_search_times(arrays, settings.runs, rng)
    if progress is not None:
        progress(f"{arrays.space} random search")
    return {"random_search": times}


def _row_algorithm2(
    arrays: SpaceArrays, settings: Table4Settings, progress: Progress | None
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    for part in settings.parts:
        for method in settings.methods:
            if (method, part) not in arrays.low:
                continue
            rng = cell_rng(settings.seed, "table4", arrays.space, part, method)
            out.setdefault(str(part), {})[method] = np.asarray(
                algorithm2_times(
                    arrays,
                    method,
                    part,
                    settings.runs,
                    settings.n_lf,
                    rng,
                    settings.beta,
                    settings.gp,
                )
            )
            if progress is not None:
                progress(f"{arrays.space} Algorithm 2, 1/{part} {method}")
    return {"algorithm2": out}


#: Row name -> builder, in print order. Extend with ``register_table4_row``.
TABLE4_ROWS: dict[str, Table4Row] = {
    "hf_only": _row_hf_only,
    "algorithm2": _row_algorithm2,
    "random_search": _row_random_search,
}

#: Progress steps each row reports per space (for progress bars), by row name.
TABLE4_ROW_STEPS: dict[str, Callable[[SpaceArrays, Table4Settings], int]] = {
    "hf_only": lambda arrays, settings: 1,
    "random_search": lambda arrays, settings: 1,
    "algorithm2": lambda arrays, settings: sum(
        (m, p) in arrays.low for m in settings.methods for p in settings.parts
    ),
}


def register_table4_row(
    name: str,
    builder: Table4Row,
    steps: Callable[[SpaceArrays, Table4Settings], int] | None = None,
    replace: bool = False,
) -> None:
    """Add a row to Table 4 (e.g. a new multi-fidelity algorithm).

    Args:
        name: the row's name (also its JSON key when it returns one flat column).
        builder: ``(arrays, settings, progress) -> {column: per-run seconds}``; a column is a
            flat [runs] array, or ``{part: {method: [runs]}}`` for rows per low fidelity.
            Call ``progress(label)`` once per finished cell.
        steps: how many times the builder calls ``progress`` for a space (default 1).
        replace: allow replacing an existing row.
    """
    if name in TABLE4_ROWS and not replace:
        raise ValueError(f"Table 4 already has a row named {name!r}")
    TABLE4_ROWS[name] = builder
    TABLE4_ROW_STEPS[name] = steps or (lambda arrays, settings: 1)


def table4_steps(spaces: Mapping[str, SpaceArrays], settings: Table4Settings) -> int:
    """Progress steps ``run_table4`` will report."""
    return sum(TABLE4_ROW_STEPS[n](a, settings) for a in spaces.values() for n in TABLE4_ROWS)


def run_table4(
    spaces: Mapping[str, SpaceArrays],
    settings: Table4Settings | None = None,
    rows: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> dict[str, dict[str, Any]]:
    """Table 4: average seconds to reach the optimum, per space and row.

    Returns:
        {space: {column: CellStats}} with nested {part: {method: CellStats}} columns, e.g.
        ``{"mobilenet": {"hf_only": ..., "random_search": ..., "27": {"kd": ...}}}``.
    """
    settings = settings or Table4Settings()
    names = list(TABLE4_ROWS) if rows is None else list(rows)
    for name in names:
        if name not in TABLE4_ROWS:
            raise ValueError(f"unknown Table 4 row {name!r}; valid: {', '.join(TABLE4_ROWS)}")
    out: dict[str, dict[str, Any]] = {}
    for space, arrays in spaces.items():
        cells: dict[str, Any] = {}
        for name in names:
            for column, value in TABLE4_ROWS[name](arrays, settings, progress).items():
                if isinstance(value, Mapping):
                    # Columns per low fidelity merge under their part keys.
                    target = cells if column == "algorithm2" else cells.setdefault(column, {})
                    for part, by_method in value.items():
                        for method, times in by_method.items():
                            target.setdefault(part, {})[method] = CellStats.of(times)
                else:
                    cells[column] = CellStats.of(value)
        out[space] = cells
    return out


#: (candidates, arrays, seed) -> a fresh optimizer for one simulated run on one space. The
#: candidates are ``arrays.placeholder_candidates()``; the arrays give what a factory may need
#: besides the features (a zero-cost proxy, which low fidelities exist).
OptimizerFactory = Callable[[CandidateSet, SpaceArrays, int], Optimizer]


def run_on_arrays(
    arrays: SpaceArrays,
    optimizer: Optimizer,
    workers: int = 1,
    max_cost_s: float | None = None,
) -> Trace:
    """One run of ``optimizer`` through the evaluation loop on one benchmark space, with
    ``workers`` simulated asynchronous workers, until the optimum (best high-fidelity
    valid_acc) has been evaluated at high fidelity, the optimizer stops, or ``max_cost_s``
    evaluation seconds are spent. ``trace.time_to(optimum)`` is then its time to the optimum.
    """
    objective = ArraysObjective(arrays)
    optimum = objective.candidates.archs[arrays.optimum]

    def found(step: TraceStep) -> bool:
        return step.result.fidelity.is_high and step.suggestion.arch == optimum

    return run_loop(
        optimizer,
        InProcessWorkers(objective, workers),
        limits=LoopLimits(max_cost_s=max_cost_s),
        stop=found,
    )


def comparison_seeds(settings: Table4Settings) -> list[int]:
    """Seeds of the registered optimizers' runs: from 1000 on (seeds 0-99 chose the defaults
    of the optimizers beyond the paper, so the table reports fresh ones)."""
    return [1000 + settings.seed * 1_000_003 + r for r in range(settings.runs)]


def _row_of_optimizer(
    label: str,
    factory: OptimizerFactory,
    applies: Callable[[SpaceArrays], bool],
    arrays: SpaceArrays,
    settings: Table4Settings,
    progress: Progress | None,
) -> dict[str, np.ndarray]:
    if not applies(arrays):
        return {}
    candidates = arrays.placeholder_candidates()
    optimum = candidates.archs[arrays.optimum]
    times = np.array(
        [
            run_on_arrays(arrays, factory(candidates, arrays, seed)).time_to(optimum)
            for seed in comparison_seeds(settings)
        ]
    )
    if progress is not None:
        progress(f"{arrays.space} {label}")
    return {label: times}


def register_optimizer(
    name: str,
    factory: OptimizerFactory,
    label: str | None = None,
    applies: Callable[[SpaceArrays], bool] | None = None,
    replace: bool = False,
) -> None:
    """Put an optimizer into Table 4 (``kdnas reproduce table4``): one factory, and each of
    its runs goes through the evaluation loop on each space of the benchmark, charged the
    stored wall times, until the optimum is evaluated at high fidelity.

    Args:
        name: the Table 4 row's name (for ``run_table4(rows=...)``).
        factory: ``(candidates, arrays, seed) -> Optimizer``.
        label: the row's label and JSON key (default ``name``).
        applies: whether the optimizer can run on a space (e.g. its low fidelity exists);
            default every space.
        replace: allow replacing an existing row.
    """
    applies = applies or (lambda arrays: True)
    builder = partial(_row_of_optimizer, label or name, factory, applies)
    register_table4_row(
        name, builder, steps=lambda arrays, settings: int(applies(arrays)), replace=replace
    )


# ---------------------------------------------------------------------------- curves


def anytime_curve(
    arrays: SpaceArrays,
    high_order: np.ndarray,
    grid_s: np.ndarray,
    offset_s: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean anytime curves of many runs on a time grid.

    The incumbent of a run at time t is its best high-fidelity valid_acc so far; once a run
    stopped (it found the optimum) its incumbent stays. Before a run's first high-fidelity
    result its value is NaN and is left out of the mean.

    Args:
        high_order: [R, T] high-fidelity evaluation order (-1 padded).
        grid_s: [G] seconds.
        offset_s: [R] seconds spent before the high-fidelity phase (low-fidelity evaluations).

    Returns:
        (mean incumbent valid_acc [G], mean incumbent test_acc [G]), fractions.
    """
    runs = len(high_order)
    offset = np.zeros(runs) if offset_s is None else np.asarray(offset_s, float)
    ok = high_order >= 0
    safe = np.maximum(high_order, 0)
    elapsed = offset[:, None] + np.cumsum(np.where(ok, arrays.hf_time[safe], 0.0), axis=1)
    valid = np.where(ok, arrays.hf_valid[safe], -np.inf)
    running = np.maximum.accumulate(valid, axis=1)
    # Index of the incumbent after each evaluation.
    best_at = np.maximum.accumulate(
        np.where(valid >= running, np.arange(valid.shape[1])[None, :], 0), axis=1
    )
    incumbent = safe[np.arange(runs)[:, None], best_at]
    out_valid = np.full((runs, len(grid_s)), np.nan)
    out_test = np.full((runs, len(grid_s)), np.nan)
    for r in range(runs):
        count = int(ok[r].sum())
        position = np.searchsorted(elapsed[r, :count], grid_s, side="right") - 1
        has = position >= 0
        chosen = incumbent[r, np.maximum(position, 0)]
        out_valid[r, has] = arrays.hf_valid[chosen[has]]
        out_test[r, has] = arrays.hf_test[chosen[has]]
    with warnings.catch_warnings():
        # Grid points before any run's first result are all-NaN columns: NaN is the answer.
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(out_valid, 0), np.nanmean(out_test, 0)
