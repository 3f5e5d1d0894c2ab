"""The paired bootstrap: the interval holds the point estimate, and the draws are a function of
the seed."""

import numpy as np

from beam_jobs.teacher_report import bootstrap


def test_bootstrap_interval_contains_point_and_is_deterministic():
    rng = np.random.default_rng(0)
    num = rng.integers(0, 5, size=300).astype(float)
    den = num + rng.integers(1, 5, size=300)
    draws = bootstrap.bootstrap_ratios(num[None], den[None], 500, seed=7)
    point = num.sum() / den.sum()
    ci = bootstrap.interval(point, draws[:, 0])
    assert ci["low"] < point < ci["high"]
    assert ci["high"] - ci["low"] < 0.2
    again = bootstrap.bootstrap_ratios(num[None], den[None], 500, seed=7)
    np.testing.assert_array_equal(draws, again)
    other = bootstrap.bootstrap_ratios(num[None], den[None], 500, seed=8)
    assert not np.array_equal(draws, other)
