"""The GP against closed forms, finite differences and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF

from kdnas.search.gp import GPConfig, fit_gp, log_marginal_likelihood


def test_posterior_matches_closed_form_two_points() -> None:
    # Two inputs at distance 1 with length scale 1: k = exp(-1/2). At the query x = 0.5 the
    # cross-covariances are both c = exp(-1/8); with K = [[1, k], [k, 1]] the posterior mean
    # is c (y1 + y2) / (1 + k) and the variance 1 - 2 c^2 / (1 + k).
    x = np.array([[0.0], [1.0]])
    y = np.array([1.0, 3.0])
    config = GPConfig(normalize="none", optimize=False, jitter=0.0)
    model = fit_gp(x, y, config)
    mean, std = model.predict(np.array([[0.5]]), return_std=True)
    k, c = math.exp(-0.5), math.exp(-0.125)
    assert mean[0] == pytest.approx(c * 4.0 / (1 + k), rel=1e-12)
    assert std[0] ** 2 == pytest.approx(1 - 2 * c * c / (1 + k), rel=1e-10)
    # At a training input the posterior interpolates (noise-free) with zero variance.
    mean, std = model.predict(x, return_std=True)
    np.testing.assert_allclose(mean, y, atol=1e-9)
    np.testing.assert_allclose(std, 0.0, atol=1e-6)


@pytest.mark.parametrize("mode", ["center", "standardize"])
def test_normalisation_modes_shift_and_scale(mode: str) -> None:
    x = np.array([[0.0], [5.0]])  # nearly independent points
    y = np.array([2.0, 4.0])
    model = fit_gp(x, y, GPConfig(normalize=mode, optimize=False))
    far_mean, far_std = model.predict(np.array([[100.0]]), return_std=True)
    assert far_mean[0] == pytest.approx(3.0)  # the prior mean is the data mean
    assert far_std[0] == pytest.approx(1.0)  # unit amplitude, and std(y) = 1 here
    wide = fit_gp(x, 10 * y, GPConfig(normalize=mode, optimize=False))
    wide_std = wide.predict(np.array([[100.0]]), return_std=True)[1][0]
    # "center" keeps the unit prior amplitude; "standardize" scales it with the data.
    assert wide_std == pytest.approx(1.0 if mode == "center" else 10.0)


def test_lml_derivative_matches_finite_difference() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3))
    y = rng.normal(size=8)
    sq = ((x[:, None] - x[None]) ** 2).sum(-1)
    for theta in (-0.5, 0.3, 1.2):
        derivative = log_marginal_likelihood(theta, sq, y, 1e-6)[1]
        h = 1e-6
        up = log_marginal_likelihood(theta + h, sq, y, 1e-6)[0]
        down = log_marginal_likelihood(theta - h, sq, y, 1e-6)[0]
        assert derivative == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_scikit_learn_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(25, 4))
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1] + 0.5
    query = rng.normal(size=(40, 4))
    ours = fit_gp(x, y, GPConfig.paper_algorithm1())
    theirs = GaussianProcessRegressor(RBF(1.0)).fit(x, y)
    assert ours.length_scale == pytest.approx(theirs.kernel_.length_scale, rel=1e-3)
    ours_mean, ours_std = ours.predict(query, return_std=True)
    their_mean, their_std = theirs.predict(query, return_std=True)
    np.testing.assert_allclose(ours_mean, their_mean, atol=1e-5)
    np.testing.assert_allclose(ours_std, their_std, atol=1e-5)
    # Today's normalize_y=True is the "standardize" mode.
    ours = fit_gp(x, y, GPConfig(normalize="standardize"))
    theirs = GaussianProcessRegressor(RBF(1.0), normalize_y=True).fit(x, y)
    np.testing.assert_allclose(ours.predict(query)[0], theirs.predict(query), atol=1e-5)


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="finite"):
        fit_gp(np.zeros((2, 1)), np.array([1.0, np.nan]), GPConfig())
    with pytest.raises(ValueError, match="normalize"):
        GPConfig(normalize="minmax")
    with pytest.raises(ValueError, match="rng"):
        fit_gp(np.eye(2), np.ones(2), GPConfig(n_restarts=2))


def test_every_gp_answers_one_posterior_contract() -> None:
    # FittedGP, the noisy GP and the batched engine's GP: predict(x) -> (mean, None), and
    # predict(x, return_std=True) -> (mean, std) with the same mean; the acquisition is
    # computed once for all of them.
    import torch

    from kdnas.replay.engine import batched_fit
    from kdnas.search.gp import upper_confidence_bound
    from kdnas.search.noisy_gp import fit_noisy_gp

    rng = np.random.default_rng(0)
    x, query = rng.normal(size=(8, 2)), rng.normal(size=(5, 2))
    y = 0.6 + 0.05 * np.sin(x[:, 0])
    models = [
        fit_gp(x, y, GPConfig(normalize="center")),
        fit_noisy_gp(x, y, np.full(8, 1e-6)),
    ]
    for model in models:
        mean, none = model.predict(query)
        same, std = model.predict(query, return_std=True)
        assert none is None and mean.shape == std.shape == (5,)
        np.testing.assert_array_equal(mean, same)
        np.testing.assert_array_equal(upper_confidence_bound(mean, std, 0.5), mean + 0.5 * std)
    batched = batched_fit(torch.tensor(x[None]), torch.tensor(y[None]), GPConfig("center"))
    mean, none = batched.predict(torch.tensor(query))
    same, std = batched.predict(torch.tensor(query), return_std=True)
    assert none is None and mean.shape == std.shape == (1, 5)
    assert torch.equal(mean, same)
