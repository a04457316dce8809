"""DEHB behind kdnas's ask/tell (``kdnas.peers.adapters.DEHBMultiFidelity``): on a hand-made
benchmark its brackets and promotions are the ones worked out by hand from DEHB's definition
(so the adapter does not handicap it).

dehb 0.1.2 requires numpy < 2, so these tests run in an environment of its own (see
docs/search.md); elsewhere they skip."""

from __future__ import annotations

import importlib
import importlib.util
from itertools import pairwise

import numpy as np
import pytest

from kdnas.loop import InProcessWorkers, LoopLimits, run_loop
from kdnas.peers.adapters import DEHBMultiFidelity
from kdnas.replay.arrays import ArraysObjective, SpaceArrays

needs_dehb = pytest.mark.skipif(
    importlib.util.find_spec("dehb") is None,
    reason="dehb is not installed (pip install 'kdnas[dehb]'; it requires numpy < 2, so in a "
    "separate environment)",
)

PARTS = (27, 9, 3)  # the low rungs; DEHB's fidelities 1, 3, 9 (and 27: full data)


def space_of_27(seed: int) -> tuple[SpaceArrays, dict[float, np.ndarray]]:
    """27 candidates with distinct valid accuracies at every rung (so a told fitness names
    its candidate); {DEHB fidelity: accuracies}."""
    rng = np.random.default_rng(seed)
    acc = {float(27 // p): 0.3 + rng.permutation(27) / 100 for p in PARTS}
    acc[27.0] = 0.5 + rng.permutation(27) / 100
    columns = {
        ("nokd", p): {
            "valid_acc": acc[float(27 // p)],
            "test_acc": acc[float(27 // p)],
            "wall_time": np.full(27, 10.0 * 27 / p),
        }
        for p in PARTS
    }
    features = np.arange(54, dtype=float).reshape(27, 2) % 7
    return SpaceArrays("toy", features, acc[27.0], acc[27.0], np.full(27, 300.0), columns), acc


def told(optimizer: DEHBMultiFidelity, acc: dict[float, np.ndarray]):
    """DEHB's own record of what it was told, in order: (fidelity, candidate, vector)."""
    out = []
    for _, vector, fitness, _, fidelity, _ in optimizer.dehb.history:
        (candidate,) = np.flatnonzero(np.isclose(1.0 - acc[fidelity], fitness))
        out.append((fidelity, int(candidate), tuple(vector)))
    return out


@needs_dehb
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dehb_first_hyperband_round_by_hand(seed: int) -> None:
    arrays, acc = space_of_27(seed)
    optimizer = DEHBMultiFidelity(arrays.placeholder_candidates(), seed=seed)
    try:
        run_loop(optimizer, InProcessWorkers(ArraysObjective(arrays), 1), limits=LoopLimits())
    except Exception:
        optimizer.close()
        raise
    # The loop ends when DEHB proposes only what it has seen (the adapter's repeat limit);
    # DEHB's first Hyperband round (4 brackets) comes long before.
    history = told(optimizer, acc)
    # DEHB starts a random subpopulation per fidelity (its slots, in order).
    initial: dict[float, list[tuple]] = {}
    for item in optimizer.dehb.config_repository.initial_configs:
        initial.setdefault(next(iter(item.results)), []).append(tuple(item.config))
    optimizer.close()
    # Hyperband with eta 3 on fidelities 1, 3, 9, 27: brackets of n = 27, 9, 6, 4 at their
    # first fidelity, each rung keeping floor(n / 3^i) (at least 1):
    sizes = [(1.0, 27), (3.0, 9), (9.0, 3), (27.0, 1)]  # bracket 0
    sizes += [(3.0, 9), (9.0, 3), (27.0, 1)]  # bracket 1
    sizes += [(9.0, 6), (27.0, 2)]  # bracket 2
    sizes += [(27.0, 4)]  # bracket 3
    blocks, at = [], 0
    for fidelity, n in sizes:
        block = history[at : at + n]
        assert [f for f, _, _ in block] == [fidelity] * n
        blocks.append(block)
        at += n

    def promoted(below, n, present):
        # DEHB's first Hyperband round: a rung takes the best n individuals (fitness
        # 1 - valid acc, lowest first) of the lower fidelity's subpopulation, leaving out any
        # individual (vector) already present in the higher fidelity's subpopulation; a
        # candidate DEHB proposed twice is two individuals.
        ranked = sorted(below, key=lambda entry: 1.0 - acc[entry[0]][entry[1]])
        return sorted([c for _, c, vector in ranked if vector not in present][:n])

    # Bracket 0: the higher fidelity's subpopulation is still DEHB's random start.
    for below, above in pairwise(blocks[:4]):
        assert sorted(c for _, c, _ in above) == promoted(below, len(above), initial[above[0][0]])
    # Bracket 1, fidelity 3 -> 9: each new fidelity-3 individual took its parent's slot
    # (its position in the rung, modulo the subpopulation's 9) when at least as good; the
    # fidelity-9 subpopulation holds bracket 0's three in slots 0-2, its random start after.
    slots = list(blocks[1])
    for position, entry in enumerate(blocks[4]):
        old = slots[position % 9]
        if 1.0 - acc[3.0][entry[1]] <= 1.0 - acc[3.0][old[1]]:
            slots[position % 9] = entry
    present = [vector for _, _, vector in blocks[2]] + initial[9.0][3:]
    assert sorted(c for _, c, _ in blocks[5]) == promoted(slots, 3, present)
    # The best full-data result is the adapter's incumbent.
    full = [acc[27.0][c] for f, c, _ in history if f == 27.0]
    assert optimizer.best().valid_acc == max(full)


@needs_dehb
def test_dehb_four_workers_never_train_twice_and_fill_the_workers() -> None:
    # With 4 workers a bracket's rung waits for its results; DEHB then opens the next bracket
    # (its asynchronous rule), so no worker idles and no (candidate, fidelity) trains twice.
    arrays, _ = space_of_27(3)
    optimizer = DEHBMultiFidelity(arrays.placeholder_candidates(), seed=3)
    try:
        trace = run_loop(
            optimizer,
            InProcessWorkers(ArraysObjective(arrays), 4),
            limits=LoopLimits(max_evaluations=60),
        )
    finally:
        optimizer.close()
    keys = [(s.suggestion.arch, s.result.fidelity) for s in trace.steps]
    assert len(keys) == len(set(keys)) == 60
    assert optimizer.dehb.iteration_counter >= 1
    # Busy workers: the clock is the work shared by 4, give or take the last training (300 s).
    assert trace.steps[-1].elapsed_s <= optimizer.cost_s / 4 + 300.0


@needs_dehb
def test_dehb_method_as_categorical() -> None:
    arrays, _ = space_of_27(4)
    low = {("kd", p): arrays.low[("nokd", p)] for p in PARTS}
    arrays = SpaceArrays(
        "toy",
        arrays.features,
        arrays.hf_valid,
        arrays.hf_test,
        arrays.hf_time,
        {**arrays.low, **low},
    )
    optimizer = DEHBMultiFidelity(arrays.placeholder_candidates(), methods=("nokd", "kd"), seed=0)
    try:
        trace = run_loop(
            optimizer,
            InProcessWorkers(ArraysObjective(arrays), 1),
            limits=LoopLimits(max_evaluations=40),
        )
    finally:
        optimizer.close()
    assert {s.result.fidelity.method for s in trace.steps if s.result.fidelity.part > 1} == {
        "nokd",
        "kd",
    }


def test_a_missing_dehb_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def refuse(name: str, *args: object):
        if name == "dehb":
            raise ImportError("No module named 'dehb'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", refuse)
    arrays, _ = space_of_27(0)
    with pytest.raises(ImportError, match=r"pip install 'kdnas\[dehb\]'"):
        DEHBMultiFidelity(arrays.placeholder_candidates(), seed=0)
