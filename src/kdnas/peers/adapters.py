"""The field's multi-fidelity optimizers, from their own libraries, behind kdnas's ask/tell.

A user choosing a tool compares kdnas with what they already run: TPE with a Hyperband or
successive-halving pruner (Optuna), SMAC's multi-fidelity facade (Hyperband with a random
forest), and the zero-cost baseline of the NAS literature. Each adapter here is a
``kdnas.core.Optimizer``, so the one evaluation loop (``kdnas.loop``) drives it with
one or N simulated workers on the benchmark's clock, exactly like kdnas's own optimizers.
The peers' own algorithms decide everything; an adapter only translates:

- **The fidelity ladder** (``FidelityLadder``): 1/27 -> 1/9 -> 1/3 -> full data, as the
  resources 1, 3, 9, 27 the libraries count in. Each rung is a separate training charged its
  stored wall time (no continuation between rungs); the low rungs train with one loss method
  (fixed per run, or the method as a categorical choice of the peer where it takes one); the
  top rung is the paper's high fidelity (full data, plain cross-entropy).
- **The candidates** (``encoding``): ``"index"`` (the default) gives the peer one categorical
  architecture id; ``"features"`` gives it one float per standardised feature column (the
  search space a user would declare: the information kdnas's GP gets) and evaluates the
  nearest candidate not yet evaluated (nor running) at the fidelity the configuration starts
  at. A point in a continuous space stands for an architecture only through this rounding:
  a user who declared the space would build the nearest architecture not yet trained rather
  than train one again or hand back a stored result for a point the peer never saw. (Handing
  it back made TPE converge on what it had seen: hundreds of proposals in a row rounding to
  trained architectures, and runs ended long before the optimum.) A configuration keeps
  its candidate as it climbs the ladder. Only when every candidate has been evaluated at
  that fidelity is the nearest one taken, and the repeat answered as below.
- **Repeats**: a peer may propose an (architecture, fidelity) already evaluated (with
  ``"index"``, the same id again); a real user would read it from their results rather than
  train again, so the adapter answers it from its record at no cost, inside ``ask``. One
  still running is awaited, not run twice.

The peer libraries are imported when an adapter is built, never when kdnas is imported:
``pip install 'kdnas[field]'`` adds them. Their own clocks are real time, so none of their
time or trial limits is used; the loop's limits and stop predicate end a run.

``ZeroCostSuccessiveHalving`` is the literature's zero-cost baseline (rank by a proxy known
before any training, then successive halving over the top), written here: it has no library.

``DEHBMultiFidelity`` drives DEHB (differential evolution in Hyperband's brackets) from the
``dehb`` library; dehb 0.1.2 requires numpy < 2, so ``pip install 'kdnas[dehb]'`` belongs in
an environment of its own.
"""

from __future__ import annotations

import importlib
import logging
import math
import shutil
import tempfile
from collections import deque
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any

import numpy as np

from kdnas.core import HIGH_FIDELITY, EvalResult, Fidelity, Suggestion
from kdnas.search.candidates import CandidateSet
from kdnas.search.pool import TrialPool

__all__ = [
    "ENCODINGS",
    "DEHBMultiFidelity",
    "FidelityLadder",
    "OptunaMultiFidelity",
    "SMACMultiFidelity",
    "SyneTuneMultiFidelity",
    "ZeroCostSuccessiveHalving",
    "peer_versions",
]

logger = logging.getLogger(__name__)

#: How a peer sees the candidates: one categorical architecture id, or a float per
#: standardised feature column (the nearest candidate is evaluated).
ENCODINGS: tuple[str, ...] = ("index", "features")

#: The peers' distributions (pip names), for ``peer_versions``.
PEERS: tuple[str, ...] = ("optuna", "smac", "ConfigSpace", "dehb", "syne-tune")


def _import_peer(module: str, extra: str = "field") -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{module} is not installed: pip install 'kdnas[{extra}]' (or pip install "
            f"{module.split('.')[0]}) to use this adapter ({error})"
        ) from None


def peer_versions() -> dict[str, str]:
    """{distribution: installed version, or "absent"} of the field's libraries."""
    from importlib import metadata

    out = {}
    for name in PEERS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


