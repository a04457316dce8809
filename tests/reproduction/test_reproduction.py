"""Small helpers of ``kdnas.replay`` and ``kdnas.reproduction`` (the tables themselves are
checked against the paper in test_paper_faithfulness.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from kdnas.reproduction.statistics import two_sample_p_value


def test_table2_p_value_is_exact_when_samples_do_not_vary() -> None:
    same = np.full(10, 67.65)
    assert two_sample_p_value(same, same.copy()) == 1.0
    assert two_sample_p_value(same, np.full(10, 65.78)) == 0.0
    other = same.copy()
    other[4] = 65.78
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one constant sample must not warn
        p = two_sample_p_value(same, other)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = stats.ttest_ind(same, other).pvalue
    assert p == pytest.approx(expected) and 0.0 < p < 1.0
