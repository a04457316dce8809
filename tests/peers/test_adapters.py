"""The field's optimizers behind kdnas's ask/tell: each adapter makes, on a hand-made
benchmark, exactly the rung decisions worked out by hand from its algorithm's definition
(so the adapter does not handicap the peer), and answers repeats from its record."""

from __future__ import annotations

import ast
import binascii
import importlib
import importlib.util
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from kdnas.core import HIGH_FIDELITY, Fidelity
from kdnas.loop import InProcessWorkers, LoopLimits, run_loop
from kdnas.peers import adapters as field
from kdnas.peers.adapters import (
    FidelityLadder,
    OptunaMultiFidelity,
    SMACMultiFidelity,
    ZeroCostSuccessiveHalving,
)
from kdnas.replay.arrays import ArraysObjective, SpaceArrays

needs_optuna = pytest.mark.skipif(
    importlib.util.find_spec("optuna") is None,
    reason="optuna is not installed (pip install 'kdnas[field]' or 'kdnas[dev]')",
)
needs_smac = pytest.mark.skipif(
    importlib.util.find_spec("smac") is None,
    reason="smac is not installed (pip install 'kdnas[field]')",
)


def hand_made(low: dict[tuple[str, int], list[float]], hf: list[float]) -> SpaceArrays:
    """A benchmark space with these valid accuracies; every training costs 10 s at 1/27,
    30 s at 1/9, 100 s at 1/3 and 300 s at full data."""
    n = len(hf)
    seconds = {27: 10.0, 9: 30.0, 3: 100.0}
    columns = {
        key: {
            "valid_acc": np.asarray(v, float),
            "test_acc": np.asarray(v, float),
            "wall_time": np.full(n, seconds[key[1]]),
        }
        for key, v in low.items()
    }
    features = np.arange(2 * n, dtype=float).reshape(n, 2) % 7
    return SpaceArrays(
        "toy", features, np.asarray(hf, float), np.asarray(hf, float), np.full(n, 300.0), columns
    )


def schedule(arrays: SpaceArrays, optimizer, workers: int = 1, evaluations: int | None = None):
    objective = ArraysObjective(arrays)
    trace = run_loop(
        optimizer,
        InProcessWorkers(objective, workers),
        limits=LoopLimits(max_evaluations=evaluations),
    )
    candidates = objective.candidates
    return [(candidates.index_of(s.suggestion.arch), s.result.fidelity.part) for s in trace.steps]


def test_ladder_resources_and_fidelities() -> None:
    ladder = FidelityLadder()
    assert ladder.resources == (1, 3, 9, 27) and ladder.eta == 3
    assert ladder.fidelity(0, "kd") == Fidelity(27, "kd")
    assert ladder.fidelity(3, "kd") == HIGH_FIDELITY  # the top rung is always full-data no-KD
    assert ladder.rung_of_resource(9.0) == 2
    with pytest.raises(ValueError, match="not a rung"):
        ladder.rung_of_resource(4.0)
    with pytest.raises(ValueError, match="decrease to 1"):
        FidelityLadder((9, 3))
    with pytest.raises(ValueError, match="geometric"):
        FidelityLadder((8, 3, 1))


def test_zero_cost_successive_halving_by_hand() -> None:
    # Ladder 1/9 -> 1/3 -> full (eta 3): brackets of 9 in proxy order. Proxy order is
    # 11, 10, ..., 0, so bracket 1 = candidates 11..3 and bracket 2 = 2, 1, 0.
    v9 = [0.30, 0.50, 0.40, 0.20, 0.35, 0.60, 0.10, 0.55, 0.25, 0.45, 0.15, 0.05]
    v3 = [0.60, 0.70, 0.65, 0.30, 0.40, 0.80, 0.20, 0.75, 0.30, 0.62, 0.20, 0.10]
    hf = [0.70, 0.72, 0.71, 0.40, 0.50, 0.90, 0.30, 0.85, 0.40, 0.69, 0.30, 0.20]
    arrays = hand_made({("kd", 9): v9, ("kd", 3): v3}, hf)
    optimizer = ZeroCostSuccessiveHalving(
        arrays.placeholder_candidates(),
        proxy=np.arange(12.0),
        method="kd",
        ladder=FidelityLadder((9, 3, 1)),
    )
    # Bracket 1 at 1/9: 11..3; top floor(9/3) = 3 by v9: 5 (0.60), 7 (0.55), 9 (0.45);
    # at 1/3 the best of them by v3 is 5 (0.80); full data: 5.
    # Bracket 2 at 1/9: 2, 1, 0; top max(1, 3 // 3) = 1: 1 (0.50); then 1 at 1/3 and full.
    expected = [(i, 9) for i in range(11, 2, -1)] + [(5, 3), (7, 3), (9, 3), (5, 1)]
    expected += [(2, 9), (1, 9), (0, 9), (1, 3), (1, 1)]
    assert schedule(arrays, optimizer) == expected
    assert optimizer.finished and optimizer.best().valid_acc == 0.90