@dataclass(frozen=True)
class FidelityLadder:
    """Rungs of training-data parts, cheapest first, ending at the full data.

    Args:
        parts: 1/part of the training data per rung, decreasing, the last 1 (the paper's
            high fidelity: full data, plain cross-entropy).

    The libraries count the rungs as resources ``parts[0] / part`` (1, 3, 9, 27), and
    ``eta`` is the ratio of consecutive parts.
    """

    parts: tuple[int, ...] = (27, 9, 3, 1)

    def __post_init__(self) -> None:
        parts = tuple(self.parts)
        if len(parts) < 2 or parts[-1] != 1 or any(a <= b for a, b in pairwise(parts)):
            raise ValueError(f"FidelityLadder.parts must decrease to 1, got {parts}")
        ratios = {a // b for a, b in pairwise(parts)}
        if len(ratios) != 1 or any(a % b for a, b in pairwise(parts)):
            raise ValueError(f"FidelityLadder.parts must be a geometric ladder, got {parts}")
        object.__setattr__(self, "parts", parts)

    @property
    def eta(self) -> int:
        """The reduction factor: the ratio of consecutive parts."""
        return self.parts[0] // self.parts[1]

    @property
    def resources(self) -> tuple[int, ...]:
        """The rungs as the libraries count them: parts[0] / part (1, 3, 9, 27)."""
        return tuple(self.parts[0] // part for part in self.parts)

    @property
    def top(self) -> int:
        return len(self.parts) - 1

    def fidelity(self, rung: int, method: str) -> Fidelity:
        """The fidelity of ``rung`` with loss ``method``; the top rung is always high fidelity."""
        part = self.parts[rung]
        return HIGH_FIDELITY if part == 1 else Fidelity(part=part, method=method)

    def rung_of_resource(self, resource: float) -> int:
        """The rung a library's budget stands for (budgets are ``resources``, maybe floats)."""
        nearest = int(np.argmin([abs(math.log(resource / r)) for r in self.resources]))
        if not math.isclose(resource, self.resources[nearest], rel_tol=1e-6):
            raise ValueError(f"budget {resource} is not a rung of {self.resources}")
        return nearest


def _check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    methods = tuple(methods)
    if not methods or len(set(methods)) != len(methods):
        raise ValueError(f"methods must be distinct and at least one, got {methods}")
    for method in methods:
        Fidelity(part=2, method=method)  # raises with the valid names
    return methods


class _Encoding:
    """Maps a peer's parameters to a candidate index (see ``ENCODINGS``)."""

    def __init__(self, candidates: CandidateSet, encoding: str) -> None:
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {encoding!r}; valid: {', '.join(ENCODINGS)}")
        self.encoding = encoding
        self.features = candidates.features
        self.size = len(candidates)
        low, high = self.features.min(0), self.features.max(0)
        # A constant column tells the peer nothing; it is left out of its space.
        self.columns = [j for j in range(self.features.shape[1]) if high[j] > low[j]]
        self.bounds = [(float(low[j]), float(high[j])) for j in self.columns]

    def names(self) -> list[str]:
        if self.encoding == "index":
            return ["arch"]
        return [f"x{j}" for j in self.columns]

    def index_of(self, params: dict[str, Any], taken: Collection[int] = ()) -> int:
        """The candidate of the peer's ``params``: its "arch" id, or the candidate nearest to
        its point (Euclidean over the standardised columns, ties to the lowest index) that is
        not in ``taken``; the nearest of all when every candidate is taken."""
        if self.encoding == "index":
            return int(params["arch"])
        point = np.array([float(params[name]) for name in self.names()])
        distances = ((self.features[:, self.columns] - point) ** 2).sum(1)
        if 0 < len(taken) < self.size:
            distances[list(taken)] = np.inf
        return int(np.argmin(distances))


@dataclass
class _Run:
    """One configuration climbing the ladder: its candidate, its method, its rung."""

    handle: Any  # the peer's trial object
    index: int
    method: str
    rung: int = 0


class _PeerAdapter:
    """What the adapters share: the record, the ask loop over repeats and running
    duplicates, and the optimizer contract's ``seed`` / ``finished`` / ``best``.

    Subclasses implement ``_new_run()`` (ask the peer for a configuration; None when it has
    nothing now) and ``_answer(run, result)`` (tell the peer the result of ``run``'s current
    rung; return True if the run climbs to the next rung).
    """

    #: Consecutive repeats answered from the record in one ``ask`` before the adapter decides
    #: the peer has converged on what it has seen (then it is ``finished``).
    max_repeats = 200

    def __init__(
        self,
        candidates: CandidateSet,
        ladder: FidelityLadder | None,
        methods: Sequence[str],
        seed: int | None,
        encoding: str,
    ) -> None:
        if not isinstance(candidates, CandidateSet):
            raise TypeError("candidates must be a kdnas.search.CandidateSet")
        self.candidates = candidates
        self.ladder = ladder or FidelityLadder()
        self.methods = _check_methods(methods)
        self._pool = TrialPool(candidates, seed, None)
        # Every result seen, by (candidate index, fidelity): a repeat is answered from here.
        self._known: dict[tuple[int, Fidelity], EvalResult] = {}
        self.seed = self._pool.seed
        self.encoding = _Encoding(candidates, encoding)
        self._ready: deque[_Run] = deque()  # promoted, to run at their next rung
        self._waiting: dict[tuple[int, Fidelity], list[_Run]] = {}
        self._by_trial: dict[int, _Run] = {}
        self._converged = False
        # "features": (point, method) -> (its candidate, the rung last asked), so that a
        # promotion trains the architecture that earned it.
        self._placed: dict[tuple[tuple[float, ...], str], tuple[int, int]] = {}
        self.runs_started = 0
        self.repeats_answered = 0

    @property
    def finished(self) -> bool:
        return self._converged

    @property
    def cost_s(self) -> float:
        return self._pool.cost_s

    def _candidate(self, params: dict[str, Any], rung: int, method: str) -> int:
        """The candidate a configuration of the peer trains at ``rung`` (see ``ENCODINGS``):
        its id, or, with "features", the nearest candidate not evaluated nor running at the
        rung's fidelity. A configuration asked for again at a higher rung than before (SMAC's
        and DEHB's promotions) keeps its candidate: the architecture whose result promoted it.
        (Optuna's and Syne Tune's runs carry their candidate up the ladder themselves.)"""
        if self.encoding.encoding == "index":
            return self.encoding.index_of(params)
        key = (tuple(float(params[name]) for name in self.encoding.names()), method)
        placed = self._placed.get(key)
        if placed is not None and placed[1] < rung:
            index = placed[0]
        else:
            taken = self._pool.used(self.ladder.fidelity(rung, method))
            index = self.encoding.index_of(params, taken)
        self._placed[key] = (index, rung)
        return index

    def _key(self, run: _Run) -> tuple[int, Fidelity]:
        return run.index, self.ladder.fidelity(run.rung, run.method)

    def ask(self) -> Suggestion | None:
        if self._converged:
            return None
        for _ in range(self.max_repeats):
            run = self._ready.popleft() if self._ready else self._new_run()
            if run is None:
                return None
            key = self._key(run)
            known = self._known.get(key)
            if known is not None:
                self.repeats_answered += 1
                self._advance(run, known)
                continue
            if key in self._pool.pending.values():
                self._waiting.setdefault(key, []).append(run)
                continue
            suggestion = self._pool.suggest(*key)
            self._by_trial[suggestion.trial_id] = run
            return suggestion
        logger.info(
            "%s: %d proposals in a row were already evaluated; the peer has converged",
            type(self).__name__,
            self.max_repeats,
        )
        self._converged = True
        return None

    def _advance(self, run: _Run, result: EvalResult) -> None:
        if self._answer(run, result):
            run.rung += 1
            self._ready.append(run)

    def tell(self, suggestion: Suggestion, result: EvalResult) -> None:
        key = (self._pool.tell(suggestion, result), result.fidelity)
        self._known[key] = result
        self._advance(self._by_trial.pop(suggestion.trial_id), result)
        for run in self._waiting.pop(key, []):
            self._advance(run, result)

    def best(self) -> EvalResult | None:
        """The best high-fidelity result so far (the non-oracle incumbent)."""
        return self._pool.best(HIGH_FIDELITY)

    def _configuration_space(self, extra: str = "field") -> Any:
        """A ConfigSpace space (SMAC's and DEHB's): "arch" (categorical ids) or one float per
        feature column, and "method" (categorical) when there are several methods."""
        config_space = _import_peer("ConfigSpace", extra=extra)
        space = config_space.ConfigurationSpace(seed=self.seed)
        if self.encoding.encoding == "index":
            space.add(
                config_space.Categorical("arch", [str(i) for i in range(self.encoding.size)])
            )
        else:
            for name, (low, high) in zip(self.encoding.names(), self.encoding.bounds, strict=True):
                space.add(config_space.Float(name, (low, high)))
        if len(self.methods) > 1:
            space.add(config_space.Categorical("method", list(self.methods)))
        return space

    def _run_at(self, handle: Any, config: Any, resource: float) -> _Run:
        """The run of a ConfigSpace configuration the peer asks for at ``resource``."""
        params = dict(config)
        if self.encoding.encoding == "index":
            params["arch"] = int(params["arch"])
        method = str(params.get("method", self.methods[0]))
        rung = self.ladder.rung_of_resource(float(resource))
        return _Run(handle, self._candidate(params, rung, method), method, rung)

    #: A temporary folder the peer writes its logs to (SMAC, DEHB), removed by ``close``.
    _folder: str | None = None

    def close(self) -> None:
        """Remove the peer's temporary folder, if it has one."""
        # The class default covers a constructor that failed before making the folder (its
        # library absent), which __del__ still closes.
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    def __del__(self) -> None:
        self.close()

    def _new_run(self) -> _Run | None:
        raise NotImplementedError

    def _answer(self, run: _Run, result: EvalResult) -> bool:
        raise NotImplementedError


class OptunaMultiFidelity(_PeerAdapter):
    """Optuna's sampler (TPE by default) with its Hyperband or successive-halving pruner over
    the fidelity ladder, driven through ``study.ask()`` / ``study.tell()``.

    A trial is one architecture (and, with several ``methods``, its loss method as Optuna's
    categorical parameter "method"). It trains at the ladder's first rung, reports the
    validation accuracy at step = the rung's resource (1, 3, 9), and continues to the next
    rung unless ``trial.should_prune()``; at the top rung (full data) it completes with its
    high-fidelity validation accuracy. Pruned trials are told PRUNED, failed ones FAIL.

    Args:
        candidates: the architectures and their standardised features.
        methods: loss methods of the low rungs: one (fixed) or several (Optuna chooses).
        pruner: "hyperband" (``HyperbandPruner(min_resource=1, max_resource=27,
            reduction_factor=3)``) or "successive_halving" (``SuccessiveHalvingPruner(
            min_resource=1, reduction_factor=3)``: asynchronous successive halving).
        seed: seeds the sampler (``TPESampler(seed=seed)``).
        encoding: see ``ENCODINGS``.
        ladder: the rungs (default 1/27, 1/9, 1/3, full).
        sampler: another Optuna sampler instead of TPE (e.g. for tests).
    """

    PRUNERS: tuple[str, ...] = ("hyperband", "successive_halving")

    def __init__(
        self,
        candidates: CandidateSet,
        methods: Sequence[str] = ("nokd",),
        pruner: str = "hyperband",
        seed: int | None = None,
        encoding: str = "index",
        ladder: FidelityLadder | None = None,
        sampler: Any = None,
    ) -> None:
        super().__init__(candidates, ladder, methods, seed, encoding)
        optuna = _import_peer("optuna")
        if pruner not in self.PRUNERS:
            raise ValueError(f"unknown pruner {pruner!r}; valid: {', '.join(self.PRUNERS)}")
        resources = self.ladder.resources
        if pruner == "hyperband":
            peer_pruner = optuna.pruners.HyperbandPruner(
                min_resource=resources[0],
                max_resource=resources[-1],
                reduction_factor=self.ladder.eta,
            )
        else:
            peer_pruner = optuna.pruners.SuccessiveHalvingPruner(
                min_resource=resources[0], reduction_factor=self.ladder.eta
            )
        self.pruner = pruner
        self._distributions = self._make_distributions(optuna)
        self.study = optuna.create_study(
            # Hyperband puts a trial into a bracket by a hash of the study name and trial
            # number: a name from the seed keeps runs reproducible (Optuna's is random).
            study_name=f"kdnas-field-{self.seed}",
            direction="maximize",
            sampler=sampler or optuna.samplers.TPESampler(seed=self.seed),
            pruner=peer_pruner,
        )
        self._states = optuna.trial.TrialState

    def _make_distributions(self, optuna: Any) -> dict[str, Any]:
        distributions = optuna.distributions
        if self.encoding.encoding == "index":
            out = {"arch": distributions.CategoricalDistribution(list(range(self.encoding.size)))}
        else:
            columns = zip(self.encoding.names(), self.encoding.bounds, strict=True)
            out = {name: distributions.FloatDistribution(lo, hi) for name, (lo, hi) in columns}
        if len(self.methods) > 1:
            out["method"] = distributions.CategoricalDistribution(list(self.methods))
        return out

    def _new_run(self) -> _Run:
        trial = self.study.ask(self._distributions)
        self.runs_started += 1
        method = trial.params.get("method", self.methods[0])
        return _Run(trial, self._candidate(trial.params, 0, method), method)

    def _answer(self, run: _Run, result: EvalResult) -> bool:
        trial = run.handle
        if not result.ok:
            self.study.tell(trial, state=self._states.FAIL)
            return False
        if run.rung == self.ladder.top:
            self.study.tell(trial, result.valid_acc)
            return False
        trial.report(result.valid_acc, step=self.ladder.resources[run.rung])
        if trial.should_prune():
            self.study.tell(trial, state=self._states.PRUNED)
            return False
        return True


class SMACMultiFidelity(_PeerAdapter):
    """SMAC's ``MultiFidelityFacade`` (Hyperband intensifier, random-forest surrogate, random
    initial design) over the fidelity ladder, driven through ``smac.ask()`` / ``smac.tell()``.

    SMAC's budgets are the ladder's resources (``min_budget`` 1, ``max_budget`` 27, eta 3:
    budgets 1, 3, 9, 27); a trial at budget b trains at the rung of b, a separate training.
    SMAC minimises, so it is told cost = 1 - valid_acc (failed: status CRASHED).

    Args:
        candidates: the architectures and their standardised features.
        methods: loss methods of the low rungs: one (fixed) or several (a categorical
            hyperparameter "method" of SMAC's configuration space).
        seed: SMAC's scenario seed.
        encoding: see ``ENCODINGS``.
        ladder: the rungs (default 1/27, 1/9, 1/3, full).
        n_trials: SMAC's own trial limit (its other limits read the real clock and are not
            used); the loop's limits end a run.
        n_jobs: threads of SMAC's random forest (SMAC's default -1 is every core).

    SMAC writes its run history to a temporary folder, removed by ``close()`` (and when
    the adapter is garbage-collected).
    """

    def __init__(
        self,
        candidates: CandidateSet,
        methods: Sequence[str] = ("nokd",),
        seed: int | None = None,
        encoding: str = "index",
        ladder: FidelityLadder | None = None,
        n_trials: int = 100_000,
        n_jobs: int | None = 1,
    ) -> None:
        super().__init__(candidates, ladder, methods, seed, encoding)
        smac = _import_peer("smac")
        space = self._configuration_space()
        self._folder = tempfile.mkdtemp(prefix="kdnas-smac-")
        resources = self.ladder.resources
        scenario = smac.Scenario(
            space,
            deterministic=True,
            n_trials=n_trials,
            min_budget=resources[0],
            max_budget=resources[-1],
            seed=self.seed,
            output_directory=self._folder,
        )
        intensifier = smac.MultiFidelityFacade.get_intensifier(scenario, eta=self.ladder.eta)
        model = smac.MultiFidelityFacade.get_model(scenario)
        # The facade's forest fits its trees in joblib threads over every core; on the shared
        # simulation machine that costs more in waiting than it saves. sklearn's forests give
        # the same trees for any n_jobs (random_state fixed), so SMAC's choices are unchanged.
        model._rf_opts["n_jobs"] = n_jobs
        self.smac = smac.MultiFidelityFacade(
            scenario,
            target_function=_never_called,
            intensifier=intensifier,
            model=model,
            overwrite=True,
            logging_level=40,
        )
        self._value = smac.runhistory.dataclasses.TrialValue
        self._status = smac.runhistory.enumerations.StatusType
        self._exhausted = smac.main.exceptions.ConfigurationSpaceExhaustedException

    def _new_run(self) -> _Run | None:
        try:
            info = self.smac.ask()
        except self._exhausted:
            logger.info("SMAC: its configuration space is exhausted")
            self._converged = True
            return None
        self.runs_started += 1
        return self._run_at(info, info.config, info.budget)

    def _answer(self, run: _Run, result: EvalResult) -> bool:
        if result.ok:
            value = self._value(cost=1.0 - result.valid_acc, time=result.cost_s)
        else:
            value = self._value(cost=1.0, time=result.cost_s, status=self._status.CRASHED)
        self.smac.tell(run.handle, value, save=False)
        return False  # SMAC's intensifier asks for the next budget itself


_SYNE_TUNE_MULTI_FIDELITY_SEARCHER = (
    "syne_tune.optimizer.schedulers.searchers.last_value_multi_fidelity_searcher"
)


class SyneTuneMultiFidelity(_PeerAdapter):
    """Syne Tune's ASHA or BOHB (its ``syne_tune.optimizer.baselines`` schedulers: stopping-type
    asynchronous successive halving, with a random searcher or BOHB's kernel density
    estimator) over the fidelity ladder, driven the way Syne Tune's own ``Tuner`` drives them.

    A trial is one architecture (and, with several ``methods``, its loss method as the
    categorical hyperparameter "method"). Each rung is a separate training; its validation
    accuracy is reported with ``resource`` = the rung's resource (1, 3, 9, 27) through
    ``scheduler.on_trial_result``. The scheduler's CONTINUE sends the trial to the next rung;
    STOP (always at the top rung, ``max_t`` 27) ends it with ``on_trial_remove``, and a failed
    training ends it with ``on_trial_error``, exactly the ``Tuner``'s calls. The scheduler
    maximises the validation accuracy (``do_minimize=False``) with ``grace_period`` 1,
    ``max_t`` 27 and ``reduction_factor`` 3 (the ladder's), one bracket (Syne Tune's default).

    Args:
        candidates: the architectures and their standardised features.
        methods: loss methods of the low rungs: one (fixed) or several (the scheduler's
            searcher chooses).
        scheduler: "asha" (``baselines.ASHA``) or "bohb" (``baselines.BOHB``).
        seed: the scheduler's ``random_seed``.
        encoding: see ``ENCODINGS`` ("features": one ``uniform`` per feature column).
        ladder: the rungs (default 1/27, 1/9, 1/3, full).
        points_to_evaluate: configurations the searcher proposes first (Syne Tune's own
            argument; e.g. ``[{"arch": 3}]``).

    Syne Tune 0.16's random searcher (and ``on_trial_add``) draw from numpy's global generator
    whatever the seed; the adapter lends every call into the scheduler a global state of its
    own (seeded from ``seed``), so a run is reproducible and the process's global generator
    is left as it was.
    """

    SCHEDULERS: tuple[str, ...] = ("asha", "bohb")
    #: The reported accuracy and the resource, as named in the results the scheduler reads.
    METRIC = "valid_acc"
    RESOURCE = "resource"

    def __init__(
        self,
        candidates: CandidateSet,
        methods: Sequence[str] = ("nokd",),
        scheduler: str = "asha",
        seed: int | None = None,
        encoding: str = "index",
        ladder: FidelityLadder | None = None,
        points_to_evaluate: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(candidates, ladder, methods, seed, encoding)
        if scheduler not in self.SCHEDULERS:
            raise ValueError(
                f"unknown scheduler {scheduler!r}; valid: {', '.join(self.SCHEDULERS)}"
            )
        baselines = _import_peer("syne_tune.optimizer.baselines", extra="syne-tune")
        domains = _import_peer("syne_tune.config_space", extra="syne-tune")
        self._trial_status = _import_peer("syne_tune.backend.trial_status", extra="syne-tune")
        decisions = _import_peer("syne_tune.optimizer.scheduler", extra="syne-tune")
        self._continue = decisions.SchedulerDecision.CONTINUE
        if self.encoding.encoding == "index":
            space: dict[str, Any] = {"arch": domains.choice(list(range(self.encoding.size)))}
        else:
            columns = zip(self.encoding.names(), self.encoding.bounds, strict=True)
            space = {name: domains.uniform(low, high) for name, (low, high) in columns}
        if len(self.methods) > 1:
            space["method"] = domains.choice(list(self.methods))
        resources = self.ladder.resources
        peer = baselines.ASHA if scheduler == "asha" else baselines.BOHB
        self.scheduler_name = scheduler
        # ASHA and BOHB hand points_to_evaluate to their searcher twice, which then logs a
        # warning on every construction about Syne Tune's own call: not the user's to act on.
        quiet = logging.getLogger(_SYNE_TUNE_MULTI_FIDELITY_SEARCHER)
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            self.scheduler = peer(
                space,
                metric=self.METRIC,
                time_attr=self.RESOURCE,
                max_t=resources[-1],
                do_minimize=False,
                random_seed=self.seed,
                grace_period=resources[0],
                reduction_factor=self.ladder.eta,
                points_to_evaluate=[dict(p) for p in points_to_evaluate or []],
            )
        finally:
            quiet.setLevel(level)
        self._global_state = np.random.RandomState(self.seed).get_state()

    @contextmanager
    def _own_generator(self) -> Iterator[None]:
        """Lend Syne Tune's calls this run's numpy global generator state, then restore the
        process's (its random searcher and ``on_trial_add`` draw from the global one)."""
        outside = np.random.get_state()
        np.random.set_state(self._global_state)
        try:
            yield
        finally:
            self._global_state = np.random.get_state()
            np.random.set_state(outside)

    def _new_run(self) -> _Run | None:
        with self._own_generator():
            suggestion = self.scheduler.suggest()
        if suggestion is None:
            logger.info("Syne Tune %s: no configuration left to suggest", self.scheduler_name)
            self._converged = True
            return None
        trial = self._trial_status.Trial(
            trial_id=self.runs_started, config=suggestion.config, creation_time=datetime.now()
        )
        with self._own_generator():
            self.scheduler.on_trial_add(trial)
        self.runs_started += 1
        params = dict(suggestion.config)
        method = str(params.get("method", self.methods[0]))
        return _Run(trial, self._candidate(params, 0, method), method)

    def _answer(self, run: _Run, result: EvalResult) -> bool:
        trial = run.handle
        with self._own_generator():
            if not result.ok:
                self.scheduler.on_trial_error(trial)
                return False
            resource = self.ladder.resources[run.rung]
            report = {self.METRIC: result.valid_acc, self.RESOURCE: resource}
            decision = self.scheduler.on_trial_result(trial, report)
            if decision == self._continue and run.rung < self.ladder.top:
                return True
            self.scheduler.on_trial_remove(trial)
            return False


def _never_called(config: Any, seed: int = 0, budget: float = 0.0) -> float:
    raise RuntimeError("the kdnas loop evaluates SMAC's trials through ask/tell")


class ZeroCostSuccessiveHalving:
    """The zero-cost baseline of the NAS literature: rank the candidates by a proxy known
    before any training (default in the comparisons: log multiply-adds), then successive
    halving over the top of that order along the fidelity ladder.

    Bracket k takes the next ``top`` candidates in proxy order, evaluates all of them at the
    first rung, promotes the best ``floor(n / eta)`` (at least one) by valid accuracy to the
    next rung, and so on up to full data. Brackets follow each other in proxy order; when a
    worker is free and the open bracket waits for results, the next bracket starts
    (parallel Hyperband's rule), so N workers are never idle while candidates remain.

    Args:
        candidates: the architectures.
        proxy: [N] higher = more promising (e.g. ``multiply_add_proxy``).
        method: loss method of the low rungs.
        top: candidates per bracket (default: eta^(rungs - 1), 27 on the default ladder, so
            that one reaches full data per bracket).
        ladder: the rungs (default 1/27, 1/9, 1/3, full).
    """

    def __init__(
        self,
        candidates: CandidateSet,
        proxy: np.ndarray,
        method: str = "nokd",
        top: int | None = None,
        ladder: FidelityLadder | None = None,
        seed: int | None = None,
    ) -> None:
        self.candidates = candidates
        self.ladder = ladder or FidelityLadder()
        self.method = _check_methods((method,))[0]
        proxy = np.asarray(proxy, dtype=float)
        if proxy.shape != (len(candidates),) or not np.isfinite(proxy).all():
            raise ValueError(f"proxy must be [{len(candidates)}] finite values")
        self.top = top or self.ladder.eta**self.ladder.top
        if self.top < 1:
            raise ValueError(f"top must be >= 1, got {self.top}")
        # The baseline is deterministic; the pool's seed keeps the optimizer contract.
        self._pool = TrialPool(candidates, 0 if seed is None else seed, None)
        self.seed = self._pool.seed
        self._order = [int(i) for i in np.argsort(-proxy, kind="stable")]
        self._next = 0  # position in the proxy order of the next bracket
        self._known: set[tuple[int, Fidelity]] = set()
        # Each bracket: rung -> members (candidate indices); asked and told per rung.
        self._brackets: list[list[list[int]]] = []
        self._asked: list[list[set[int]]] = []

    @property
    def cost_s(self) -> float:
        return self._pool.cost_s

    @property
    def finished(self) -> bool:
        return self._next >= len(self._order) and all(
            self._bracket_done(b) for b in range(len(self._brackets))
        )

    def _bracket_done(self, b: int) -> bool:
        return len(self._brackets[b]) == len(self.ladder.parts) and self._rung_done(
            b, self.ladder.top
        )

    def _rung_done(self, b: int, rung: int) -> bool:
        fidelity = self.ladder.fidelity(rung, self.method)
        return all((i, fidelity) in self._known for i in self._brackets[b][rung])

    def ask(self) -> Suggestion | None:
        for b in range(len(self._brackets)):
            suggestion = self._ask_bracket(b)
            if suggestion is not None:
                return suggestion
        if self._next >= len(self._order):
            return None
        members = self._order[self._next : self._next + self.top]
        self._next += len(members)
        self._brackets.append([members])
        self._asked.append([set()])
        return self._ask_bracket(len(self._brackets) - 1)

    def _ask_bracket(self, b: int) -> Suggestion | None:
        rungs, asked = self._brackets[b], self._asked[b]
        rung = len(rungs) - 1
        fidelity = self.ladder.fidelity(rung, self.method)
        for i in rungs[rung]:
            if i not in asked[rung]:
                asked[rung].add(i)
                return self._pool.suggest(i, fidelity)
        return None

    def tell(self, suggestion: Suggestion, result: EvalResult) -> None:
        self._known.add((self._pool.tell(suggestion, result), result.fidelity))
        for b, rungs in enumerate(self._brackets):
            while len(rungs) - 1 < self.ladder.top and self._rung_done(b, len(rungs) - 1):
                rung = len(rungs) - 1
                rungs.append(self._promote(rungs[rung], self.ladder.fidelity(rung, self.method)))
                self._asked[b].append(set())

    def _promote(self, members: list[int], fidelity: Fidelity) -> list[int]:
        """The best floor(n / eta) (at least one) by valid accuracy, ties to the earlier in
        proxy order; failed evaluations are never promoted."""
        results = {i: r for i, r in self._pool.told if r.fidelity == fidelity and i in members}
        ranked = sorted((i for i in members if results[i].ok), key=lambda i: -results[i].valid_acc)
        return ranked[: max(1, len(members) // self.ladder.eta)]

    def best(self) -> EvalResult | None:
        """The best high-fidelity result so far."""
        return self._pool.best(HIGH_FIDELITY)


class DEHBMultiFidelity(_PeerAdapter):
    """DEHB (differential evolution inside Hyperband's brackets, Awad et al. 2021) from the
    ``dehb`` library, driven through ``dehb.ask()`` / ``dehb.tell()``.

    DEHB's fidelities are the ladder's resources (``min_fidelity`` 1, ``max_fidelity`` 27,
    eta 3: 1, 3, 9, 27); a job at fidelity f trains at the rung of f, a separate training.
    DEHB minimises, so it is told fitness = 1 - valid_acc (a failed training: fitness 1, as
    for an accuracy of 0; DEHB has no failure status) and cost = the training's seconds.
    DEHB decides the brackets, which configurations a rung promotes (its first Hyperband
    round) and the mutants it evolves per fidelity; several jobs may be pending (N workers),
    DEHB then opens a new bracket as its own asynchronous scheduler does.

    Args:
        candidates: the architectures and their standardised features.
        methods: loss methods of the low rungs: one (fixed) or several (a categorical
            hyperparameter "method" of DEHB's configuration space).
        seed: DEHB's seed (its populations, mutations and the space's sampling).
        encoding: see ``ENCODINGS``.
        ladder: the rungs (default 1/27, 1/9, 1/3, full).

    ``pip install 'kdnas[dehb]'``: dehb 0.1.2 requires numpy < 2, so it lives in an
    environment of its own (see docs/search.md). DEHB writes a log to a temporary folder,
    removed by ``close()``.
    """

    def __init__(
        self,
        candidates: CandidateSet,
        methods: Sequence[str] = ("nokd",),
        seed: int | None = None,
        encoding: str = "index",
        ladder: FidelityLadder | None = None,
    ) -> None:
        super().__init__(candidates, ladder, methods, seed, encoding)
        dehb = _import_peer("dehb", extra="dehb")
        space = self._configuration_space(extra="dehb")
        self._folder = tempfile.mkdtemp(prefix="kdnas-dehb-")
        resources = self.ladder.resources
        self.dehb = dehb.DEHB(
            cs=space,
            min_fidelity=resources[0],
            max_fidelity=resources[-1],
            eta=self.ladder.eta,
            # One process: the kdnas loop is the scheduler, DEHB never evaluates anything.
            n_workers=1,
            seed=self.seed,
            output_path=self._folder,
            # Checkpoints only at the end of DEHB's own run(), which is never called.
            save_freq="end",
            log_level="ERROR",
        )
        if len(self.dehb.fidelities) != len(resources):
            raise RuntimeError(
                f"DEHB made fidelities {list(self.dehb.fidelities)} from the ladder {resources}"
            )

    def _new_run(self) -> _Run:
        job = self.dehb.ask()
        self.runs_started += 1
        return self._run_at(job, job["config"], job["fidelity"])

    def _answer(self, run: _Run, result: EvalResult) -> bool:
        fitness = 1.0 - result.valid_acc if result.ok else 1.0
        self.dehb.tell(run.handle, {"fitness": fitness, "cost": result.cost_s})
        return False  # DEHB's brackets ask for the next fidelity themselves
