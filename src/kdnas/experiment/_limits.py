"""A user's size limit: parameters, multiply-adds and measured latency, known before training,
so that they filter the candidates; and the accuracy-versus-cost front of what was evaluated.

Sizes are those of the networks as the search builds them (its width multiplier, the data's
channels, classes and resolution): exact closed forms for the built-in spaces (the layer plans
of ``kdnas.spaces``), the built network counted for a user's space. Latency is measured on the
search's device (median of timed repeats after warm-up, at batch 1 and at a batch size of the
user's choice) and cached per architecture and device in a JSON file beside the store, so that
a resumed search sees the same candidates.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kdnas.core import Architecture

if TYPE_CHECKING:
    from kdnas.spaces import SearchSpace
    from kdnas.store import StoredEvaluation

__all__ = [
    "LatencyCache",
    "LatencyMeasurement",
    "NetworkShape",
    "SizeLimits",
    "accuracy_cost_fronts",
    "latency_cache_for",
    "measure_latency",
    "network_size",
    "non_dominated",
    "sample_within_limits",
]

logger = logging.getLogger(__name__)

#: Timed forward passes per measurement and untimed ones before them (the first passes pay
#: for allocation and, on a GPU, kernel selection).
LATENCY_REPEATS = 20
LATENCY_WARMUP = 5


@dataclass(frozen=True)
class SizeLimits:
    """The largest network a user accepts (None: no limit on that measure).

    Args:
        max_params: trainable parameters.
        max_multiply_adds: multiply-accumulates of one forward pass of one image.
        max_latency_ms: milliseconds of one forward pass of a batch of ``latency_batch_size``
            images on the search's device (the median over ``LATENCY_REPEATS`` repeats).
        latency_batch_size: the batch the latency limit applies to; batch 1 is measured too.
    """

    max_params: int | None = None
    max_multiply_adds: int | None = None
    max_latency_ms: float | None = None
    latency_batch_size: int = 1

    def __post_init__(self) -> None:
        for name in ("max_params", "max_multiply_adds"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.max_latency_ms is not None and not (
            math.isfinite(self.max_latency_ms) and self.max_latency_ms > 0
        ):
            raise ValueError(f"max_latency_ms must be > 0, got {self.max_latency_ms!r}")
        batch = self.latency_batch_size
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"latency_batch_size must be a positive integer, got {batch!r}")

    @property
    def any(self) -> bool:
        """Whether any limit is set."""
        return (self.max_params, self.max_multiply_adds, self.max_latency_ms) != (None,) * 3

    def fingerprint(self) -> dict[str, Any]:
        """The limits that are set, for a run's fingerprint (empty when none is)."""
        values = {k: v for k, v in asdict(self).items() if v is not None}
        if self.max_latency_ms is None:
            values.pop("latency_batch_size")
        return values if self.any else {}


@dataclass(frozen=True)
class NetworkShape:
    """How the search builds every network: what sizes depend on besides the genotype."""

    num_classes: int
    in_channels: int
    resolution: int
    width_multiplier: float


def network_size(space: SearchSpace, arch: Architecture, shape: NetworkShape) -> tuple[int, int]:
    """(trainable parameters, multiply-adds of one image) of ``arch`` built as ``shape`` says.

    The built-in spaces use their layer plans (exact, tested against the built networks);
    a user's space is built and counted (``kdnas.models.measure``), as its own closed forms
    need not know the width multiplier or the input channels.
    """
    from kdnas.spaces import MobileNetV2Space, ShuffleNetV2Space
    from kdnas.spaces import mobilenetv2 as mobilenet
    from kdnas.spaces import shufflenetv2 as shufflenet

    if isinstance(space, MobileNetV2Space):
        plan = mobilenet.mobilenetv2_plan(arch, shape.in_channels, shape.width_multiplier)
        return (
            mobilenet.plan_parameter_count(plan, shape.num_classes),
            mobilenet.plan_multiply_adds(plan, shape.resolution, shape.num_classes),
        )
    if isinstance(space, ShuffleNetV2Space):
        plan = shufflenet.shufflenetv2_plan(arch, shape.in_channels, shape.width_multiplier)
        return (
            shufflenet.plan_parameter_count(plan, shape.num_classes),
            shufflenet.plan_multiply_adds(plan, shape.resolution, shape.num_classes),
        )
    return _counted(space, arch, shape)


