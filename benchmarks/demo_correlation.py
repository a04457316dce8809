"""The demo's low-vs-high-fidelity rank correlation study, timed by wall clock and CPU time.

Runs ``kdnas demo`` (the library call behind it) with a chosen number of architectures in the
correlation study and prints one JSON line: Spearman/Kendall of low-fidelity validation
accuracy (KD and plain cross-entropy) against high-fidelity test accuracy, the teacher's
accuracy, and the seconds spent (wall and this process's user+system CPU time, the honest
figure when other jobs share the cores). Works with any kdnas version's ``run_demo``, so the
same command measures a checkout before and after a change:

    python benchmarks/demo_correlation.py --n-correlation 8 --out /tmp/demo-after
    PYTHONPATH=/tmp/old/src python benchmarks/demo_correlation.py --n-correlation 8 ...
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-correlation", type=int, default=5)
    parser.add_argument("--out", required=True, help="demo folder (resumes if it exists)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from kdnas.experiment import DemoSettings, run_demo

    settings = DemoSettings(n_correlation=args.n_correlation)
    wall = time.perf_counter()
    outcome = run_demo(settings, args.out)
    wall = time.perf_counter() - wall
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report = outcome.report
    print(
        json.dumps(
            {
                "n_correlation": args.n_correlation,
                "correlations": {
                    method: {k: round(v, 3) for k, v in values.items()}
                    for method, values in outcome.correlations.items()
                },
                "teacher": report.get("teacher"),
                "teacher_s": report.get("teacher_s"),
                "chosen_test_acc": report["chosen"]["test_acc"] if report["chosen"] else None,
                "original_test_acc": (
                    report["original"]["test_acc"] if report["original"] else None
                ),
                "wall_s": round(wall, 1),
                "cpu_user_s": round(usage.ru_utime, 1),
                "cpu_system_s": round(usage.ru_stime, 1),
                "load_average": [round(x, 2) for x in os.getloadavg()],
            }
        )
    )


if __name__ == "__main__":
    main()
