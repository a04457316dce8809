"""The one registry of optimizers: what ``kdnas search --algorithm``, Table 4 and the field
leaderboard read.

An optimizer joins by an ``OptimizerEntry``: its name, what it is, whether it evaluates at a
low fidelity or reads the zero-cost proxy, and a factory that builds it from an
``OptimizerRequest`` (the candidates and everything a search decides: seed, fidelities, budget,
UCB weight, proxy). The built-in entries are the explicit list ``BUILTIN_OPTIMIZERS``; more
come from ``register_optimizer`` (in the running process) or from installed packages through
the entry-point group ``kdnas.optimizers`` (each entry point names an ``OptimizerEntry``), so
that ``kdnas search --algorithm NAME`` finds them too. Nothing registers itself on import.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING

import numpy as np

from kdnas.core import HIGH_FIDELITY, Fidelity, Optimizer
from kdnas.search.candidates import CandidateSet
from kdnas.search.pool import Budget

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "BUILTIN_OPTIMIZERS",
    "DEFAULT_OPTIMIZER",
    "ENTRY_POINT_GROUP",
    "OptimizerEntry",
    "OptimizerRequest",
    "get_optimizer",
    "register_optimizer",
    "registered_optimizers",
    "unregister_optimizer",
]

logger = logging.getLogger(__name__)

#: Installed packages name their optimizers in this entry-point group.
ENTRY_POINT_GROUP = "kdnas.optimizers"

#: The optimizer of a search that names none (``kdnas search``, ``SearchSettings``):
#: proxy-prior GP-UCB, which trains every candidate on the full data in an order guided by a
#: zero-cost prior and so needs no teacher. The paper's Algorithm 2 ("alg2") was the default
#: before; docs/results.md, "The default optimizer", says why it changed.
DEFAULT_OPTIMIZER = "proxy-gp-ucb"


@dataclass(frozen=True)
class OptimizerRequest:
    """What a search asks of an optimizer: everything but the policy itself.

    Args:
        candidates: the architectures and their standardised features.
        seed: the optimizer's seed (None draws one and logs it).
        high_fidelity: the fidelity whose ``valid_acc`` is maximised.
        low_fidelities: the cheap fidelities it may spend seconds on, most preferred first
            (an optimizer that uses one takes the first).
        n_lf: low-fidelity evaluations of the paper's Algorithms 1 and 2.
        beta: UCB weight of the posterior std (None: the default beta of the preset built).
        budget: when to stop asking (None: never).
        proxy: [N] zero-cost proxy per candidate, larger = expected better (log multiply-adds
            per image), known before any training; None where the search has none.
        preset: the version of the optimizer's own settings to build (None: the entry's
            current ``OptimizerEntry.preset``); a run resumes with the one it was made with.
    """

    candidates: CandidateSet
    seed: int | None = None
    high_fidelity: Fidelity = HIGH_FIDELITY
    low_fidelities: tuple[Fidelity, ...] = ()
    n_lf: int = 10
    beta: float | None = None
    budget: Budget | None = None
    proxy: np.ndarray | None = field(default=None, repr=False)
    preset: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "low_fidelities", tuple(self.low_fidelities))

    @property
    def low_fidelity(self) -> Fidelity:
        """The first low fidelity (for optimizers that use one).

        Raises:
            ValueError: the request has none.
        """
        if not self.low_fidelities:
            raise ValueError("this optimizer evaluates at a low fidelity, and none was given")
        return self.low_fidelities[0]

    def required_proxy(self, owner: str) -> np.ndarray:
        if self.proxy is None:
            raise ValueError(f"{owner} needs a zero-cost proxy (log multiply-adds), none given")
        return self.proxy


#: (benchmark space key) -> the low fidelities an optimizer is compared at on a tabular
#: benchmark (Table 4, the field leaderboard), most preferred first.
BenchmarkFidelities = Callable[[str], "Sequence[Fidelity]"]


def _no_low_fidelity(space_key: str) -> tuple[Fidelity, ...]:
    return ()


@dataclass(frozen=True)
class OptimizerEntry:
    """One optimizer of the registry.

    Args:
        name: the CLI name (``kdnas search --algorithm NAME``); letters, digits and dashes.
        description: one line for the CLI's help.
        build: ``(request) -> Optimizer``, a fresh optimizer for one search.
        label: how tables name it (Table 4's row label and JSON key).
        uses_low_fidelity: whether it evaluates at ``request.low_fidelities``.
        uses_proxy: whether it reads ``request.proxy``.
        default_beta: the UCB weight its current preset uses when the request gives none (the
            paper's 0.5 for its own algorithms; a preset's own where it was chosen with
            another).
        experimental: documented and selectable, not recommended (the CLI's help says so).
        benchmark_fidelities: the low fidelities it runs at on a tabular benchmark space.
        table4: a row of ``kdnas reproduce table4`` (the paper's own algorithms are computed
            there by the batched engine instead, so their entries say False).
        leaderboard_key: its key on the field leaderboard (None: not on it).
        leaderboard_label: how the leaderboard names it (default "kdnas " + label).
        preset: the version of its own settings (1, 2, ...) that new runs get. When the
            settings a builder makes change, the number goes up and the builder keeps making
            the earlier ones for ``request.preset``: a run resumes with the preset it was made
            with (``SearchSettings.optimizer_preset``).
        earlier_betas: preset -> its default UCB weight, for earlier presets whose differs
            from ``default_beta``.
    """

    name: str
    description: str
    build: Callable[[OptimizerRequest], Optimizer]
    label: str = ""
    uses_low_fidelity: bool = False
    uses_proxy: bool = False
    default_beta: float = 0.5
    experimental: bool = False
    benchmark_fidelities: BenchmarkFidelities = _no_low_fidelity
    table4: bool = True
    leaderboard_key: str | None = None
    leaderboard_label: str | None = None
    preset: int = 1
    earlier_betas: Mapping[int, float] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c == "-" for c in self.name):
            raise ValueError(
                f"optimizer name {self.name!r}: use letters, digits and dashes (a CLI name)"
            )
        if not callable(self.build):
            raise TypeError(f"optimizer {self.name!r}: build must be callable")
        if not self.label:
            object.__setattr__(self, "label", self.name)
        if isinstance(self.preset, bool) or not isinstance(self.preset, int) or self.preset < 1:
            raise ValueError(f"optimizer {self.name!r}: preset must be an integer >= 1")
        object.__setattr__(self, "earlier_betas", dict(self.earlier_betas))
        if not set(self.earlier_betas) <= set(range(1, self.preset)):
            raise ValueError(
                f"optimizer {self.name!r}: earlier_betas names presets other than the earlier "
                f"ones (1 to {self.preset - 1})"
            )

    @property
    def field_label(self) -> str:
        return self.leaderboard_label or f"kdnas {self.label}"

    @property
    def presets(self) -> tuple[int, ...]:
        """The preset versions it builds, oldest first (the last is the current one)."""
        return tuple(range(1, self.preset + 1))

    def resolve_preset(self, preset: int | None) -> int:
        """``preset``, or the current one for None.

        Raises:
            ValueError: a version it does not build (the message names those it does).
        """
        if preset is None:
            return self.preset
        if isinstance(preset, bool) or not isinstance(preset, int) or preset not in self.presets:
            known = ", ".join(map(str, self.presets))
            raise ValueError(
                f"optimizer {self.name!r} has no preset {preset!r}; its presets: {known} "
                f"(the current one: {self.preset})"
            )
        return preset

    def beta_of(self, preset: int | None = None) -> float:
        """The default UCB weight of ``preset`` (None: the current one)."""
        return self.earlier_betas.get(self.resolve_preset(preset), self.default_beta)

    def make(self, request: OptimizerRequest) -> Optimizer:
        """A fresh optimizer for ``request``: its preset resolved (None: the current one)
        and its beta defaulted to that preset's.

        Raises:
            ValueError: an unknown preset (naming the known ones).
        """
        from dataclasses import replace

        preset = self.resolve_preset(request.preset)
        beta = self.beta_of(preset) if request.beta is None else request.beta
        return self.build(replace(request, preset=preset, beta=beta))


# ---------------------------------------------------------------------------- built-ins


def _random(request: OptimizerRequest) -> Optimizer:
    from kdnas.search.optimizers import RandomSearch

    return RandomSearch(
        request.candidates, request.high_fidelity, seed=request.seed, budget=request.budget
    )


def _algorithm1(request: OptimizerRequest) -> Optimizer:
    from kdnas.search.optimizers import LowFidelityGP

    return LowFidelityGP(
        request.candidates,
        request.n_lf,
        request.low_fidelity,
        seed=request.seed,
        final_fidelity=request.high_fidelity,
    )


def _gp_ucb(request: OptimizerRequest) -> Optimizer:
    from kdnas.search.optimizers import GPUCB

    return GPUCB(
        request.candidates,
        request.high_fidelity,
        seed=request.seed,
        beta=_beta(request),
        budget=request.budget,
    )


def _algorithm2(request: OptimizerRequest) -> Optimizer:
    from kdnas.search.optimizers import MultiFidelityGPUCB

    return MultiFidelityGPUCB(
        request.candidates,
        request.n_lf,
        request.low_fidelity,
        request.high_fidelity,
        seed=request.seed,
        beta=_beta(request),
        budget=request.budget,
    )


def _proxy_prior(request: OptimizerRequest) -> Optimizer:
    from kdnas.search.proxy_prior import ProxyPriorConfig, ProxyPriorGPUCB

    if request.preset == 1:  # until the contrast pick: how runs made then resume
        config = ProxyPriorConfig(
            high_fidelity=request.high_fidelity,
            beta=_beta(request),
            proxy_prior_probability=0.5,
            contrast_after=0,
        )
    elif request.preset == 2:  # until the believer: parallel picks ignored pending ones
        config = ProxyPriorConfig(
            high_fidelity=request.high_fidelity, beta=_beta(request), pending_believer=False
        )
    elif request.preset in (3, None):
        config = ProxyPriorConfig(high_fidelity=request.high_fidelity, beta=_beta(request))
    else:
        raise ValueError(f"proxy-gp-ucb has no preset {request.preset!r}; its presets: 1, 2, 3")
    return ProxyPriorGPUCB(
        request.candidates,
        config,
        seed=request.seed,
        budget=request.budget,
        proxy=request.required_proxy("proxy-gp-ucb"),
    )


def _screening(request: OptimizerRequest) -> Optimizer:
    from kdnas.search.proxy_prior import ProxyPriorConfig, ProxyPriorGPUCB

    config = ProxyPriorConfig.screening(
        screen_fidelity=request.low_fidelity,
        high_fidelity=request.high_fidelity,
        beta=_beta(request),
    )
    return ProxyPriorGPUCB(request.candidates, config, seed=request.seed, budget=request.budget)


def _optimum_search(request: OptimizerRequest) -> Optimizer:
    from kdnas.search.experimental.optimum_search import OptimumSearch, search_config_for

    config = search_config_for(request.low_fidelities, request.high_fidelity, beta=_beta(request))
    return OptimumSearch(
        request.candidates,
        config,
        seed=request.seed,
        budget=request.budget,
        proxy=request.required_proxy("optimum-search"),
    )


def _beta(request: OptimizerRequest) -> float:
    if request.beta is None:
        raise ValueError("OptimizerRequest.beta is None: build through OptimizerEntry.make")
    return request.beta


def _paper_best_cell(space_key: str) -> tuple[Fidelity, ...]:
    """The low fidelity of the paper's best Algorithm 2 cell (its Table 4) for the space."""
    from kdnas.paper import best_algorithm2_cell

    return (Fidelity(*best_algorithm2_cell(space_key)),)


def _screening_fidelity(space_key: str) -> tuple[Fidelity, ...]:
    return (Fidelity(part=3, method="kd"),)


def _kd_ladder(space_key: str) -> tuple[Fidelity, ...]:
    from kdnas.search.experimental.optimum_search import OptimumSearchConfig

    return OptimumSearchConfig().low_fidelities


#: The built-in optimizers: the paper's, then those beyond it, in the order the CLI lists them
#: and the tables print them.
BUILTIN_OPTIMIZERS: tuple[OptimizerEntry, ...] = (
    OptimizerEntry(
        "random",
        "random search at high fidelity",
        _random,
        label="random search (HF)",
        table4=False,
        leaderboard_key="random",
    ),
    OptimizerEntry(
        "gp-ucb",
        "GP-UCB at high fidelity only",
        _gp_ucb,
        label="GP-UCB, HF only (paper's GP)",
        table4=False,
        leaderboard_key="gp_ucb_hf",
    ),
    OptimizerEntry(
        "alg1",
        "Algorithm 1: n_lf random low-fidelity evaluations, a GP, its argmax at high fidelity",
        _algorithm1,
        label="Algorithm 1",
        uses_low_fidelity=True,
        table4=False,
    ),
    OptimizerEntry(
        "alg2",
        "Algorithm 2: n_lf GP-UCB steps at low fidelity, then GP-UCB at high fidelity",
        _algorithm2,
        label="Algorithm 2, paper's best cell",
        uses_low_fidelity=True,
        benchmark_fidelities=_paper_best_cell,
        table4=False,
        leaderboard_key="alg2_best",
    ),
    OptimizerEntry(
        "screening-gp-ucb",
        "GP-UCB whose candidates each pass a low-fidelity run before their high-fidelity one "
        "(experimental: slower than proxy-gp-ucb on the paper's benchmark; docs/results.md)",
        _screening,
        label="screening GP-UCB 1/3 kd",
        uses_low_fidelity=True,
        default_beta=1.0,
        experimental=True,
        benchmark_fidelities=_screening_fidelity,
    ),
    OptimizerEntry(
        "proxy-gp-ucb",
        "GP-UCB at high fidelity with a zero-cost prior (log multiply-adds), no low-fidelity "
        "runs (the fastest measured on the paper's benchmark)",
        _proxy_prior,
        label="proxy-prior GP-UCB (log multiply-adds)",
        uses_proxy=True,
        default_beta=0.5,
        leaderboard_key="proxy_gp_ucb",
        leaderboard_label="kdnas proxy-prior GP-UCB",
        # 1: beta 1.0, prior probability 0.5, no contrast pick; 2: the contrast pick, beta
        # 0.5, prior probability 0.7; 3: ProxyPriorConfig() (2 with the pending believer).
        preset=3,
        earlier_betas={1: 1.0},
    ),
    OptimizerEntry(
        "optimum-search",
        "GP-UCB at high fidelity on what a zero-cost trend, trusted or doubted by the "
        "evidence, leaves unexplained; the low fidelity when its value of information "
        "exceeds its cost (experimental: slower than proxy-gp-ucb where the proxy misleads; "
        "docs/results.md)",
        _optimum_search,
        label="optimum search (GP-UCB on a trusted-or-doubted proxy trend, KD by value of "
        "information)",
        uses_low_fidelity=True,
        uses_proxy=True,
        default_beta=1.0,
        experimental=True,
        benchmark_fidelities=_kd_ladder,
    ),
)

#: Names of optimizers retired from the registry -> what replaces them (a one-line error).
RETIRED_OPTIMIZERS: Mapping[str, str] = {
    "adaptive-gp-ucb": "adaptive-fidelity GP-UCB was retired (superseded by optimum-search, "
    "which keeps its learned fidelity weights; docs/research_notes.md): use --algorithm "
    "optimum-search, or proxy-gp-ucb, the recommended one",
}

_registered: dict[str, OptimizerEntry] = {}


def register_optimizer(entry: OptimizerEntry, replace: bool = False) -> None:
    """Add an optimizer for this process: it is then listed by ``registered_optimizers`` and
    so offered by ``kdnas search``, run as a row of Table 4 and of the field leaderboard.

    Raises:
        ValueError: the name is taken (a built-in, or registered before without ``replace``).
    """
    if not isinstance(entry, OptimizerEntry):
        raise TypeError("register_optimizer takes a kdnas.search.registry.OptimizerEntry")
    if any(e.name == entry.name for e in BUILTIN_OPTIMIZERS) or entry.name in RETIRED_OPTIMIZERS:
        raise ValueError(f"optimizer name {entry.name!r} is kdnas's own")
    if entry.name in _registered and not replace:
        raise ValueError(f"an optimizer named {entry.name!r} is registered already")
    _registered[entry.name] = entry


def unregister_optimizer(name: str) -> None:
    """Remove an optimizer added by ``register_optimizer`` (no-op if it is absent)."""
    _registered.pop(name, None)


def _entry_point_optimizers() -> list[OptimizerEntry]:
    found = []
    for point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry = point.load()
        except Exception as error:  # a broken plugin must not break every search
            logger.warning("optimizer entry point %s could not be loaded: %s", point.value, error)
            continue
        if not isinstance(entry, OptimizerEntry):
            logger.warning(
                "optimizer entry point %s is not a kdnas.search.registry.OptimizerEntry",
                point.value,
            )
            continue
        found.append(entry)
    return found


def registered_optimizers() -> dict[str, OptimizerEntry]:
    """Every optimizer by name: the built-ins, then those of installed packages (entry-point
    group ``kdnas.optimizers``), then those of ``register_optimizer``, each in its order."""
    out = {entry.name: entry for entry in BUILTIN_OPTIMIZERS}
    for entry in _entry_point_optimizers():
        if entry.name in out or entry.name in RETIRED_OPTIMIZERS:
            logger.warning("optimizer entry point %r shadows kdnas's own; ignored", entry.name)
            continue
        out[entry.name] = entry
    out.update(_registered)
    return out


def get_optimizer(name: str) -> OptimizerEntry:
    """The entry named ``name``.

    Raises:
        ValueError: no such optimizer (the message lists the valid names) or a retired one.
    """
    if name in RETIRED_OPTIMIZERS:
        raise ValueError(RETIRED_OPTIMIZERS[name])
    entries = registered_optimizers()
    if name not in entries:
        raise ValueError(f"unknown algorithm {name!r}; valid algorithms: {', '.join(entries)}")
    return entries[name]