def test_zero_cost_successive_halving_keeps_workers_busy() -> None:
    # With 4 workers bracket 2 starts while bracket 1 waits at 1/9: no worker idles while a
    # candidate is left, and every decision is still the one made by hand above.
    v9 = [0.30, 0.50, 0.40, 0.20, 0.35, 0.60, 0.10, 0.55, 0.25, 0.45, 0.15, 0.05]
    arrays = hand_made({("kd", 9): v9, ("kd", 3): v9}, v9)
    optimizer = ZeroCostSuccessiveHalving(
        arrays.placeholder_candidates(),
        np.arange(12.0),
        method="kd",
        ladder=FidelityLadder((9, 3, 1)),
    )
    steps = schedule(arrays, optimizer, workers=4)
    assert sorted(i for i, part in steps if part == 9) == list(range(12))
    assert sorted(i for i, part in steps if part == 3) == [1, 5, 7, 9]
    assert sorted(i for i, part in steps if part == 1) == [1, 5]


@needs_optuna
def test_optuna_successive_halving_pruner_decisions_by_hand() -> None:
    # Asynchronous successive halving as Optuna defines it (eta 3, min resource 1): at each
    # rung a trial continues iff its value is >= the k-th best value reported at that rung so
    # far (itself included), k = max(1, floor(n / 3)). Trials in the order 0..5, one worker:
    #   0: 1/9 0.50 -> [0.50] k=1 go;   1/3 0.62 -> [0.62] go; full
    #   1: 1/9 0.40 -> best 0.50 stop
    #   2: 1/9 0.60 -> [.5 .4 .6] k=1 go; 1/3 0.64 -> [.62 .64] go; full
    #   3: 1/9 0.55 -> k=1, best 0.60 stop
    #   4: 1/9 0.70 -> go;               1/3 0.61 -> best 0.64 stop
    #   5: 1/9 0.45 -> 6 values, k=2: 2nd best 0.60 stop
    v9 = [0.50, 0.40, 0.60, 0.55, 0.70, 0.45]
    v3 = [0.62, 0.50, 0.64, 0.60, 0.61, 0.50]
    arrays = hand_made({("kd", 9): v9, ("kd", 3): v3}, [0.7, 0.6, 0.72, 0.6, 0.8, 0.6])
    optimizer = OptunaMultiFidelity(
        arrays.placeholder_candidates(),
        methods=("kd",),
        pruner="successive_halving",
        seed=0,
        encoding="index",
        ladder=FidelityLadder((9, 3, 1)),
    )
    for i in range(6):
        optimizer.study.enqueue_trial({"arch": i})
    expected = [(0, 9), (0, 3), (0, 1), (1, 9), (2, 9), (2, 3), (2, 1)]
    expected += [(3, 9), (4, 9), (4, 3), (5, 9)]
    assert schedule(arrays, optimizer, evaluations=len(expected)) == expected
    states = [t.state.name for t in optimizer.study.trials[:6]]
    assert states == ["COMPLETE", "PRUNED", "COMPLETE", "PRUNED", "PRUNED", "PRUNED"]
    assert optimizer.best().valid_acc == 0.72


