"""The peers with the features encoding (the search space a user would declare): every
model-based row of the leaderboard has a features twin that runs end to end through the loop,
a point of the peer's space trains the nearest architecture not yet trained at that fidelity
(no training repeated, no proposal of the peer wasted on a stored result), and the
leaderboard's claims take each peer with the better of its two encodings."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
from test_adapters import hand_made  # pytest puts tests/peers on sys.path

from kdnas.core import HIGH_FIDELITY, Fidelity
from kdnas.loop import InProcessWorkers, LoopLimits, run_loop
from kdnas.peers.adapters import FidelityLadder, OptunaMultiFidelity
from kdnas.peers.leaderboard import (
    FEATURES_SUFFIX,
    KDNAS_BEST,
    PEER_ROWS,
    better_encodings,
    encodings_markdown,
    losses_of_best,
    merge_chunks,
    one_encoding_only,
    summarise,
)
from kdnas.replay.arrays import ArraysObjective, SpaceArrays

#: The import name of each peer library (the rows name their pip distribution).
MODULES = {"optuna": "optuna", "smac": "smac", "dehb": "dehb", "syne-tune": "syne_tune"}


def test_every_peer_has_both_encodings_in_paired_rows() -> None:
    keys = list(PEER_ROWS)
    peers = [row for row in PEER_ROWS.values() if row.encoding == "index"]
    # Optuna's four rows, SMAC's two, DEHB's three, Syne Tune's four (ASHA's three, BOHB).
    assert {row.library for row in peers} == {"optuna", "smac", "dehb", "syne-tune"}
    assert len(peers) == 13
    for row in peers:
        twin = PEER_ROWS[row.key + FEATURES_SUFFIX]
        assert (twin.encoding, twin.peer, twin.library) == ("features", row.key, row.library)
        assert twin.label == f"{row.label}, features"
        assert keys.index(twin.key) == keys.index(row.key) + 1  # printed right below it
    # The zero-cost baseline reads the proxy, not a peer's model: one row, no encoding.
    assert PEER_ROWS["zero_cost_sh"].encoding is None


def fixture_space(n: int = 40, seed: int = 0) -> SpaceArrays:
    """A MobileNetV2-keyed space (so the rows' "best method" is the paper's, attention) of
    ``n`` candidates with 4 feature columns; accuracies rise with the first feature, so a
    model that sees the features has something to learn."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, 4))
    quality = features[:, 0] + 0.3 * rng.normal(size=n)
    columns = {}
    for method in ("nokd", "attention", "kd"):
        for part, seconds in ((27, 10.0), (9, 30.0), (3, 100.0)):
            acc = 0.4 + 0.02 * quality + 0.01 * rng.normal(size=n)
            columns[(method, part)] = {
                "valid_acc": acc,
                "test_acc": acc,
                "wall_time": np.full(n, seconds),
            }
    hf = 0.6 + 0.02 * quality
    return SpaceArrays("mobilenet", features, hf, hf, np.full(n, 300.0), columns)


FEATURE_ROWS = [row for row in PEER_ROWS.values() if row.encoding == "features"]


@pytest.mark.parametrize("row", FEATURE_ROWS, ids=[row.key for row in FEATURE_ROWS])
def test_features_rows_run_end_to_end_without_repeating_a_training(row) -> None:
    if importlib.util.find_spec(MODULES[row.library]) is None:
        pytest.skip(f"{row.library} is not installed (pip install 'kdnas[{row.extra}]')")
    from kdnas.peers.leaderboard import quiet_peer_logging

    quiet_peer_logging()
    arrays = fixture_space()
    objective = ArraysObjective(arrays)
    optimizer = row.factory(objective.candidates, arrays, 7)
    assert optimizer.encoding.encoding == "features"
    # Watch every placement: a configuration asked for the first time at a rung (not a
    # promotion from a lower rung) must land on a candidate not trained nor running there.
    place, last_rung, fresh = optimizer._candidate, {}, []

    def watched(params: dict, rung: int, method: str) -> int:
        key = (tuple(sorted(params.items())), method)
        trained = optimizer._pool.used(optimizer.ladder.fidelity(rung, method))
        index = place(params, rung, method)
        if last_rung.get(key, rung) >= rung:
            fresh.append(index in trained)
        last_rung[key] = rung
        return index

    optimizer._candidate = watched
    try:
        trace = run_loop(
            optimizer, InProcessWorkers(objective, 4), limits=LoopLimits(max_evaluations=45)
        )
    finally:
        optimizer.close()
    keys = [(s.suggestion.arch, s.result.fidelity) for s in trace.steps]
    assert len(keys) == 45 and len(set(keys)) == 45  # no (architecture, fidelity) twice
    assert len(fresh) >= 10 and not any(fresh)
    if row.library in ("optuna", "syne-tune"):
        # Their runs climb with their candidate: no proposal was answered from the record.
        # (SMAC's and DEHB's promotions may find their candidate's next rung trained by
        # another bracket, and are then answered from the record, as with "index".)
        assert optimizer.repeats_answered == 0


