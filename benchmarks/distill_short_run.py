"""Validation accuracy of every loss after one short run on the digits, over student seeds.

The setting of ``tests/distill/test_feature_training.py``: a ShuffleNetV2 teacher trained with
cross-entropy on the digits' whole training split, and a mismatched ShuffleNetV2 student
trained for a few epochs on 768 images with each method's default weights (the paper's
ShuffleNetV2 column, rescaled to the input size; see docs/distillation.md), through
``train_network`` and the teacher cache. Prints one row per method: the accuracy per seed,
their mean and the ratio of the mean to the cross-entropy student's mean.

    python benchmarks/distill_short_run.py --seeds 1 2 3 4 5 6
    python benchmarks/distill_short_run.py --resolution 8 --hp attention:beta=4000
    python benchmarks/distill_short_run.py --precise-bn --distillation-warmup 0.2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from kdnas.core import METHODS
from kdnas.train import accuracy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "distill"))
from _short_run import short_run_setting, train_student


def _overrides(items: list[str]) -> dict[str, dict[str, float]]:
    """``method:name=value`` strings -> {method: {name: value}}."""
    parsed: dict[str, dict[str, float]] = {}
    for item in items:
        method, _, assignment = item.partition(":")
        name, _, value = assignment.partition("=")
        parsed.setdefault(method, {})[name] = float(value)
    return parsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--resolution", type=int, default=None, help="default: the digits' 16")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--images", type=int, default=768)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hp", nargs="*", default=[], help="method:name=value overrides")
    parser.add_argument(
        "--weights", default="shufflenetv2", help="the space whose Appendix A column is used"
    )
    parser.add_argument(
        "--precise-bn", action="store_true", help="TrainConfig.precise_bn for the students"
    )
    parser.add_argument(
        "--distillation-warmup", type=float, default=0.0, help="TrainConfig.distillation_warmup"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = _overrides(args.hp)
    start = time.process_time()
    setting = short_run_setting(
        args.resolution,
        args.images,
        args.epochs,
        precise_bn=args.precise_bn,
        distillation_warmup=args.distillation_warmup,
    )
    print(f"teacher valid_acc {accuracy(setting[4], setting[2], setting[0]):.3f}")
    means: dict[str, float] = {}
    for method in args.methods:
        accuracies = [
            train_student(method, seed, setting, overrides.get(method), args.weights)[0]
            for seed in args.seeds
        ]
        means[method] = sum(accuracies) / len(accuracies)
        ratio = means[method] / means["nokd"] if "nokd" in means else float("nan")
        row = " ".join(f"{a:.3f}" for a in accuracies)
        print(f"{method:12s} {row}  mean {means[method]:.3f}  vs nokd {ratio:.2f}", flush=True)
    print(f"cpu seconds {time.process_time() - start:.0f}")


if __name__ == "__main__":
    main()