@needs_optuna
def test_optuna_repeats_are_answered_from_the_record() -> None:
    # Architecture 0 proposed twice: the second trial gets the recorded results (no training,
    # no seconds) and Optuna still sees a complete trial with the same value.
    arrays = hand_made({("nokd", 9): [0.5, 0.4], ("nokd", 3): [0.6, 0.5]}, [0.7, 0.6])
    optimizer = OptunaMultiFidelity(
        arrays.placeholder_candidates(),
        pruner="successive_halving",
        seed=0,
        encoding="index",
        ladder=FidelityLadder((9, 3, 1)),
    )
    for i in (0, 0, 1):
        optimizer.study.enqueue_trial({"arch": i})
    steps = schedule(arrays, optimizer, evaluations=4)
    assert steps == [(0, 9), (0, 3), (0, 1), (1, 9)]
    assert optimizer.repeats_answered == 3
    first, second = optimizer.study.trials[:2]
    assert first.value == second.value == 0.7
    # Only the four trainings cost seconds (30 s at 1/9, 100 s at 1/3, 300 s at full data).
    assert optimizer.cost_s == 30.0 + 100.0 + 300.0 + 30.0


@needs_optuna
def test_optuna_method_as_categorical_and_four_workers() -> None:
    # With several methods the trial's "method" parameter decides each low rung's loss, and
    # with 4 workers no (architecture, fidelity) is ever trained twice.
    rng = np.random.default_rng(0)
    low = {(m, p): rng.uniform(0.3, 0.6, 30) for m in ("nokd", "kd") for p in (27, 9, 3)}
    arrays = hand_made(low, rng.uniform(0.6, 0.7, 30))
    optimizer = OptunaMultiFidelity(
        arrays.placeholder_candidates(), methods=("nokd", "kd"), seed=3, encoding="index"
    )
    objective = ArraysObjective(arrays)
    trace = run_loop(
        optimizer, InProcessWorkers(objective, 4), limits=LoopLimits(max_evaluations=60)
    )
    keys = [(s.suggestion.arch, s.result.fidelity) for s in trace.steps]
    assert len(keys) == len(set(keys)) == 60
    by_trial = {t.number: t.params for t in optimizer.study.trials}
    assert {p["method"] for p in by_trial.values()} == {"nokd", "kd"}
    assert {f.method for _, f in keys if not f.is_high} == {"nokd", "kd"}


@needs_smac
def test_smac_hyperband_first_bracket_by_hand() -> None:
    # SMAC's Hyperband with eta 3 on budgets 1, 3, 9, 27 opens with its largest bracket: 27
    # trials at budget 1 (1/27 of the data), the best 9 at budget 3 (1/9), the best 3 of those
    # at budget 9 (1/3), the best 1 at 27 (full data). With one categorical id over 27
    # candidates, SMAC's own configuration generator draws some configurations twice for the
    # bracket; SMAC runs each once, and the repeats fill slots (here 17 distinct at budget 1,
    # 8 promoted). Each promotion must be the best of the rung below by its valid accuracy.
    rng = np.random.default_rng(5)
    low = {("nokd", p): rng.permutation(27) / 100 + 0.3 for p in (27, 9, 3)}
    arrays = hand_made(low, rng.permutation(27) / 100 + 0.5)
    optimizer = SMACMultiFidelity(arrays.placeholder_candidates(), seed=1, encoding="index")
    try:
        steps = schedule(arrays, optimizer, evaluations=40)
    finally:
        optimizer.close()
    blocks: list[tuple[int, list[int]]] = []  # (part, members) of consecutive steps
    for i, part in steps:
        if blocks and blocks[-1][0] == part:
            blocks[-1][1].append(i)
        else:
            blocks.append((part, [i]))
    assert [part for part, _ in blocks[:4]] == [27, 9, 3, 1]
    assert optimizer.repeats_answered == 0  # SMAC never asked for a repeat itself
    for (part, below), (_, promoted) in pairwise(blocks[:4]):
        ranked = sorted(below, key=lambda i: -low[("nokd", part)][i])
        assert sorted(promoted) == sorted(ranked[: len(promoted)])
    assert len(blocks[1][1]) >= 8 and len(blocks[2][1]) == 3 and len(blocks[3][1]) == 1


def test_peers_are_imported_only_when_an_adapter_is_built() -> None:
    # No module-level import of a peer: kdnas imports without them.
    tree = ast.parse(Path(field.__file__).read_text())
    imported = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    peers = {"optuna", "smac", "ConfigSpace", "dehb"}
    assert not {name.split(".")[0] for name in imported} & peers
    assert "numpy" in imported  # the walk does see the module's imports