@pytest.mark.skipif(
    importlib.util.find_spec("optuna") is None,
    reason="optuna is not installed (pip install 'kdnas[field]')",
)
def test_a_point_trains_the_nearest_candidate_not_yet_trained() -> None:
    # Three candidates on a line (features 0, 1, 3 after standardisation keeps the order);
    # TPE is made to propose candidate 0's point three times. The first trains 0, the second
    # the nearest one not yet trained at 1/9 (1), the third the next (2): the peer is told
    # three new results, none of them a stored one, and no training is repeated. With the
    # "index" encoding the same proposals would be repeats (test_adapters).
    arrays = hand_made(
        {("nokd", 9): [0.5, 0.4, 0.3], ("nokd", 3): [0.6, 0.5, 0.4]}, [0.7, 0.6, 0.5]
    )
    arrays = SpaceArrays(
        arrays.space,
        np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]]),
        arrays.hf_valid,
        arrays.hf_test,
        arrays.hf_time,
        arrays.low,
    )
    optimizer = OptunaMultiFidelity(
        arrays.placeholder_candidates(),
        pruner="successive_halving",
        seed=0,
        encoding="features",
        ladder=FidelityLadder((9, 3, 1)),
    )
    point = {"x0": float(optimizer.encoding.features[0, 0])}
    assert optimizer.encoding.names() == ["x0"]  # column 1 is constant: not in the space
    for _ in range(3):
        optimizer.study.enqueue_trial(point)
    objective = ArraysObjective(arrays)
    trace = run_loop(
        optimizer, InProcessWorkers(objective, 1), limits=LoopLimits(max_evaluations=5)
    )
    steps = [
        (objective.candidates.index_of(s.suggestion.arch), s.result.fidelity) for s in trace.steps
    ]
    # Candidate 0 climbs to full data; 1 and 2 are pruned at 1/9 by the pruner's rule.
    low = Fidelity(9, "nokd")
    assert steps == [(0, low), (0, Fidelity(3, "nokd")), (0, HIGH_FIDELITY), (1, low), (2, low)]
    assert optimizer.repeats_answered == 0
    # Once every candidate has been trained at 1/9, the nearest of all is taken (its repeat
    # is then answered from the record, as with "index").
    assert optimizer._candidate({"x0": point["x0"] + 2.0}, 0, "nokd") == 1
    assert optimizer._candidate(point, 0, "nokd") == 0


@pytest.mark.skipif(
    importlib.util.find_spec("optuna") is None,
    reason="optuna is not installed (pip install 'kdnas[field]')",
)
def test_a_configuration_keeps_its_candidate_as_it_climbs() -> None:
    # SMAC and DEHB ask for a promoted configuration again at the next budget: it must train
    # the architecture whose result promoted it, even though the nearest one not yet trained
    # at the new fidelity is another.
    arrays = fixture_space(n=10)
    optimizer = OptunaMultiFidelity(arrays.placeholder_candidates(), seed=0, encoding="features")
    config = {name: 0.0 for name in optimizer.encoding.names()}
    run = optimizer._run_at(None, config, 1)
    optimizer._pool.suggest(run.index, optimizer.ladder.fidelity(0, "nokd"))
    nearest = int(
        np.argmin((optimizer.encoding.features[:, optimizer.encoding.columns] ** 2).sum(1))
    )
    assert run.index == nearest
    optimizer._pool.suggest(run.index, HIGH_FIDELITY)  # trained at full data by another run
    promoted = optimizer._run_at(None, config, 27)
    assert (promoted.index, promoted.rung) == (run.index, 3)
    fresh = optimizer._run_at(None, {**config, "x0": 1e-9}, 1)
    assert fresh.index != run.index  # a new point goes to the nearest untrained one


