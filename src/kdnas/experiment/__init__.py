"""End-to-end experiments: real searches with training, the demo, and benchmark building.

- ``run_search(settings, store_path)``: a real search (by default proxy-prior GP-UCB at full
  data; the paper's Algorithms 1 and 2 with distillation, GP-UCB, random, any registered
  optimizer) with every evaluation stored and resumable, and a report folder.
- ``run_demo(DemoSettings(), out_dir)``: the README's demo on the embedded digits.
- ``GridSearch``: a fixed list of evaluations as an optimizer (``kdnas bench build``).
"""

from __future__ import annotations

from kdnas.experiment._demo import DemoOutcome, DemoProgress, DemoSettings, run_demo
from kdnas.experiment._grid import GridSearch, ReuseStored
from kdnas.experiment._report import plot_lf_vs_hf, plot_trajectory, trajectory, write_json
from kdnas.experiment._search import (
    SearchOutcome,
    best_evaluation,
    run_search,
    search_cost,
    teacher_cache_dir_for,
    teacher_dir_for,
    time_to_best,
)
from kdnas.experiment._settings import (
    PreparedSearch,
    SearchSettings,
    StoredOptimizer,
    build_candidates,
    build_objective,
    build_optimizer,
    load_data,
    prepare_search,
    run_config,
    sample_architectures,
    stored_algorithm,
    stored_optimizer,
)

__all__ = [
    "DemoOutcome",
    "DemoProgress",
    "DemoSettings",
    "GridSearch",
    "PreparedSearch",
    "ReuseStored",
    "SearchOutcome",
    "SearchSettings",
    "StoredOptimizer",
    "best_evaluation",
    "build_candidates",
    "build_objective",
    "build_optimizer",
    "load_data",
    "plot_lf_vs_hf",
    "plot_trajectory",
    "prepare_search",
    "run_config",
    "run_demo",
    "run_search",
    "sample_architectures",
    "search_cost",
    "stored_algorithm",
    "stored_optimizer",
    "teacher_cache_dir_for",
    "teacher_dir_for",
    "time_to_best",
    "trajectory",
    "write_json",
]
