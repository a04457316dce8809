"""Summaries of many simulated runs: mean and standard error, and a two-sample test."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["CellStats", "two_sample_p_value"]


@dataclass(frozen=True)
class CellStats:
    """Mean and standard error of a per-run quantity over ``runs`` runs."""

    mean: float
    stderr: float
    runs: int

    @classmethod
    def of(cls, values: np.ndarray) -> CellStats:
        values = np.asarray(values, dtype=float)
        stderr = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
        return cls(float(values.mean()), stderr, len(values))


def two_sample_p_value(a: np.ndarray, b: np.ndarray) -> float:
    """Student's two-sample t-test p-value; when neither sample varies (few runs that all
    choose one architecture) the test is undefined, and the answer is exact instead: 1.0 for
    equal constants, 0.0 for different ones."""
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return 1.0 if a[0] == b[0] else 0.0
    with warnings.catch_warnings():
        # One constant sample is fine (its variance is exactly 0), but scipy's moment check
        # still warns about cancellation on it.
        warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        return float(stats.ttest_ind(a, b).pvalue)
