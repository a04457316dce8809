"""A real search's settings and how they become data, candidates, objective and optimizer."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kdnas.core import METHODS, Architecture, Fidelity, Optimizer
from kdnas.experiment._limits import (
    LatencyCache,
    LatencyMeasurement,
    NetworkShape,
    SizeLimits,
    network_size,
    sample_within_limits,
)
from kdnas.search.registry import DEFAULT_OPTIMIZER, get_optimizer

if TYPE_CHECKING:
    from kdnas.data import PreparedData
    from kdnas.search import CandidateSet
    from kdnas.spaces import SearchSpace
    from kdnas.store import SQLiteStore
    from kdnas.train import TrainConfig, TrainingObjective, WeightsFolder

__all__ = [
    "PreparedSearch",
    "SearchSettings",
    "StoredOptimizer",
    "build_candidates",
    "build_objective",
    "build_optimizer",
    "check_user_space",
    "load_data",
    "open_search_run",
    "prepare_search",
    "run_config",
    "stored_algorithm",
    "stored_optimizer",
]

logger = logging.getLogger(__name__)

#: Most candidates a search may sample. The sample is drawn, featurised and fingerprinted
#: whole before the first evaluation, and the GP scores every candidate at every step:
#: measured on a busy 2-core machine, 10,000 MobileNetV2 candidates take 8 s to draw and
#: featurise, 100,000 take 70 s (silently), and 10,000,000 ran 300 s past 0.9 GB.
MAX_CANDIDATES = 10_000


@dataclass(frozen=True)
class SearchSettings:
    """Everything that decides a real search (one frozen bundle, saved with the run).

    Args:
        space: search-space name ("mobilenetv2", "shufflenetv2", a registered one, an
            installed package's entry point of group ``kdnas.spaces``, or
            ``package.module:attribute``).
        dataset: "digits" (embedded) or a dataset path (CIFAR folder/archive, image folder).
        algorithm: the name of an optimizer of ``kdnas.search.registry`` (``kdnas search
            --help`` lists them); default ``DEFAULT_OPTIMIZER`` of that registry (proxy-prior
            GP-UCB: full data only, no teacher); "alg2" is the paper's Algorithm 2 with
            distillation.
        method: the low-fidelity loss method (a key of ``kdnas.core.METHODS``); used only by
            optimizers that evaluate at a low fidelity (``OptimizerEntry.uses_low_fidelity``).
        part: the low-fidelity training subset, 1/part of the training set (as ``method``).
        n_lf: low-fidelity evaluations of Algorithms 1 and 2.
        n_candidates: architectures sampled from the space to search over.
        candidate_seed: seed of that sample.
        seed: seed of the optimizer and of every training run (common random numbers).
        lf_epochs: epochs of a low-fidelity run (None: ``epochs``).
        hf_epochs: epochs of a high-fidelity run (None: ``epochs``).
        epochs: the protocol's epochs, also the teacher's.
        width_multiplier: scales every network's channels (1.0 = the paper's networks).
        valid_fraction: share of the training set held out for validation.
        budget_evaluations: evaluations in all (None: no limit).
        budget_seconds: summed evaluation seconds (None: no limit). Reproducible: a resumed
            search charges stored evaluations their recorded seconds. Both budgets apply to
            every optimizer but alg1, which always makes n_lf + 1 evaluations.
        beta: UCB weight of the posterior std; None: the algorithm's own (``ucb_beta``).
        train: further ``TrainConfig`` overrides (batch_size, lr, ...).
        hyperparameters: per-method loss overrides, e.g. {"kd": {"tau": 4.0}}.
        device: "cpu", "cuda", ...; None picks CUDA when available (not part of the run's
            fingerprint: it changes timings, not what is searched).
        teacher_data: "full" (default, the paper's): the teacher learns once from the whole
            training pool (never the validation split) with the high-fidelity protocol, and
            that training is the original network's high-fidelity evaluation; "subset": from
            the low-fidelity subset with ``epochs`` epochs (earlier kdnas versions).
        allow_chance_teacher: distill even from a teacher no better than chance (default:
            the search refuses to start; a guard, not part of the fingerprint).
        resolution: image side in pixels (None: the dataset's default, 16 for the digits, 32
            for image folders, CIFAR's own 32).
        test_fraction: share of every class a flat ``<class>/`` image folder gives its test
            part (None: ``kdnas.data.FLAT_TEST_FRACTION``); refused for datasets that have
            their own test part. The split enters the fingerprint.
        max_params: the most trainable parameters a candidate may have (None: no limit).
        max_multiply_adds: the most multiply-adds of one image's forward pass (None: none).
        max_latency_ms: the most milliseconds of one forward pass of a batch of
            ``latency_batch_size`` images on the search's device (None: no limit).
        latency_batch_size: the batch the latency limit applies to (batch 1 is measured too).
            The limits filter the candidates before anything trains
            (``kdnas.experiment._limits``) and enter the fingerprint when set.
        teacher_file: a ``torch.export`` program (``.pt2``) the user trained, distilled from
            instead of training the original network; its SHA-256 enters the fingerprint in
            place of the teacher's protocol. It gives logits only: ``method`` "kd".
        optimizer_preset: the version of the optimizer's own settings
            (``OptimizerEntry.preset``; None: its current one). A run records it when above 1
            and resumes with it, so a preset changed by a later release does not change how a
            stored run goes on.
    """

    space: str = "mobilenetv2"
    dataset: str = "digits"
    algorithm: str = DEFAULT_OPTIMIZER
    method: str = "nst"
    part: int = 27
    n_lf: int = 10
    n_candidates: int = 100
    candidate_seed: int = 0
    seed: int = 0
    lf_epochs: int | None = None
    hf_epochs: int | None = None
    epochs: int = 100
    width_multiplier: float = 1.0
    valid_fraction: float = 0.1
    budget_evaluations: int | None = None
    budget_seconds: float | None = None
    beta: float | None = None
    train: Mapping[str, Any] = field(default_factory=dict)
    hyperparameters: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    device: str | None = None
    teacher_data: str = "full"
    allow_chance_teacher: bool = False
    resolution: int | None = None
    test_fraction: float | None = None
    max_params: int | None = None
    max_multiply_adds: int | None = None
    max_latency_ms: float | None = None
    latency_batch_size: int = 1
    teacher_file: str | None = None
    optimizer_preset: int | None = None

    def __post_init__(self) -> None:
        from kdnas.train import TEACHER_DATA

        if self.teacher_data not in TEACHER_DATA:
            raise ValueError(
                f"unknown teacher_data {self.teacher_data!r}; valid: {', '.join(TEACHER_DATA)}"
            )
        entry = get_optimizer(self.algorithm)  # unknown or retired: a ValueError naming them
        entry.resolve_preset(self.optimizer_preset)  # an unknown one: a ValueError naming them
        if self.method not in METHODS:
            raise ValueError(
                f"unknown method {self.method!r}; valid methods: {', '.join(METHODS)}"
            )
        if self.method == "nokd" and self.part == 1 and entry.uses_low_fidelity:
            raise ValueError("the low fidelity (part 1, nokd) equals the high fidelity")
        for name in ("part", "n_lf", "n_candidates", "epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_candidates > MAX_CANDIDATES:
            raise ValueError(
                f"n_candidates must be at most {MAX_CANDIDATES:,}, got {self.n_candidates:,}: "
                f"the GP scores every candidate at every step"
            )
        for name in ("seed", "candidate_seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if entry.uses_low_fidelity and self.n_lf > self.n_candidates:
            raise ValueError(
                f"n_lf ({self.n_lf}) cannot exceed the number of candidates ({self.n_candidates})"
            )
        for name in ("lf_epochs", "hf_epochs", "budget_evaluations"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if self.budget_seconds is not None and not (
            math.isfinite(self.budget_seconds) and self.budget_seconds > 0
        ):
            raise ValueError(f"budget_seconds must be > 0, got {self.budget_seconds!r}")
        if self.resolution is not None and (
            isinstance(self.resolution, bool)
            or not isinstance(self.resolution, int)
            or self.resolution < 8
        ):
            raise ValueError(
                f"resolution must be an integer of at least 8 pixels, got {self.resolution!r}"
            )
        self.limits  # noqa: B018 - checks the limits (one line each)
        if self.teacher_file is not None:
            from kdnas.distill import LOGIT_METHODS

            if not Path(self.teacher_file).is_file():
                raise ValueError(f"--teacher {self.teacher_file}: no such file")
            if not entry.uses_low_fidelity and self.method not in LOGIT_METHODS:
                raise ValueError(
                    f"--teacher is distilled from at the low fidelity, which {self.algorithm} "
                    f"does not evaluate at: use --algorithm alg2 --method kd"
                )
            if self.method not in LOGIT_METHODS:
                raise ValueError(
                    f"--teacher gives a network's logits only, which method {self.method!r} "
                    f"cannot distill from: use --method kd"
                )
            if self.teacher_data != "full":
                raise ValueError("--teacher and --teacher-data subset exclude each other")
        if self.test_fraction is not None and not (0.0 < self.test_fraction < 1.0):
            raise ValueError(f"test_fraction must lie in (0, 1), got {self.test_fraction!r}")
        if not (0.0 < self.valid_fraction < 1.0):
            raise ValueError(f"valid_fraction must lie in (0, 1), got {self.valid_fraction!r}")
        if not (self.width_multiplier > 0 and math.isfinite(self.width_multiplier)):
            raise ValueError(f"width_multiplier must be > 0, got {self.width_multiplier!r}")
        if self.beta is not None and not self.beta >= 0:
            raise ValueError(f"beta must be >= 0, got {self.beta!r}")
        unknown = sorted(set(self.hyperparameters) - set(METHODS))
        if unknown:
            raise ValueError(
                f"hyperparameters name unknown method(s) {', '.join(unknown)}; "
                f"valid methods: {', '.join(METHODS)}"
            )
        from kdnas.distill import loss_hyperparameters

        for method, values in self.hyperparameters.items():
            loss_hyperparameters(method, self.space, values)  # names and ranges, before work
        object.__setattr__(self, "train", dict(self.train))
        object.__setattr__(
            self, "hyperparameters", {k: dict(v) for k, v in self.hyperparameters.items()}
        )

    @property
    def limits(self) -> SizeLimits:
        """The size limits the candidates are filtered by (``SizeLimits.any``: any set)."""
        return SizeLimits(
            self.max_params, self.max_multiply_adds, self.max_latency_ms, self.latency_batch_size
        )

    @property
    def low_fidelity(self) -> Fidelity:
        return Fidelity(part=self.part, method=self.method, epochs=self.lf_epochs)

    @property
    def high_fidelity(self) -> Fidelity:
        return Fidelity(part=1, method="nokd", epochs=self.hf_epochs)

    @property
    def needs_teacher(self) -> bool:
        """Whether the search distills (its low fidelity uses a teacher)."""
        return get_optimizer(self.algorithm).uses_low_fidelity and self.method != "nokd"

    @property
    def teacher_epochs(self) -> int | None:
        """The teacher's epochs: the high fidelity's for "full", the protocol's otherwise."""
        return self.hf_epochs if self.teacher_data == "full" else None

    @property
    def preset(self) -> int:
        """The optimizer's preset version used: ``optimizer_preset``, else its current one."""
        return get_optimizer(self.algorithm).resolve_preset(self.optimizer_preset)

    @property
    def ucb_beta(self) -> float:
        """The UCB weight used: ``beta``, else the algorithm's own for its preset (the paper's
        0.5, or the preset's for proxy-gp-ucb, screening-gp-ucb and optimum-search, chosen
        with it)."""
        if self.beta is not None:
            return self.beta
        return get_optimizer(self.algorithm).beta_of(self.optimizer_preset)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_data(settings: SearchSettings, gray_as_rgb: bool = False) -> PreparedData:
    """The dataset of ``settings``, split and normalised.

    Args:
        gray_as_rgb: a grayscale image folder as kdnas 0.1 loaded it, three equal channels
            (its stores resume under the data hash they were made with); other data as usual.

    Raises:
        kdnas.data.DatasetError: a missing or corrupt dataset (the message names the path).
    """
    from kdnas.data import ImageSet, load_dataset, prepare

    dataset = load_dataset(
        settings.dataset, resolution=settings.resolution, test_fraction=settings.test_fraction
    )
    if gray_as_rgb and dataset.in_channels == 1:

        def rgb(images: ImageSet) -> ImageSet:
            return ImageSet(images.images.repeat(1, 3, 1, 1), images.labels)

        dataset = dataclasses.replace(dataset, train=rgb(dataset.train), test=rgb(dataset.test))
    return prepare(dataset, valid_fraction=settings.valid_fraction, resolution=settings.resolution)


def gray_folder_as_before(settings: SearchSettings) -> bool:
    """Whether ``settings.dataset`` is an image folder that kdnas 0.1 loaded with three equal
    channels where kdnas now loads one (the embedded digits were always one channel)."""
    return settings.dataset != "digits" and Path(settings.dataset).is_dir()


def sample_architectures(space: SearchSpace, count: int, seed: int) -> list[Architecture]:
    """``count`` distinct architectures drawn from ``space`` with ``seed``, the original first.

    The original network (the teacher) is always a candidate, so a search can compare
    against it and can find it.
    """
    rng = np.random.default_rng(seed)
    chosen: dict[str, Architecture] = {}
    original = space.original()
    chosen[original.key()] = original
    tries = 0
    while len(chosen) < count:
        arch = space.sample(rng)
        chosen.setdefault(arch.key(), arch)
        tries += 1
        if tries > 100 * count:
            raise ValueError(
                f"space {space.name} yielded only {len(chosen)} distinct architectures in "
                f"{tries} draws; ask for fewer candidates"
            )
    return list(chosen.values())


@dataclass(frozen=True)
class PreparedSearch:
    """What every real search starts from (``kdnas search``, ``kdnas bench build``, ``kdnas
    demo``), built in one place by ``prepare_search``.

    Args:
        space: the search space.
        data: the dataset, split and normalised.
        archs: the candidates, the space's original network first.
        candidates: ``archs`` with the space's standardised features.
        config: the run's fingerprinted configuration (``run_config``).
        sizes: (parameters, multiply-adds) of every architecture the size limits were checked
            on, by ``Architecture.key()`` (empty without limits).
        latencies: the latency measurements taken for the limit, by architecture key: at
            batch 1 and at the limit's batch size (empty without a latency limit).
        rejected: architectures drawn but left out by the limits.
    """

    space: SearchSpace
    data: PreparedData
    archs: tuple[Architecture, ...]
    candidates: CandidateSet
    config: dict[str, Any]
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    latencies: dict[str, tuple[LatencyMeasurement, ...]] = field(default_factory=dict)
    rejected: int = 0


def prepare_search(
    settings: SearchSettings,
    archs: Sequence[Architecture] | None = None,
    latency_cache: LatencyCache | None = None,
    gray_as_rgb: bool = False,
) -> PreparedSearch:
    """The space, data, candidates and run configuration of ``settings``; ``archs`` (each
    checked against the space) replaces the sample of ``n_candidates``. With size limits, the
    sample is drawn until ``n_candidates`` fit (and given ``archs`` are filtered); latencies
    are read from or added to ``latency_cache`` (default: one in memory).

    Raises:
        ValueError: an unknown space or an architecture outside it; a missing or corrupt
            dataset (``kdnas.data.DatasetError``, naming the path); limits that too few
            architectures meet.
    """
    from kdnas.spaces import get_space, is_builtin_space

    space = get_space(settings.space)
    data = load_data(settings, gray_as_rgb)
    if not is_builtin_space(settings.space):
        check_user_space(space, settings, data)
    if settings.teacher_file is not None:
        from kdnas.train import load_exported_teacher

        # Loaded once here to refuse a file that cannot teach this data before anything
        # trains; its accuracy is measured when the search starts.
        load_exported_teacher(
            settings.teacher_file, data.in_channels, data.resolution, data.num_classes
        )
    limits = settings.limits
    filter_ = _LimitFilter(space, settings, data, latency_cache) if limits.any else None
    if archs:
        for arch in archs:
            space.validate(arch)
        chosen = list(archs)
        if filter_ is not None:
            chosen = [arch for arch in chosen if filter_(arch)]
            if not chosen:
                raise ValueError(f"none of the {len(archs)} architectures is within the limits")
    elif filter_ is not None:
        chosen = sample_within_limits(
            space, settings.n_candidates, settings.candidate_seed, filter_
        )
    else:
        chosen = sample_architectures(space, settings.n_candidates, settings.candidate_seed)
    return PreparedSearch(
        space,
        data,
        tuple(chosen),
        build_candidates(space, chosen),
        run_config(settings, data, chosen),
        sizes={} if filter_ is None else dict(filter_.sizes),
        latencies={} if filter_ is None else dict(filter_.latencies),
        rejected=0 if filter_ is None else filter_.rejected,
    )


class _LimitFilter:
    """Whether an architecture is within ``settings.limits``: parameters and multiply-adds
    first (closed forms), the latency (measured, cached) only for those within both."""

    def __init__(
        self,
        space: SearchSpace,
        settings: SearchSettings,
        data: PreparedData,
        cache: LatencyCache | None,
    ) -> None:
        self.space = space
        self.limits = settings.limits
        self.device = settings.device
        self.shape = NetworkShape(
            data.num_classes, data.in_channels, data.resolution, settings.width_multiplier
        )
        self.cache = cache if cache is not None else LatencyCache()
        self.sizes: dict[str, tuple[int, int]] = {}
        self.latencies: dict[str, tuple[LatencyMeasurement, ...]] = {}
        self.rejected = 0

    def __call__(self, arch: Architecture) -> bool:
        fits = self._fits(arch)
        self.rejected += not fits
        return fits

    def _fits(self, arch: Architecture) -> bool:
        limits = self.limits
        params, multiply_adds = network_size(self.space, arch, self.shape)
        self.sizes[arch.key()] = (params, multiply_adds)
        if limits.max_params is not None and params > limits.max_params:
            return False
        if limits.max_multiply_adds is not None and multiply_adds > limits.max_multiply_adds:
            return False
        if limits.max_latency_ms is None:
            return True
        batches = sorted({1, limits.latency_batch_size})
        measured = tuple(
            self.cache.latency(self.space, arch, self.shape, batch, self.device)
            for batch in batches
        )
        self.latencies[arch.key()] = measured
        return measured[-1].median_ms <= limits.max_latency_ms


def check_user_space(space: SearchSpace, settings: SearchSettings, data: PreparedData) -> None:
    """Check a user's space against the search before anything trains: its original network
    builds for this data, answers a batch with one score per class, and has ``forward_taps``
    when the method needs more than logits (``kdnas.distill.LOGIT_METHODS``).

    Raises:
        ValueError: one line naming what failed and what to change.
    """
    import torch

    from kdnas.distill import LOGIT_METHODS
    from kdnas.models import has_taps

    where = f"search space {settings.space}"
    original = space.original()
    shape = (2, data.in_channels, data.resolution, data.resolution)
    try:
        space.validate(original)
        network = space.build_network(
            original,
            num_classes=data.num_classes,
            in_channels=data.in_channels,
            width_multiplier=settings.width_multiplier,
        )
        with torch.no_grad():
            logits = network.eval()(torch.zeros(shape))
    except Exception as error:  # the user's code: whatever it raises is a usage error here
        text = " ".join(str(error).split())
        raise ValueError(
            f"{where}: its original network fails on a {' x '.join(map(str, shape))} batch "
            f"of {data.name}: {type(error).__name__}: {text}"
        ) from None
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (2, data.num_classes):
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(
            f"{where}: its network must return logits of shape (batch, {data.num_classes}) "
            f"for {data.name}, got {got}"
        )
    uses_taps = get_optimizer(settings.algorithm).uses_low_fidelity and (
        settings.method not in LOGIT_METHODS
    )
    if uses_taps and not has_taps(network):
        raise ValueError(
            f"{where}: its networks have no forward_taps, which method {settings.method!r} "
            f"needs (feature maps and embedding); use --method {' or '.join(LOGIT_METHODS)} "
            f"(logits only) or give the networks forward_taps (docs/search_spaces.md)"
        )


def build_candidates(space: SearchSpace, archs: Sequence[Architecture]) -> CandidateSet:
    """The candidate set of ``archs`` with the space's features, standardised as in the paper."""
    from kdnas.search import CandidateSet

    return CandidateSet.from_raw(list(archs), space.feature_matrix(list(archs)))


def train_config(settings: SearchSettings, data: PreparedData) -> TrainConfig:
    from kdnas.train import TrainConfig

    overrides = dict(settings.train)
    overrides.setdefault("epochs", settings.epochs)
    overrides.setdefault("width_multiplier", settings.width_multiplier)
    return TrainConfig.for_data(data, **overrides)


def build_objective(
    settings: SearchSettings,
    data: PreparedData,
    teacher_dir: str | Path | None,
    cache_dir: str | Path | None = None,
    weights: WeightsFolder | None = None,
) -> TrainingObjective:
    """The training objective of ``settings`` (teachers saved under ``teacher_dir``, teacher
    summaries under ``cache_dir``, which every process sharing it reads: None keeps them in
    the memory of each process; full-data evaluations keep their weights in ``weights``)."""
    from kdnas.spaces import get_space
    from kdnas.train import TeacherCache, TrainingObjective

    return TrainingObjective(
        get_space(settings.space),
        data,
        train_config(settings, data),
        teacher_dir=teacher_dir,
        seed=settings.seed,
        device=settings.device,
        hyperparameters=settings.hyperparameters,
        cache=TeacherCache(directory=cache_dir) if cache_dir is not None else None,
        teacher_data=settings.teacher_data,
        teacher_epochs=settings.teacher_epochs,
        allow_chance_teacher=settings.allow_chance_teacher,
        teacher_file=settings.teacher_file,
        weights=weights,
    )


def build_optimizer(
    settings: SearchSettings, candidates: CandidateSet, resolution: int = 32
) -> Optimizer:
    """A fresh optimizer of ``settings.algorithm`` over ``candidates`` (from the registry).

    ``resolution`` (pixels) is the image size at which the optimizers that read the zero-cost
    proxy count multiply-adds.
    """
    from kdnas.search import Budget, OptimizerRequest, multiply_add_proxy
    from kdnas.spaces import get_space

    entry = get_optimizer(settings.algorithm)
    proxy = None
    if entry.uses_proxy:
        proxy = multiply_add_proxy(get_space(settings.space), candidates.archs, resolution)
    request = OptimizerRequest(
        candidates,
        seed=settings.seed,
        high_fidelity=settings.high_fidelity,
        low_fidelities=(settings.low_fidelity,) if entry.uses_low_fidelity else (),
        n_lf=settings.n_lf,
        beta=settings.ucb_beta,
        budget=Budget(
            max_evaluations=settings.budget_evaluations, max_cost_s=settings.budget_seconds
        ),
        proxy=proxy,
        preset=settings.optimizer_preset,
    )
    return entry.make(request)


def run_config(
    settings: SearchSettings, data: PreparedData, archs: Sequence[Architecture]
) -> dict[str, Any]:
    """The configuration fingerprinted with a run: what decides its results.

    Budgets are left out, so a finished search can be resumed with a larger budget and goes
    on exactly as if it had been given that budget from the start; the device and
    deterministic kernels are left out because they change timings and bits, not what is
    searched. The candidates are listed in full and the dataset is identified by its name and
    the content hash of its training pool, not by the path it was given as: ``imgs``,
    ``./imgs/`` and its absolute path resume one run. The teacher's protocol is part of it;
    stores made before the teacher had one (``teacher_data`` "subset") keep their
    fingerprint, so they resume with ``teacher_data="subset"``.
    """
    values = settings.to_dict()
    for name in ("budget_evaluations", "budget_seconds", "device", "allow_chance_teacher"):
        values.pop(name)
    teacher_file = values.pop("teacher_file")
    # Added later: present only when used, so that older runs keep their fingerprint. The
    # split of a flat folder is recorded as drawn (the default fraction included).
    values.pop("test_fraction")
    if values["resolution"] is None:
        values.pop("resolution")
    for name in ("max_params", "max_multiply_adds", "max_latency_ms", "latency_batch_size"):
        values.pop(name)
    if settings.limits.any:
        values["size_limits"] = settings.limits.fingerprint()
    if data.dataset.split is not None:
        values["dataset_split"] = dict(data.dataset.split)
    if values.pop("teacher_data") == "full":
        values["teacher"] = {
            "data": "full",
            **_fidelity_dict(Fidelity(part=1, method="nokd", epochs=settings.teacher_epochs)),
        }
    if teacher_file is not None:
        from kdnas.train import file_sha256

        # The user's teacher by its content: a retrained file at the same path is another.
        values["teacher"] = {"file_sha256": file_sha256(teacher_file)}
    values["beta"] = settings.ucb_beta  # what the search uses, however it was given
    # Recorded from preset 2 on: every run made before presets were versioned used preset 1
    # of its optimizer and keeps its fingerprint.
    values.pop("optimizer_preset")
    if settings.preset > 1:
        values["optimizer_preset"] = settings.preset
    from kdnas.spaces import space_identity

    identity = space_identity(settings.space)  # None for the built-ins: fingerprints as before
    if identity is not None:
        # A user's space by its own name, however it was given (module:attribute or entry
        # point), and its version: a changed space does not resume another's run.
        values["space"] = identity["name"]
        values["space_version"] = identity["version"]
    values["dataset"] = data.name
    values["dataset_hash"] = data.subset(1, 0).content_hash
    # Less eval_batch_size and deterministic (bits, not results) and the fields added later
    # while they hold their legacy value, so that older stores keep their fingerprint.
    values["train_config"] = train_config(settings, data).protocol_dict()
    values["train"].pop("deterministic", None)
    from kdnas.train import LEGACY_FIELD_VALUES

    for name, legacy in LEGACY_FIELD_VALUES.items():
        if name in values["train"] and values["train"][name] == legacy:
            del values["train"][name]  # given explicitly at the value of older stores
    values["candidates"] = [arch.to_json() for arch in archs]
    values["high_fidelity"] = _fidelity_dict(settings.high_fidelity)
    values["low_fidelity"] = _fidelity_dict(settings.low_fidelity)
    return values


def open_search_run(store: SQLiteStore, run_id: str, config: dict[str, Any]) -> dict[str, Any]:
    """Open (create or check) the run ``run_id`` of ``store``; return the config to run with.

    Runs made before the dataset was identified by its content hash alone also carry the
    literal path they were given (``dataset_source``); such a run resumes when everything else
    matches, the data's hash included, under its stored configuration.

    Raises:
        kdnas.store.RunMismatchError: the run was made with other settings.
    """
    from kdnas.store import RunMismatchError, config_fingerprint

    try:
        store.open_run(run_id, config)
    except RunMismatchError:
        stored = store.run(run_id)
        source = None if stored is None else stored.config.get("dataset_source")
        legacy = {**config, "dataset_source": source}
        if source is None or config_fingerprint(legacy) != stored.fingerprint:
            raise
        store.open_run(run_id, legacy)  # still checks the kdnas version
        return legacy
    return config


@dataclass(frozen=True)
class StoredOptimizer:
    """The optimizer settings of a run a store holds, as stored.

    Args:
        algorithm: its optimizer's name (None: the run records none).
        preset: its optimizer's preset version (1 where the run records none: it was made
            before presets were versioned, or with preset 1).
        beta: the UCB weight it was made with (None: the run records none).
    """

    algorithm: str | None
    preset: int
    beta: float | None


def stored_optimizer(store_path: str | Path, run_id: str) -> StoredOptimizer | None:
    """The optimizer settings the run ``run_id`` of the store at ``store_path`` was made with
    (read from its stored configuration once), or None when there is no such store or run.
    Read-only: a missing store is not created.

    What a search that names no optimizer resumes with: a run made when another optimizer
    was the default, or when its optimizer had another preset, goes on with its own.

    Raises:
        kdnas.store.IncompatibleStoreError: the file is not a kdnas store.
        OSError: the file cannot be read.
    """
    import os

    from kdnas.store import SQLiteStore

    try:
        if os.stat(store_path).st_size == 0:
            return None  # an empty file becomes a new store
    except FileNotFoundError:
        return None
    with SQLiteStore(store_path, read_only=True) as store:
        stored = store.run(run_id)
    if stored is None:
        return None
    algorithm = stored.config.get("algorithm")
    preset = stored.config.get("optimizer_preset", 1)
    beta = stored.config.get("beta")
    return StoredOptimizer(
        algorithm if isinstance(algorithm, str) else None,
        preset if isinstance(preset, int) and not isinstance(preset, bool) else 1,
        float(beta) if isinstance(beta, int | float) and not isinstance(beta, bool) else None,
    )


def stored_algorithm(store_path: str | Path, run_id: str) -> str | None:
    """The optimizer the run ``run_id`` of the store at ``store_path`` was made with (its
    stored configuration's ``algorithm``), or None when there is no such store or run (or the
    run records no algorithm): ``stored_optimizer(...).algorithm``.

    Raises:
        kdnas.store.IncompatibleStoreError: the file is not a kdnas store.
        OSError: the file cannot be read.
    """
    stored = stored_optimizer(store_path, run_id)
    return None if stored is None else stored.algorithm


def _fidelity_dict(fidelity: Fidelity) -> dict[str, Any]:
    return {"part": fidelity.part, "method": fidelity.method, "epochs": fidelity.epochs}