def _counted(space: SearchSpace, arch: Architecture, shape: NetworkShape) -> tuple[int, int]:
    from kdnas.models import count_multiply_adds, count_parameters

    network = space.build_network(
        arch, shape.num_classes, shape.in_channels, shape.width_multiplier
    )
    size = (shape.in_channels, shape.resolution, shape.resolution)
    return count_parameters(network), count_multiply_adds(network, size)


@dataclass(frozen=True)
class LatencyMeasurement:
    """Milliseconds of one forward pass of a batch, over ``repeats`` timed passes.

    Args:
        batch_size: images per pass.
        median_ms: the median pass (what limits compare).
        q1_ms: the first quartile of the passes.
        q3_ms: the third quartile.
        min_ms: the fastest pass.
        max_ms: the slowest pass (on a shared machine, often one pass interrupted).
        repeats: timed passes (after ``warmup`` untimed ones).
        warmup: untimed passes before them.
        device: the device's description ("cpu (2 threads)", "cuda:0 NVIDIA H100 ...").
    """

    batch_size: int
    median_ms: float
    q1_ms: float
    q3_ms: float
    min_ms: float
    max_ms: float
    repeats: int
    warmup: int
    device: str

    @property
    def spread(self) -> float:
        """(q3 - q1) / median: how far apart the middle half of the repeats lay, a fraction
        (the range, min to max, is kept too, but one interrupted pass decides it)."""
        return (self.q3_ms - self.q1_ms) / self.median_ms if self.median_ms > 0 else math.nan


def measure_latency(
    network: Any,
    shape: NetworkShape,
    batch_size: int,
    device: Any,
    repeats: int = LATENCY_REPEATS,
    warmup: int = LATENCY_WARMUP,
) -> LatencyMeasurement:
    """Time ``network``'s forward pass (eval mode, no gradient) on a batch of zeros.

    Each pass is timed alone, the device synchronised before and after it, so the figure is
    the latency of one call, not a throughput; the median resists the odd slow pass of a
    shared machine, and min/max show the spread.
    """
    import torch

    from kdnas.train import describe_device

    device = torch.device(device)
    network = network.to(device).eval()
    images = torch.zeros(
        (batch_size, shape.in_channels, shape.resolution, shape.resolution), device=device
    )
    times: list[float] = []
    with torch.no_grad():
        for index in range(warmup + repeats):
            _synchronize(device)
            start = time.perf_counter()
            network(images)
            _synchronize(device)
            if index >= warmup:
                times.append((time.perf_counter() - start) * 1000.0)
    q1, median, q3 = statistics.quantiles(times, n=4)
    return LatencyMeasurement(
        batch_size=batch_size,
        median_ms=median,
        q1_ms=q1,
        q3_ms=q3,
        min_ms=min(times),
        max_ms=max(times),
        repeats=repeats,
        warmup=warmup,
        device=describe_device(device),
    )


def _synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


