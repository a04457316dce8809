"""Training throughput: a conventional PyTorch loop versus kdnas's trainer, same model and batch.

Rows (images per second of training, forward + backward + SGD step, data handling included):

* conventional: a ``torch.utils.data.Dataset`` whose ``__getitem__`` pads, crops, flips and
  normalises one sample at a time, batched by a ``DataLoader`` (shuffle, ``--workers``
  processes), the network in the default memory format, float32;
* conventional + channels_last: the same loop with the network and batches in channels-last
  layout (separates the layout's share of the gain from the data pipeline's);
* kdnas: ``kdnas.train.train_network``: the images held as one tensor on the device, each
  batch cut out by one gather, channels-last, bfloat16 autocast on CUDA.

Run: ``python benchmarks/train_throughput.py`` (defaults: the MobileNetV2 space's original
network at full width on CIFAR-shaped random images, 100 classes, batch 128). ``--quick``
shrinks it for a smoke run. Prints each row and the ratio to the conventional loop, and
writes a JSON summary (mean and std over ``--repeats``, the config, the git SHA).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kdnas.data import DeviceImages, ImageSet
from kdnas.distill.logit import CrossEntropyLoss
from kdnas.spaces import get_space
from kdnas.train import TrainConfig, describe_device, pick_device, train_network

#: The timer: process CPU time on a CPU run (the work, not the neighbours' load; with
#: DataLoader workers > 0 their CPU time is not counted, so use --clock wall then),
#: wall time on CUDA (after a synchronize).
clock = time.perf_counter


class PerSampleDataset(torch.utils.data.Dataset):
    """The usual torchvision-style pipeline, written out: one sample at a time."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean, std, padding: int) -> None:
        self.images = images  # N x H x W x C uint8, as CIFAR is usually stored
        self.labels = labels
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)
        self.padding = padding

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = torch.from_numpy(self.images[index]).permute(2, 0, 1).float().div(255)
        p = self.padding
        padded = F.pad(image, (p, p, p, p))
        y, x = np.random.randint(0, 2 * p + 1, size=2)
        image = padded[:, y : y + image.shape[1], x : x + image.shape[2]]
        if np.random.rand() < 0.5:
            image = image.flip(2)
        return (image - self.mean) / self.std, int(self.labels[index])


def conventional(model, images, labels, config, device, workers, channels_last, epochs) -> float:
    dataset = PerSampleDataset(images, labels, (0.5,) * 3, (0.25,) * 3, config.crop_padding)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
    )
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    seen = 0
    start = clock()
    for _ in range(epochs):
        for x, y in loader:
            x = x.to(device, non_blocking=True).contiguous(memory_format=memory)
            y = y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (clock() - start)


def project(model, images, labels, config, device, epochs) -> float:
    data = ImageSet(
        torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)
    )
    train = DeviceImages(data, (0.5,) * 3, (0.25,) * 3, config.crop_padding, device)
    model = model.to(device, memory_format=torch.channels_last)
    run = TrainConfig(**{**config.to_dict(), "epochs": epochs, "lr": 0.01})
    start = clock()
    train_network(model, CrossEntropyLoss(), train, run, seed=0)
    n = len(train) // config.batch_size * config.batch_size
    return n * epochs / (clock() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1024, help="training images per epoch")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--clock",
        choices=("auto", "cpu", "wall"),
        default="auto",
        help="auto: process CPU time on the CPU with --workers 0, else wall",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run")
    parser.add_argument("--output", default="benchmarks/results/train_throughput.json")
    args = parser.parse_args()
    if args.quick:
        args.images, args.resolution, args.width, args.repeats = 256, 16, 0.25, 1
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    device = pick_device(args.device)
    global clock
    if args.clock == "cpu" or (args.clock == "auto" and device.type == "cpu" and not args.workers):
        clock = time.process_time
    rng = np.random.default_rng(0)
    n = args.images // args.batch_size * args.batch_size
    images = rng.integers(0, 256, (n, args.resolution, args.resolution, 3), dtype=np.uint8)
    labels = rng.integers(0, 100, n).astype(np.int64)
    config = TrainConfig(batch_size=args.batch_size, crop_padding=4)
    space = get_space("mobilenetv2")

    def network():
        torch.manual_seed(0)
        return space.build_network(space.original(), 100, 3, args.width)

    rows = {
        "conventional": lambda: conventional(
            network(), images, labels, config, device, args.workers, False, args.epochs
        ),
        "conventional + channels_last": lambda: conventional(
            network(), images, labels, config, device, args.workers, True, args.epochs
        ),
        "kdnas trainer": lambda: project(network(), images, labels, config, device, args.epochs),
    }
    for run in rows.values():  # warm-up: allocator, oneDNN/cuDNN kernel choice
        run()
    measured: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.repeats):
        for name, run in rows.items():  # interleaved, so load changes hit every row alike
            measured[name].append(run())
    base = statistics.mean(measured["conventional"])
    print(f"clock: {'process CPU' if clock is time.process_time else 'wall'} time")
    print(
        f"device: {describe_device(device)}; MobileNetV2 original x{args.width}, "
        f"{args.resolution}x{args.resolution}, batch {args.batch_size}, {n} images/epoch"
    )
    summary = {}
    for name, values in measured.items():
        mean = statistics.mean(values)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        summary[name] = {"images_per_s": mean, "std": std, "ratio": mean / base}
        print(f"{name:32s} {mean:9.1f} images/s (+-{std:.1f})  ratio {mean / base:.2f}x")
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        sha = ""
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "rows": summary,
                "args": vars(args),
                "git_sha": sha,
                "device": describe_device(device),
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
