"""The distillation losses' own cost per step, as a fraction of one cross-entropy student step.

``kd_overhead.py`` times whole student epochs, whose run-to-run noise on a shared CPU is often
larger than a loss's cost. This benchmark isolates the loss: with the teacher summary cached,
what a method adds to a step is its forward and backward pass (extra modules included) from
the student's taps. Rows: CPU seconds of that pass and its ratio to one cross-entropy training
step (student forward + backward) measured in the same run, for both spaces, medians over
``--repeats``. Ratio + 1 is the expected slowdown with the cache (optimizer step excluded).

Run: ``python benchmarks/distill_loss_cost.py`` (full-width networks, 32x32, batch 128; a
sampled student, the original network as teacher, a 1/27 CIFAR-100-sized training subset for
CRD). Writes ``benchmarks/results/distill_loss_cost.json`` with the args and git SHA.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from kdnas.core import Taps
from kdnas.distill import build_loss
from kdnas.paper import paper_figures
from kdnas.spaces import get_space

FEATURE_METHODS = ("hint", "attention", "similarity", "correlation", "vid", "pkt", "nst", "crd")


def cpu_seconds(work) -> float:
    start = time.process_time()
    work()
    return time.process_time() - start


def measure_space(space_name: str, args: argparse.Namespace) -> list[dict[str, object]]:
    space = get_space(space_name)
    torch.manual_seed(0)
    teacher = space.build_network(space.original(), 100, 3, args.width).eval()
    student = space.build_network(space.sample(np.random.default_rng(1)), 100, 3, args.width)
    x = torch.randn(args.batch_size, 3, args.resolution, args.resolution)
    labels = torch.randint(0, 100, (args.batch_size,))
    with torch.no_grad():
        teacher_taps = teacher.forward_taps(x)
        student_taps = student.forward_taps(x)

    def ce_step() -> None:
        taps = student.forward_taps(x)
        torch.nn.functional.cross_entropy(taps.logits, labels).backward()

    cpu_seconds(ce_step)
    reference = statistics.median(cpu_seconds(ce_step) for _ in range(args.repeats))
    subset_labels = torch.arange(args.n_train) % 100
    indices = torch.randperm(args.n_train)[: args.batch_size]
    paper = paper_figures()["appendix_d_training_slowdown_vs_cross_entropy"]
    rows: list[dict[str, object]] = []
    print(f"{space_name}: one cross-entropy step (forward + backward) {reference:.3f} CPU s")
    for method in args.methods:
        loss = build_loss(
            method,
            student_probe=student_taps,
            teacher_probe=teacher_taps,
            num_classes=100,
            n_train=args.n_train,
            space=space_name,
            labels=subset_labels,
        )
        summary = loss.teacher_summary(teacher_taps)

        def loss_pass(loss=loss, summary=summary) -> None:
            def leaf(t: torch.Tensor) -> torch.Tensor:
                return t.detach().clone().requires_grad_(True)

            taps = Taps(
                [leaf(m) for m in student_taps.feature_maps],
                student_taps.preactivations,
                leaf(student_taps.embedding),
                leaf(student_taps.logits),
            )
            loss(taps, summary, labels, indices)["total"].backward()

        cpu_seconds(loss_pass)
        seconds = statistics.median(cpu_seconds(loss_pass) for _ in range(args.repeats))
        ratio = seconds / reference
        print(
            f"  {method:12s} {seconds:8.4f} s  +{100 * ratio:5.1f} % of a CE step"
            f"   (paper, live teacher: +{100 * paper[method]:.0f} %)"
        )
        rows.append(
            {
                "space": space_name,
                "method": method,
                "loss_cpu_s": seconds,
                "ce_step_cpu_s": reference,
                "fraction_of_ce_step": ratio,
                "paper_live_slowdown": paper[method],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spaces", nargs="+", default=["mobilenetv2", "shufflenetv2"])
    parser.add_argument("--methods", nargs="+", default=list(FEATURE_METHODS))
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--n-train", type=int, default=1667, help="CRD's memory-bank size")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default="benchmarks/results/distill_loss_cost.json")
    args = parser.parse_args()
    unknown = sorted(set(args.methods) - set(FEATURE_METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; valid: {', '.join(FEATURE_METHODS)}")
    torch.set_num_threads(args.threads)
    rows = [row for space in args.spaces for row in measure_space(space, args)]
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps({"rows": rows, "args": vars(args), "git_sha": sha}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
