"""Streaming image folders: decoding throughput with worker processes, and flat memory.

Makes synthetic JPEG folders (``--side`` px, default 256) in a temporary directory, then
streams one epoch of the whole training pool through ``kdnas.data.StreamingLoader`` (decode,
resize, random-resized crop to ``--resolution``, flip, normalise; no network):

* images/s with ``--workers`` DataLoader workers (default 2) against the same loop with 0
  workers (decoding in the training process, the baseline), on the smaller folder;
* the peak resident memory (max RSS) of the training process and of the largest worker for
  each folder size (default 2,000 and 20,000 images): flat when it does not grow with the
  folder, unlike the resident path, which holds every image.

Each size runs in a fresh process so that peaks do not carry over. Prints each row and the
ratio; writes a JSON summary (config, git SHA) with ``--json``.

Run: ``python benchmarks/stream_throughput.py`` (a few minutes on 2 cores);
``--sizes 200 2000 --side 128`` for a quick run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_folder(root: Path, images: int, side: int, classes: int = 10) -> Path:
    """``images`` JPEGs (smooth colour fields with noise, like photos compress) plus a small
    test part, in ``root/train|test/<class>/``."""
    from PIL import Image

    rng = np.random.default_rng(0)
    grid = np.linspace(0, 1, side)
    for part, count in (("train", images), ("test", classes)):
        for i in range(count):
            folder = root / part / f"c{i % classes}"
            folder.mkdir(parents=True, exist_ok=True)
            a, b, c = rng.uniform(0, 255, 3)
            field = a * grid[:, None] + b * grid[None, :] + c
            pixels = np.stack([field, field[::-1], field.T], axis=-1) / 2
            pixels += rng.normal(0, 12, pixels.shape)
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(
                folder / f"{i}.jpg", quality=90
            )
    return root


def stream_epoch(root: Path, resolution: int, workers: int, batch: int) -> dict[str, float]:
    """One epoch over the training pool; seconds, images/s and peak RSS in MiB."""
    import torch

    from kdnas.data import StreamAugment, StreamingFolder, StreamingLoader, epoch_plan

    torch.set_num_threads(1)
    folder = StreamingFolder(root, resolution=resolution, valid_fraction=0.1, stats_images=64)
    subset = folder.subset(1)
    augment = StreamAugment(crop="resized", flip=True)
    loader = StreamingLoader(folder, subset, augment, batch, torch.device("cpu"), workers=workers)
    plan = epoch_plan(len(subset), batch, seed=0, epoch=0, padding=0, flip=True)
    start = time.perf_counter()
    seen = 0
    for images, _ in loader.train_batches(plan, epoch=0, seed=0):
        seen += len(images)
    seconds = time.perf_counter() - start
    del loader  # ends the workers, so that their peak counts under RUSAGE_CHILDREN
    import gc

    gc.collect()
    time.sleep(0.5)
    return {
        "images": seen,
        "seconds": seconds,
        "images_per_s": seen / seconds,
        "main_max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_max_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def _in_fresh_process(root: Path, args: argparse.Namespace, workers: int) -> dict[str, float]:
    command = [
        sys.executable, __file__, "--child", str(root), "--workers", str(workers),
        "--resolution", str(args.resolution), "--batch", str(args.batch),
    ]  # fmt: skip
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--side", type=int, default=256, help="JPEG side in pixels")
    parser.add_argument("--resolution", type=int, default=64, help="training side in pixels")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(stream_epoch(args.child, args.resolution, args.workers, args.batch)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as temp:
        for size in args.sizes:
            root = make_folder(Path(temp) / f"n{size}", size, args.side)
            modes = [args.workers, 0] if size == args.sizes[0] else [args.workers]
            for workers in modes:
                row = {"folder_images": size, "workers": workers}
                row.update(_in_fresh_process(root, args, workers))
                rows.append(row)
                print(
                    f"{size:>6} images, {workers} workers: {row['images_per_s']:7.1f} images/s, "
                    f"max RSS main {row['main_max_rss_mib']:.0f} MiB, "
                    f"largest worker {row['worker_max_rss_mib']:.0f} MiB"
                )
    base = next(r for r in rows if r["workers"] == 0)
    fast = next(r for r in rows if r["workers"] == args.workers)
    ratio = fast["images_per_s"] / base["images_per_s"]
    print(f"throughput ratio, {args.workers} workers vs 0: {ratio:.2f}x")
    big = [r for r in rows if r["workers"] == args.workers]
    growth = big[-1]["main_max_rss_mib"] / big[0]["main_max_rss_mib"]
    print(
        f"main-process max RSS, {big[-1]['folder_images']} vs {big[0]['folder_images']} "
        f"images: {growth:.2f}x"
    )
    if args.json is not None:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        summary = {"config": vars(args) | {"json": str(args.json), "child": None}, "git": sha}
        args.json.write_text(json.dumps(summary | {"rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
