"""Low-vs-high-fidelity rank correlation of KD with two teachers, on the same architectures.

Reads a finished ``kdnas demo`` folder (its correlation study: each architecture at low
fidelity with KD and with cross-entropy, and at high fidelity), then trains the same
architectures at the same low fidelity with KD from the teacher kdnas used before it followed
the paper: the original network trained on the low-fidelity subset only (``teacher_data=
"subset"``) for ``--subset-teacher-epochs`` (the old demo's 25). Cross-entropy and
high-fidelity results do not depend on the teacher (same seeds, same code), so the comparison
is on identical architectures and ground truth. Prints one JSON line: per teacher its
accuracy, Spearman/Kendall/Pearson of LF validation vs HF test accuracy, and this process's
CPU seconds.

    python benchmarks/teacher_correlation.py --demo kdnas-demo
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", required=True, help="a finished kdnas demo folder")
    parser.add_argument("--subset-teacher-epochs", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from kdnas.bench.correlation import correlations
    from kdnas.experiment import DemoSettings, build_objective, load_data
    from kdnas.experiment._report import lf_hf_pairs
    from kdnas.store import SQLiteStore

    demo = DemoSettings()
    search = demo.search_settings()
    low, high = search.low_fidelity, search.high_fidelity
    low_ce = dataclasses.replace(low, method="nokd")
    with SQLiteStore(f"{args.demo}/store.sqlite") as store:
        studied = store.results("correlation")
    archs, kd_new, hf = lf_hf_pairs(studied, low, high)
    _, ce, hf_ce = lf_hf_pairs(studied, low_ce, high)
    assert list(hf) == list(hf_ce), "the study's architectures differ between KD and CE"

    old = dataclasses.replace(search, teacher_data="subset", epochs=args.subset_teacher_epochs)
    data = load_data(old)
    objective = build_objective(old, data, None)
    clock = time.perf_counter()
    old_teacher = objective.teacher_summary(low.part)
    kd_old = [objective.evaluate(arch, low).valid_acc for arch in archs]
    wall = time.perf_counter() - clock

    report = json.loads(Path(args.demo, "report.json").read_text())
    new_teacher = report.get("teacher") or {}

    def row(teacher: dict, lf: list[float]) -> dict:
        stats = correlations(lf, hf)
        return {
            "teacher_images": teacher.get("images"),
            "teacher_epochs": teacher.get("epochs"),
            "teacher_valid_acc": round(teacher.get("valid_acc", float("nan")), 3),
            "teacher_test_acc": round(teacher.get("test_acc", float("nan")), 3),
            **{k: round(v, 3) for k, v in stats.items()},
            "mean_lf_valid_acc": round(sum(lf) / len(lf), 3),
        }

    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "n": len(archs),
                "kd_teacher_on_subset": row(old_teacher, kd_old),
                "kd_teacher_on_full_data": row(new_teacher, list(kd_new)),
                "nokd": {
                    **{k: round(v, 3) for k, v in correlations(ce, hf).items()},
                    "mean_lf_valid_acc": round(float(sum(ce) / len(ce)), 3),
                },
                "wall_s": round(wall, 1),
                "cpu_user_s": round(usage.ru_utime, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
