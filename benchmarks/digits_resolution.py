"""Should the 8x8 digits be upsampled? Accuracy and CPU time of one network per input size.

Trains the MobileNetV2 space's original network (width 0.25, cross-entropy) on 1/PART of the
embedded digits at each resolution and seed, and prints validation/test accuracy, the
process's CPU seconds and multiply-adds. docs/training.md records the run behind the default
(16x16): ``python benchmarks/digits_resolution.py --resolutions 8 16 --epochs 40 --part 3``.
"""

from __future__ import annotations

import argparse
import time

import torch

from kdnas import Fidelity
from kdnas.data import load_dataset, prepare
from kdnas.spaces import get_space
from kdnas.train import TrainConfig, TrainingObjective


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--part", type=int, default=3)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    space = get_space("mobilenetv2")
    digits = load_dataset("digits")
    print("resolution seed valid_acc test_acc cpu_s multiply_adds")
    for resolution in args.resolutions:
        data = prepare(digits, resolution=resolution)
        config = TrainConfig.for_data(data, epochs=args.epochs, width_multiplier=args.width)
        for seed in args.seeds:
            objective = TrainingObjective(space, data, config, seed=seed, device="cpu")
            start = time.process_time()
            result = objective.train(space.original(), Fidelity(part=args.part))
            print(
                f"{resolution:10d} {seed:4d} {result.valid_acc:9.3f} {result.test_acc:8.3f} "
                f"{time.process_time() - start:5.1f} {result.multiply_adds:13d}"
            )


if __name__ == "__main__":
    main()
