"""Deliberate breakages of kdnas's core, each run against the tests that must catch it.

Each mutant replaces one exact piece of source text (found exactly once) in a scratch copy of
``src/kdnas``; the named tests then run with that copy first on PYTHONPATH, so they import
the broken package while the checkout stays untouched. A mutant is killed when its tests
fail, and survives when they pass. Before any mutant, the union of the tests runs on the
unbroken source and must pass (a test failing there would kill every mutant for nothing).

The breakages cover the evaluation loop, the store's resume, the chance guard on teachers,
the losses, the DDP sharding and evaluation, the field's adapters (Optuna, SMAC, Syne Tune,
DEHB, the zero-cost baseline) and the command line's "nothing written before validation".

    .venv/bin/python scripts/mutation_check.py    # all mutants (10-14 min on 2 busy cores)
    .venv/bin/python scripts/mutation_check.py --only ddp-shard-first-half field-

SMAC and Syne Tune must be installed in .venv (``KDNAS_EXTRAS=dev,field,syne-tune bash
scripts/_venv.sh``), and DEHB's mutant runs in .venv-dehb (``bash scripts/test_dehb.sh``):
KDNAS_REQUIRE is set so that a missing peer fails instead of letting its mutant survive.
Not part of CI: it trains networks for minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAIN_PYTHON = ROOT / ".venv" / "bin" / "python"
DEHB_PYTHON = ROOT / ".venv-dehb" / "bin" / "python"


@dataclass(frozen=True)
class Mutant:
    """One breakage.

    Args:
        name: a short id (prefix = the part of kdnas it breaks).
        path: the file, relative to src/kdnas.
        old: source text found exactly once in the file.
        new: what replaces it.
        tests: pytest arguments (files, node ids, -k expressions) that must fail.
        python: the interpreter of the environment the tests need.
    """

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    python: Path = MAIN_PYTHON


FIELD = "tests/peers/test_adapters.py"
DDP = "tests/train/test_distributed.py"
MUTANTS: tuple[Mutant, ...] = (
    # The loop
    Mutant(
        "loop-one-evaluation-too-many",
        "loop/evaluation_loop.py",
        "already_finished + len(steps) + workers.busy >= limits.max_evaluations",
        "already_finished + len(steps) + workers.busy > limits.max_evaluations",
        ("tests/loop/test_loop.py",),
    ),
    Mutant(
        "loop-resumed-queue-reversed",
        "loop/evaluation_loop.py",
        "suggestion = queue.popleft()",
        "suggestion = queue.pop()",
        ("tests/loop/test_loop.py", "tests/replay/test_engine.py"),
    ),
    Mutant(
        "loop-cost-limit-ignored",
        "loop/evaluation_loop.py",
        "return limits.max_cost_s is not None and spent_s >= limits.max_cost_s",
        "return False",
        ("tests/loop/test_loop.py",),
    ),
    # The store's resume
    Mutant(
        "store-resume-under-another-configuration",
        "store/_protocol.py",
        "if stored.fingerprint != fingerprint:",
        "if False:",
        ("tests/store",),
    ),
    Mutant(
        "store-resume-under-an-incompatible-version",
        "store/_protocol.py",
        "if not versions_compatible(stored.package_version, version):",
        "if False:",
        ("tests/store",),
    ),
    Mutant(
        "store-results-read-back-reversed",
        "store/_sqlite.py",
        "WHERE run_id = ? ORDER BY seq",
        "WHERE run_id = ? ORDER BY seq DESC",
        ("tests/store", "tests/replay/test_engine.py"),
    ),
    # The chance guard
    Mutant(
        "chance-no-margin",
        "train/_teacher.py",
        "return self.accuracy + _CHANCE_MARGIN_SE * spread",
        "return self.accuracy",
        ("tests/train/test_teacher_protocol.py",),
    ),
    Mutant(
        "chance-most-frequent-class-ignored",
        "train/_teacher.py",
        "return cls(accuracy=float(torch.bincount(labels).max()) / n, n=n)",
        "return cls(accuracy=1.0 / len(torch.unique(labels)), n=n)",
        ("tests/train/test_teacher_protocol.py",),
    ),
    # The losses
    Mutant(
        "loss-kd-term-removed",
        "distill/logit.py",
        "total = (1.0 - share) * ce + share * kd",
        "total = ce + 0.0 * kd",
        ("tests/distill/test_logit.py",),
    ),
    Mutant(
        "loss-kd-without-tau-squared",
        "distill/logit.py",
        "scale = self.tau * self.tau",
        "scale = 1.0",
        ("tests/distill/test_logit.py",),
    ),
    Mutant(
        "loss-feature-term-removed",
        "distill/_combined.py",
        "total = self.ce_weight * ce + distillation_scale * self.beta * term",
        "total = self.ce_weight * ce + 0.0 * term",
        (
            "tests/distill/test_feature_training.py",
            "-k",
            "better_than_chance and (hint or pkt or crd)",
        ),
    ),
    # The DDP sharding and evaluation
    Mutant(
        "ddp-shard-first-half",
        "train/_distributed.py",
        "self.context.rank, self.context.world_size)",
        "0, self.context.world_size)",
        (DDP,),
    ),
    Mutant(
        "ddp-accuracy-not-reduced",
        "train/_distributed.py",
        "    _all_reduce(counts, context)\n",
        "",
        (DDP,),
    ),
    Mutant(
        "ddp-rank-zero-scores-a-third",
        "train/_distributed.py",
        "for start in range(rank * batch_size, len(images), batch_size * world):\n"
        "            index = torch.arange(start, min(start + batch_size, len(images)))",
        "for start in range(0, len(images) // 3 if rank == 0 else 0, batch_size):\n"
        "            index = torch.arange(start, min(start + batch_size, len(images) // 3))",
        (DDP,),
    ),
    Mutant(
        "ddp-batchnorm-not-broadcast",
        "train/_distributed.py",
        "dist.broadcast(buffer, 0)",
        "pass",
        (DDP,),
    ),
    # The field's adapters
    Mutant(
        "field-optuna-hyperband-never-prunes",
        "peers/adapters.py",
        "peer_pruner = optuna.pruners.HyperbandPruner(",
        "peer_pruner = optuna.pruners.NopPruner() or optuna.pruners.HyperbandPruner(",
        (FIELD,),
    ),
    Mutant(
        "field-optuna-hyperband-max-resource",
        "peers/adapters.py",
        "max_resource=resources[-1],\n                reduction_factor=self.ladder.eta,",
        "max_resource=resources[-2],\n                reduction_factor=self.ladder.eta,",
        (FIELD,),
    ),
    Mutant(
        "field-optuna-hyperband-eta",
        "peers/adapters.py",
        "max_resource=resources[-1],\n                reduction_factor=self.ladder.eta,",
        "max_resource=resources[-1],\n                reduction_factor=2,",
        (FIELD,),
    ),
    Mutant(
        "field-optuna-successive-halving-min-resource",
        "peers/adapters.py",
        "min_resource=resources[0], reduction_factor=self.ladder.eta",
        "min_resource=resources[1], reduction_factor=self.ladder.eta",
        (FIELD,),
    ),
    Mutant(
        "field-optuna-pruned-trial-continues",
        "peers/adapters.py",
        "            self.study.tell(trial, state=self._states.PRUNED)\n            return False",
        "            return True",
        (FIELD,),
    ),
    Mutant(
        "field-smac-eta",
        "peers/adapters.py",
        "get_intensifier(scenario, eta=self.ladder.eta)",
        "get_intensifier(scenario, eta=2)",
        (FIELD,),
    ),
    Mutant(
        "field-syne-tune-grace-period",
        "peers/adapters.py",
        "grace_period=resources[0],",
        "grace_period=resources[1],",
        ("tests/peers/test_adapters_synetune.py",),
    ),
    Mutant(
        "field-dehb-eta",
        "peers/adapters.py",
        "            eta=self.ladder.eta,\n            # One process",
        "            eta=2,\n            # One process",
        ("tests/peers/test_adapters_dehb.py",),
        python=DEHB_PYTHON,
    ),
    Mutant(
        "field-zero-cost-promotes-half",
        "peers/adapters.py",
        "return ranked[: max(1, len(members) // self.ladder.eta)]",
        "return ranked[: max(1, len(members) // 2)]",
        (FIELD,),
    ),
    # An import regression of kdnas's own module (it used to turn the test into a skip)
    Mutant(
        "package-open-format-does-not-import",
        "bench/open_format.py",
        "from __future__ import annotations\n",
        "from __future__ import annotations\n\nraise ImportError('a broken import')\n",
        ("tests/store/test_store_contract.py", "-k", "export_writes"),
    ),
    # Nothing written before validation
    Mutant(
        "cli-report-folder-before-validation",
        "cli/search.py",
        "    settings = settings_from_args(args)\n",
        "    __import__('os').makedirs(f'{args.store}.report', exist_ok=True)\n"
        "    settings = settings_from_args(args)\n",
        ("tests/cli/test_errors.py", "-k", "hostile"),
    ),
    Mutant(
        "cli-partial-export-folder",
        "cli/bench.py",
        "    if not Path(store_path).is_file():\n",
        "    Path(folder).mkdir(parents=True, exist_ok=True)\n"
        "    if not Path(store_path).is_file():\n",
        ("tests/cli/test_errors.py", "-k", "hostile"),
    ),
)


def apply(mutant: Mutant, scratch: Path) -> None:
    """Copy src/kdnas into ``scratch`` and break it as ``mutant`` says."""
    if scratch.exists():
        shutil.rmtree(scratch)
    shutil.copytree(ROOT / "src" / "kdnas", scratch / "kdnas")
    target = scratch / "kdnas" / mutant.path
    text = target.read_text()
    found = text.count(mutant.old)
    if found != 1:
        raise SystemExit(f"{mutant.name}: {mutant.path} holds the text {found} times, not once")
    text = text.replace(mutant.old, mutant.new)
    target.write_text(text)


def run_tests(python: Path, tests: tuple[str, ...], source: Path) -> tuple[bool, list[str], float]:
    """(passed, the failing tests' ids, seconds) of pytest on ``tests`` importing ``source``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(source)
    env["KDNAS_REQUIRE"] = "optuna,smac,syne-tune,dehb"
    start = time.monotonic()
    done = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", *tests],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    failing = re.findall(r"^(?:FAILED|ERROR) (\S+)", done.stdout, flags=re.MULTILINE)
    return done.returncode == 0, sorted(set(failing)), time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=[], help="mutant names or name prefixes")
    parser.add_argument("--skip-baseline", action="store_true", help="do not run unbroken first")
    args = parser.parse_args(argv)
    mutants = [m for m in MUTANTS if not args.only or any(m.name.startswith(p) for p in args.only)]
    if not mutants:
        raise SystemExit(f"no mutant matches {args.only}")
    with tempfile.TemporaryDirectory(prefix="kdnas-mutants-") as folder:
        scratch = Path(folder) / "src"
        if not args.skip_baseline:
            shutil.copytree(ROOT / "src" / "kdnas", scratch / "kdnas")
            for python in sorted({m.python for m in mutants}):
                tests = [
                    t
                    for m in mutants
                    if m.python == python
                    for t in m.tests
                    if "-k" not in m.tests
                ]
                keyed = [m.tests for m in mutants if m.python == python and "-k" in m.tests]
                for selection in [tuple(dict.fromkeys(tests)), *keyed]:
                    if not selection:
                        continue
                    passed, failing, seconds = run_tests(python, selection, scratch)
                    if not passed:
                        print(f"unbroken source fails {' '.join(selection)}: {failing}")
                        return 1
            print(f"unbroken source: the tests of {len(mutants)} mutants pass")
        survivors = []
        for mutant in mutants:
            apply(mutant, scratch)
            passed, failing, seconds = run_tests(mutant.python, mutant.tests, scratch)
            verdict = "SURVIVED" if passed else "killed"
            print(f"{verdict:8} {mutant.name} ({seconds:.0f} s): {', '.join(failing) or '-'}")
            sys.stdout.flush()
            if passed:
                survivors.append(mutant.name)
    killed = len(mutants) - len(survivors)
    print(f"{len(mutants)} mutants, {killed} killed, {len(survivors)} survived")
    for name in survivors:
        print(f"  survived: {name}")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