def test_a_missing_peer_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def refuse(name: str, *args: object):
        if name == "optuna":
            raise ImportError("No module named 'optuna'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", refuse)
    arrays = hand_made({("nokd", 9): [0.5, 0.4]}, [0.7, 0.6])
    with pytest.raises(ImportError, match=r"pip install 'kdnas\[field\]'"):
        OptunaMultiFidelity(arrays.placeholder_candidates(), seed=0)


# Optuna's HyperbandPruner, from its definition (Li et al. 2018, as Optuna implements it),
# with min_resource 1, max_resource 27, reduction factor eta 3:
#   - brackets: floor(log_3(27 / 1)) + 1 = 4, ids b = 0..3, s = 3 - b;
#   - a bracket's share of trials: ceil(4 * 3**s / (s + 1)) = 27, 12, 6, 4 (49 in all);
#   - trial n's bracket: crc32(f"{study name}_{n}") % 49, counted off through the shares
#     (0..26 -> 0, 27..38 -> 1, 39..44 -> 2, 45..48 -> 3);
#   - bracket b is asynchronous successive halving among its own trials only, its rung j
#     decided at step 3**(b + j): a trial reporting that step continues iff its value is >=
#     the k-th best value at that rung so far (itself included), k = max(1, n // 3).
# Bracket 0 thus decides at steps 1, 3, 9; bracket 1 at 3, 9; bracket 2 at 9; bracket 3 never
# (its trials all reach the full data).
HYPERBAND_SHARES = (27, 12, 6, 4)


def hyperband_bracket(study_name: str, number: int) -> int:
    n = binascii.crc32(f"{study_name}_{number}".encode()) % sum(HYPERBAND_SHARES)
    for bracket, share in enumerate(HYPERBAND_SHARES):
        if n < share:
            return bracket
        n -= share
    raise AssertionError("unreachable: n < 49")


def hyperband_schedule(
    low: dict[int, list[float]], brackets: list[int]
) -> tuple[list[tuple[int, int]], list[str]]:
    """(architecture, part) of each training and each trial's final state, trial i being
    architecture i on one worker, by the rules above (resource r is part 27 / r)."""
    steps: list[tuple[int, int]] = []
    states: list[str] = []
    seen: dict[tuple[int, int], list[float]] = {}  # (bracket, rung) -> values reported there
    for arch, bracket in enumerate(brackets):
        rung, state = 0, "COMPLETE"
        for resource in (1, 3, 9, 27):
            steps.append((arch, 27 // resource))
            if resource == 27:
                break
            value = low[27 // resource][arch]
            if resource >= 3 ** (bracket + rung):  # this step decides the trial's next rung
                competing = [*seen.get((bracket, rung), []), value]
                seen[(bracket, rung)] = competing
                k = max(1, len(competing) // 3)
                if value < sorted(competing, reverse=True)[k - 1]:
                    state = "PRUNED"
                    break
                rung += 1
        states.append(state)
    return steps, states


@needs_optuna
def test_optuna_hyperband_pruner_decisions_by_hand() -> None:
    # 30 trials, architecture i as trial i, one worker, distinct accuracies: every training
    # and every prune must be Hyperband's as defined above. A pruner that never prunes, or
    # one built with another max_resource (other brackets) or eta (other rungs), fails.
    n = 30
    rng = np.random.default_rng(11)
    low = {part: list(rng.permutation(n) / 100 + 0.3) for part in (27, 9, 3)}
    hf = list(rng.permutation(n) / 100 + 0.6)
    arrays = hand_made({("kd", p): v for p, v in low.items()}, hf)
    optimizer = OptunaMultiFidelity(
        arrays.placeholder_candidates(), methods=("kd",), pruner="hyperband", seed=4
    )
    for i in range(n):
        optimizer.study.enqueue_trial({"arch": i})
    brackets = [hyperband_bracket(optimizer.study.study_name, i) for i in range(n)]
    expected, states = hyperband_schedule(low, brackets)
    # The case exercises Hyperband: trials in several brackets, prunes at several rungs.
    assert len(set(brackets)) >= 3
    last_part = {arch: part for arch, part in expected}  # where each trial stopped
    pruned_at = {last_part[i] for i, state in enumerate(states) if state == "PRUNED"}
    assert pruned_at == {27, 9, 3}
    assert schedule(arrays, optimizer, evaluations=len(expected)) == expected
    assert [t.state.name for t in optimizer.study.trials[:n]] == states