class LatencyCache:
    """Latencies by architecture, device and network shape; in a JSON file when given one.

    A measurement is taken once and read back after, so a search resumed on the same machine
    filters its candidates the same way (its fingerprint lists them), and a second search
    of the same space does not measure again.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = None if path is None else Path(path)
        self._entries: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.is_file():
            try:
                self._entries = json.loads(self.path.read_text())
            except (OSError, ValueError) as error:
                logger.warning("latency cache %s unreadable (%s); measuring again", path, error)

    @staticmethod
    def key(arch: Architecture, shape: NetworkShape, batch_size: int, device: str) -> str:
        return json.dumps(
            [arch.key(), asdict(shape), batch_size, device], sort_keys=True, separators=(",", ":")
        )

    def get(self, key: str) -> LatencyMeasurement | None:
        entry = self._entries.get(key)
        try:
            return None if entry is None else LatencyMeasurement(**entry)
        except TypeError:  # written by another kdnas version: measure again
            return None

    def put(self, key: str, measurement: LatencyMeasurement) -> None:
        self._entries[key] = asdict(measurement)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(self.path.name + ".tmp")
            temporary.write_text(json.dumps(self._entries, indent=1, sort_keys=True))
            temporary.replace(self.path)  # never a half-written cache

    def latency(
        self,
        space: SearchSpace,
        arch: Architecture,
        shape: NetworkShape,
        batch_size: int,
        device: Any,
    ) -> LatencyMeasurement:
        """The cached measurement, or a new one (the network built here, seeded)."""
        import torch

        from kdnas.train import describe_device, pick_device

        where = pick_device(device) if not isinstance(device, torch.device) else device
        key = self.key(arch, shape, batch_size, describe_device(where))
        found = self.get(key)
        if found is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                network = space.build_network(
                    arch, shape.num_classes, shape.in_channels, shape.width_multiplier
                )
            found = measure_latency(network, shape, batch_size, where)
            self.put(key, found)
        return found


def latency_cache_for(store_path: str | os.PathLike[str]) -> Path | None:
    """Where a store's searches cache latencies: ``<store>.latency.json`` beside it."""
    if str(store_path) == ":memory:":
        return None
    path = Path(store_path)
    return path.with_name(path.name + ".latency.json")


def sample_within_limits(
    space: SearchSpace,
    count: int,
    seed: int,
    fits: Callable[[Architecture], bool],
) -> list[Architecture]:
    """``count`` distinct architectures of ``space`` drawn with ``seed`` that ``fits`` accepts,
    the original first when it fits (the draw of ``sample_architectures``, filtered).

    Raises:
        ValueError: fewer than ``count`` fit in ``100 * count`` draws (one line: how many did).
    """
    rng = np.random.default_rng(seed)
    chosen: dict[str, Architecture] = {}
    seen: set[str] = set()
    original = space.original()
    seen.add(original.key())
    if fits(original):
        chosen[original.key()] = original
    tries = 0
    while len(chosen) < count:
        arch = space.sample(rng)
        tries += 1
        if arch.key() not in seen:
            seen.add(arch.key())
            if fits(arch):
                chosen[arch.key()] = arch
        if tries > 100 * count and len(chosen) < count:
            raise ValueError(
                f"only {len(chosen)} of {len(seen)} distinct {space.name} architectures drawn "
                f"({tries} draws) are within the size limits; raise the limits or ask for "
                f"fewer candidates (--candidates)"
            )
    return list(chosen.values())


def non_dominated(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (cost, accuracy) no other point dominates (no more cost and more
    accuracy, or less cost and no less accuracy), by increasing cost; of equal points the
    first."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    front: list[int] = []
    best = -math.inf
    for index in order:
        if points[index][1] > best:
            front.append(index)
            best = points[index][1]
    return front


def accuracy_cost_fronts(
    evaluations: Iterable[StoredEvaluation],
    describe: Callable[[Architecture], str],
    latencies: dict[str, float] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """The accuracy-versus-cost fronts of the ok evaluations given (one per cost: parameters,
    multiply-adds, and latency in ms where measured): the networks no other evaluated network
    beats on both validation accuracy and that cost, by increasing cost."""
    rows = [e for e in evaluations if e.result.ok]
    costs: dict[str, Callable[[StoredEvaluation], float | None]] = {
        "params": lambda e: e.result.metrics.get("params"),
        "multiply_adds": lambda e: e.result.metrics.get("multiply_adds"),
    }
    if latencies:
        costs["latency_ms"] = lambda e: latencies.get(e.arch.key())
    fronts: dict[str, list[dict[str, Any]]] = {}
    for name, cost_of in costs.items():
        measured = [(e, cost_of(e)) for e in rows]
        measured = [(e, c) for e, c in measured if c is not None]
        points = [(float(c), e.result.valid_acc) for e, c in measured]
        fronts[name] = [
            {
                "arch": describe(measured[i][0].arch),
                "arch_json": measured[i][0].arch.to_json(),
                name: points[i][0],
                "valid_acc": measured[i][0].result.valid_acc,
                "test_acc": measured[i][0].result.test_acc,
            }
            for i in non_dominated(points)
        ]
    return fronts
