"""Syne Tune's ASHA and BOHB behind kdnas's ask/tell: on a hand-made benchmark the adapter makes
exactly the rung decisions worked out by hand from Syne Tune's definition of asynchronous
successive halving (so it does not handicap the peer), and runs are reproducible."""

from __future__ import annotations

import importlib
import importlib.util
import math

import numpy as np
import pytest
from test_adapters import hand_made, schedule  # pytest puts tests/peers on sys.path

from kdnas.core import EvalResult
from kdnas.loop import InProcessWorkers, LoopLimits, run_loop
from kdnas.peers.adapters import FidelityLadder, SyneTuneMultiFidelity
from kdnas.replay.arrays import ArraysObjective

needs_syne_tune = pytest.mark.skipif(
    importlib.util.find_spec("syne_tune") is None,
    reason="syne-tune is not installed (pip install 'kdnas[syne-tune]')",
)

# Valid accuracies of six architectures at 1/9 and 1/3 of the data, and at full data.
V9 = [0.50, 0.40, 0.60, 0.55, 0.70, 0.45]
V3 = [0.62, 0.50, 0.64, 0.60, 0.61, 0.50]
HF = [0.70, 0.60, 0.72, 0.60, 0.80, 0.60]

# Syne Tune's asynchronous successive halving (eta 3, grace period 1, one bracket; its
# Bracket.on_result): the first result at a rung always continues; a later one continues iff
# the share of the values recorded at that rung (itself included) that are strictly better
# is <= 1/3. Trials in the order 0..5, one worker, ladder 1/9 -> 1/3 -> full:
#   0: 1/9 0.50 first -> go;                 1/3 0.62 first -> go;            full
#   1: 1/9 0.40: 1 of 2 better (1/2) stop
#   2: 1/9 0.60: 0 of 3 better -> go;        1/3 0.64: 0 of 2 better -> go;   full
#   3: 1/9 0.55: 1 of 4 better (1/4) go;     1/3 0.60: 2 of 3 better stop
#   4: 1/9 0.70: 0 of 5 better -> go;        1/3 0.61: 2 of 4 better stop
#   5: 1/9 0.45: 4 of 6 better stop
# (Optuna's successive-halving pruner stops trial 3 at 1/9: a different rule, see test_field.)
BY_HAND = [(0, 9), (0, 3), (0, 1), (1, 9), (2, 9), (2, 3), (2, 1)]
BY_HAND += [(3, 9), (3, 3), (4, 9), (4, 3), (5, 9)]


def forced(scheduler: str, **options) -> tuple[object, SyneTuneMultiFidelity]:
    arrays = hand_made({("kd", 9): V9, ("kd", 3): V3}, HF)
    optimizer = SyneTuneMultiFidelity(
        arrays.placeholder_candidates(),
        methods=("kd",),
        scheduler=scheduler,
        seed=0,
        ladder=FidelityLadder((9, 3, 1)),
        points_to_evaluate=[{"arch": i} for i in range(6)],
        **options,
    )
    return arrays, optimizer


@needs_syne_tune
@pytest.mark.parametrize("scheduler", ["asha", "bohb"])
def test_rung_decisions_by_hand(scheduler: str) -> None:
    arrays, optimizer = forced(scheduler)
    assert schedule(arrays, optimizer, evaluations=len(BY_HAND)) == BY_HAND
    assert optimizer.best().valid_acc == 0.72
    assert optimizer.runs_started == 6 and optimizer.repeats_answered == 0
    # Every trial left the scheduler the way Syne Tune's Tuner removes it (STOP ->
    # on_trial_remove): none is still held in a bracket.
    assert optimizer.scheduler.trial_info == {}
    # The scheduler's own bookkeeping: the values it recorded at each rung.
    rungs = {level: recorded for level, recorded in optimizer.scheduler.brackets[0].rungs}
    assert sorted(-m["valid_acc"] for m in rungs[1].values()) == sorted(V9)
    assert sorted(-m["valid_acc"] for m in rungs[3].values()) == sorted(
        V3[i] for i in (0, 2, 3, 4)
    )


@needs_syne_tune
def test_bohb_proposes_from_its_kernel_density_estimator() -> None:
    # After its random start (5 trials with results) BOHB's searcher is Syne Tune's KDE, fitted
    # on the last value of each trial; ASHA's stays a random searcher.
    from syne_tune.optimizer.schedulers.searchers.kde import KernelDensityEstimator
    from syne_tune.optimizer.schedulers.searchers.random_searcher import RandomSearcher

    for scheduler, kind in (("bohb", KernelDensityEstimator), ("asha", RandomSearcher)):
        arrays, optimizer = forced(scheduler)
        schedule(arrays, optimizer, evaluations=len(BY_HAND) + 3)
        assert isinstance(optimizer.scheduler.searcher.searcher, kind)


