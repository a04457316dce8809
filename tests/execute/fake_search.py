"""A fake, fast search for executor tests; also a script run (and killed) as a subprocess.

``ToyObjective`` sleeps a little and returns accuracies that are a fixed function of the
architecture and fidelity; it can log every evaluation it starts, so tests can prove that no
finished evaluation is ever run twice. ``HistoryOptimizer`` chooses its next candidate from a
hash of everything it has been told, in order, so any mistake in replaying a resumed run
(a missing, extra or reordered tell) changes what it asks next. ``ShuffledOptimizer`` is a
seeded random order of the candidates, independent of the results (parallel-safe).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from kdnas.core import Architecture, EvalResult, Fidelity, Suggestion

LOW = Fidelity(part=9, method="kd")
HIGH = Fidelity(part=1, method="nokd")


def toy_candidates(n: int) -> list[Architecture]:
    return [Architecture("toy", (i, i % 3)) for i in range(n)]


def toy_accuracy(arch: Architecture, fidelity: Fidelity) -> float:
    digest = hashlib.sha256(f"{arch.key()}/{fidelity.label()}".encode()).digest()
    return 0.2 + 0.6 * int.from_bytes(digest[:4], "big") / 2**32


class ToyObjective:
    """Deterministic accuracies; architecture index ``diverge_index`` diverges."""

    def __init__(
        self, sleep_s: float = 0.0, log_path: str | None = None, diverge_index: int = 3
    ) -> None:
        self.sleep_s = sleep_s
        self.log_path = log_path
        self.diverge_index = diverge_index

    def loss_hyperparameters(self, fidelity: Fidelity) -> dict[str, float]:
        return {"tau": 4.0, "lambda": 0.9} if fidelity.method == "kd" else {}

    def evaluate(self, arch: Architecture, fidelity: Fidelity) -> EvalResult:
        if self.log_path is not None:
            with open(self.log_path, "a") as log:
                log.write(f"{arch.key()} {fidelity.part} {fidelity.method}\n")
                log.flush()
                os.fsync(log.fileno())
        time.sleep(self.sleep_s)
        cost = 10.0 / fidelity.part
        if arch.genotype[0] == self.diverge_index:
            return EvalResult(
                arch.key(),
                fidelity,
                math.nan,
                math.nan,
                cost,
                "diverged",
                seed=0,
                metrics={"final_loss": math.inf},
            )
        accuracy = toy_accuracy(arch, fidelity)
        return EvalResult(
            arch.key(),
            fidelity,
            accuracy,
            accuracy - 0.01,
            cost,
            "ok",
            seed=0,
            metrics={"epochs": 2.0},
            info={"subset_hash": f"part{fidelity.part}"},
        )


class HistoryOptimizer:
    """Asks ``n_low`` low-fidelity then ``n_high`` high-fidelity candidates, history-driven."""

    def __init__(self, candidates: list[Architecture], n_low: int, n_high: int, seed: int):
        self.candidates = candidates
        self.n_low, self.n_high = n_low, n_high
        self.history = hashlib.sha256(str(seed).encode())
        self.asked: set[tuple[str, Fidelity]] = set()
        self.n_asked = 0
        self.told: list[tuple[int, float]] = []

    def ask(self) -> Suggestion | None:
        if self.n_asked >= self.n_low + self.n_high:
            return None
        fidelity = LOW if self.n_asked < self.n_low else HIGH
        state = self.history.hexdigest()
        order = sorted(
            self.candidates, key=lambda a: hashlib.sha256((state + a.key()).encode()).digest()
        )
        arch = next(a for a in order if (a.key(), fidelity) not in self.asked)
        self.asked.add((arch.key(), fidelity))
        suggestion = Suggestion(self.n_asked, arch, fidelity)
        self.n_asked += 1
        return suggestion

    def tell(self, suggestion: Suggestion, result: EvalResult) -> None:
        self.history.update(f"{suggestion.trial_id}:{result.valid_acc!r};".encode())
        self.told.append((suggestion.trial_id, result.valid_acc))


class ShuffledOptimizer:
    """A seeded random order of the candidates at one fidelity, ``budget`` of them."""

    def __init__(self, candidates: list[Architecture], budget: int, seed: int):
        order = np.random.default_rng(seed).permutation(len(candidates))
        self.queue = [candidates[i] for i in order[:budget]]
        self.n_asked = 0
        self.told: list[int] = []

    def ask(self) -> Suggestion | None:
        if self.n_asked >= len(self.queue):
            return None
        suggestion = Suggestion(self.n_asked, self.queue[self.n_asked], LOW)
        self.n_asked += 1
        return suggestion

    def tell(self, suggestion: Suggestion, result: EvalResult) -> None:
        self.told.append(suggestion.trial_id)


def main(argv: list[str] | None = None) -> int:
    from kdnas.execute import SerialExecutor
    from kdnas.store import SQLiteStore

    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--log")
    parser.add_argument("--sleep", type=float, default=0.05)
    parser.add_argument("--n-low", type=int, default=12)
    parser.add_argument("--n-high", type=int, default=6)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    optimizer = HistoryOptimizer(toy_candidates(30), args.n_low, args.n_high, args.seed)
    objective = ToyObjective(args.sleep, args.log)
    config = {"search": "toy", "n_low": args.n_low, "n_high": args.n_high, "seed": args.seed}
    with SQLiteStore(Path(args.store)) as store:
        summary = SerialExecutor().run(optimizer, objective, store, run_id="toy", config=config)
    print(f"replayed {summary.n_replayed} new {summary.n_new}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