def record(row: str, times, optimum_at=None, workers: int = 1) -> dict:
    """A chunk record of ``row`` on MobileNetV2 (whole space): run r finds the optimum (0.7) at
    times[r] (inf: never) and before that holds 0.69 from ``optimum_at`` or 1,000 s."""
    events = []
    for t in times:
        first = [(1_000.0, 0.69)]
        events.append(first + ([] if math.isinf(t) else [(t, 0.7)]))
    return {
        "row": row, "space": "mobilenet", "workers": workers, "kind": "whole", "first_run": 0,
        "runs": len(times), "library": "x", "version": "0", "seed": 0, "horizon_s": 40_000.0,
        "times": list(times), "events": events, "optima": [0.7] * len(times), "cpu_s": 1.0,
    }  # fmt: skip


def summary_of(*records: dict) -> dict:
    return {key: summarise(cell) for key, cell in merge_chunks(records).items()}


def test_the_better_encoding_decides_and_a_features_win_is_reported() -> None:
    # Two runs per row: the encodings' logic, with every row counted (min_runs=1).
    inf = math.inf
    summary = summary_of(
        record(KDNAS_BEST, [9_000.0, 9_000.0]),
        record("optuna_hb_best", [30_000.0, inf]),  # index: behind kdnas
        record("optuna_hb_best_features", [4_000.0, 6_000.0]),  # features: ahead of it
        record("smac_best", [inf, inf]),  # both censored at 40,000 s ...
        record("smac_best_features", [inf, inf]),
        record("dehb_best", [12_000.0, 12_000.0]),  # only one encoding measured
    )
    better = better_encodings(summary)
    assert better["optuna_hb_best/mobilenet/1/whole"]["encoding"] == "features"
    assert better["optuna_hb_best/mobilenet/1/whole"]["row"] == "optuna_hb_best_features"
    # ... a tie on seconds goes to the one holding the optimum more often, then less regret,
    # then the "index" encoding: here all equal.
    assert better["smac_best/mobilenet/1/whole"]["encoding"] == "index"
    assert one_encoding_only(summary) == ["dehb_best/mobilenet/1/whole"]
    losses = losses_of_best(summary, min_runs=1)
    assert [line.split(" beats ")[0] for line in losses if "mean seconds" in line] == [
        "Optuna TPE + Hyperband pruner, best method, features (2 runs)"
    ]
    assert "5,000 vs 9,000" in losses[0]
    # Neither the index row nor the other peers beat kdnas on anything.
    assert not [line for line in losses if "features" not in line]
    table = encodings_markdown(summary)
    assert "| Optuna TPE + Hyperband pruner, best method | features: 5,000 (>= 35,000) |" in table
    assert "| DEHB, best method | index: 12,000 (only one) |" in table


def test_a_peer_counts_with_either_encoding_on_each_measure() -> None:
    # Features is faster to the optimum, index holds it earlier (at 5,000 s) in one run of
    # two: each is a loss of kdnas's on its own measure, and each line names its encoding.
    summary = summary_of(
        record(KDNAS_BEST, [8_000.0, 8_000.0]),
        record("optuna_sh_best", [3_000.0, 30_000.0]),
        record("optuna_sh_best_features", [7_000.0, 7_000.0]),
    )
    losses = losses_of_best(summary, min_runs=1)
    seconds = [line for line in losses if "mean seconds" in line]
    assert len(seconds) == 1 and seconds[0].startswith(
        "Optuna TPE + successive-halving pruner, best method, features (2 runs) beats"
    )
    at_5k = [line for line in losses if "at 5,000 s" in line]
    assert len(at_5k) == 1 and at_5k[0].startswith(
        "Optuna TPE + successive-halving pruner, best method (2 runs) beats"
    )
    # kdnas ahead of both encodings: nowhere.
    ahead = summary_of(
        record(KDNAS_BEST, [2_000.0, 2_000.0]),
        record("optuna_sh_best", [3_000.0, 30_000.0]),
        record("optuna_sh_best_features", [7_000.0, 7_000.0]),
    )
    assert losses_of_best(ahead, min_runs=1) == []