@needs_syne_tune
@pytest.mark.parametrize("scheduler", ["asha", "bohb"])
def test_method_as_categorical_four_workers_and_reproducible(scheduler: str) -> None:
    # With several methods the trial's "method" decides each low rung's loss; with 4 workers no
    # (architecture, fidelity) is trained twice; the same seed gives the same run, and the
    # process's global numpy generator is left alone.
    rng = np.random.default_rng(0)
    low = {(m, p): rng.uniform(0.3, 0.6, 30) for m in ("nokd", "kd") for p in (27, 9, 3)}
    arrays = hand_made(low, rng.uniform(0.6, 0.7, 30))

    def run() -> list:
        optimizer = SyneTuneMultiFidelity(
            arrays.placeholder_candidates(), methods=("nokd", "kd"), scheduler=scheduler, seed=3
        )
        trace = run_loop(
            optimizer,
            InProcessWorkers(ArraysObjective(arrays), 4),
            limits=LoopLimits(max_evaluations=40),
        )
        return [(s.suggestion.arch, s.result.fidelity) for s in trace.steps]

    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    keys = run()
    assert np.array_equal(np.random.get_state()[1], before)
    assert len(keys) == len(set(keys)) == 40
    assert {f.method for _, f in keys if not f.is_high} == {"nokd", "kd"}
    assert run() == keys


def test_a_missing_syne_tune_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def refuse(name: str, *args: object):
        if name.startswith("syne_tune"):
            raise ImportError("No module named 'syne_tune'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", refuse)
    arrays = hand_made({("nokd", 9): [0.5, 0.4]}, [0.7, 0.6])
    with pytest.raises(ImportError, match=r"pip install 'kdnas\[syne-tune\]'"):
        SyneTuneMultiFidelity(arrays.placeholder_candidates(), seed=0)
    with pytest.raises(ValueError, match="unknown scheduler"):
        SyneTuneMultiFidelity(arrays.placeholder_candidates(), scheduler="hyperband", seed=0)


@needs_syne_tune
def test_a_failed_training_is_the_tuners_on_trial_error() -> None:
    # Architecture 1 fails at 1/9: Syne Tune's Tuner calls only on_trial_error, so the trial
    # records nothing at the rung and the decisions after it are made without it (here the
    # same as by hand above: trial 3 has 1 of 3 better, 1/3, and goes on).
    arrays, optimizer = forced("asha")
    inner = ArraysObjective(arrays)

    class FailsOnce:
        candidates = inner.candidates

        def evaluate(self, arch, fidelity):
            if inner.candidates.index_of(arch) == 1:
                return EvalResult(arch.key(), fidelity, math.nan, math.nan, 30.0, "failed")
            return inner.evaluate(arch, fidelity)

    trace = run_loop(
        optimizer, InProcessWorkers(FailsOnce(), 1), limits=LoopLimits(max_evaluations=12)
    )
    steps = [
        (inner.candidates.index_of(s.suggestion.arch), s.result.fidelity.part) for s in trace.steps
    ]
    assert steps == BY_HAND
    assert set(optimizer.scheduler.trial_info) == {1}  # errored, never removed (as the Tuner)
    rungs = dict(optimizer.scheduler.brackets[0].rungs)
    assert sorted(-m["valid_acc"] for m in rungs[1].values()) == sorted(V9[:1] + V9[2:])


@needs_syne_tune
def test_features_encoding_evaluates_nearest_candidates() -> None:
    # With "features" Syne Tune searches one float per feature column and the nearest
    # candidate is trained (never twice at one fidelity); on 12 candidates the peer soon
    # proposes only what it has seen, and the adapter ends the run (finished).
    rng = np.random.default_rng(1)
    low = {("nokd", p): rng.uniform(0.3, 0.6, 12) for p in (27, 9, 3)}
    arrays = hand_made(low, rng.uniform(0.6, 0.7, 12))
    optimizer = SyneTuneMultiFidelity(
        arrays.placeholder_candidates(), scheduler="asha", seed=0, encoding="features"
    )
    steps = schedule(arrays, optimizer, evaluations=40)
    assert len(steps) == len(set(steps)) >= 10 and {i for i, _ in steps} <= set(range(12))
    assert optimizer.finished and optimizer.repeats_answered >= optimizer.max_repeats
    assert set(optimizer.scheduler.config_space) == {"x0", "x1"}
