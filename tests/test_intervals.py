"""Intervals over seeds: coverage on a known distribution, agreement with scipy, paired verdicts."""
import numpy as np
import pytest
from scipy import stats

from camtrap_ssl.core import intervals as I


def test_t_interval_matches_scipy_and_covers_the_true_mean():
    v = [70.0, 74.0, 71.0]
    iv = I.t_interval(v)
    lo, hi = stats.t.interval(0.95, 2, loc=np.mean(v), scale=stats.sem(v))
    assert (iv.low, iv.high) == pytest.approx((lo, hi)) and iv.mean == pytest.approx(71.6667, abs=1e-3)
    # three "seeds" from N(50, 4^2), 4000 times: the 95 % t-interval holds 50 about 95 % of the time
    rng = np.random.default_rng(0)
    hits = []
    for _ in range(4000):
        s = I.t_interval(rng.normal(50, 4, 3))
        hits.append(s.low <= 50 <= s.high)
    assert np.mean(hits) == pytest.approx(0.95, abs=0.012)


def test_one_value_has_no_interval():
    iv = I.t_interval([3.0])
    assert iv.mean == 3.0 and np.isnan(iv.low) and np.isnan(iv.high) and not iv.excludes_zero
    with pytest.raises(ValueError, match="at least one"):
        I.t_interval([])


def test_bootstrap_interval_on_many_values_is_the_normal_one_and_seeded():
    rng = np.random.default_rng(1)
    v = rng.normal(0, 1, 400)
    b = I.bootstrap_interval(v, seed=7)
    half = 1.96 * v.std(ddof=1) / np.sqrt(len(v))
    assert (b.high - b.low) / 2 == pytest.approx(half, rel=0.1)
    assert b.low < v.mean() < b.high and b.method == "bootstrap"
    assert I.bootstrap_interval(v, seed=7) == b  # same seed, same interval
    assert I.bootstrap_interval(v, seed=8) != b


def test_paired_difference_and_verdict():
    sl = [40.0, 50.0, 45.0, 55.0]  # large seed-to-seed spread, shared by both
    ssl = [42.0, 51.5, 47.0, 56.5]  # always 1.5-2 points higher
    d = I.paired_difference(ssl, sl)
    assert d.mean == pytest.approx(1.75) and d.excludes_zero
    assert I.verdict(d, "SSL", "SL") == "SSL wins"
    # unpaired, the same numbers would not separate
    assert not (I.t_interval(ssl).low > I.t_interval(sl).high)
    assert I.verdict(I.paired_difference(sl, ssl), "SSL", "SL") == "SL wins"
    assert I.verdict(I.paired_difference([1, 2, 3], [2, 1, 3]), "SSL", "SL") == "no clear difference"
    assert I.verdict(I.paired_difference([1], [0]), "SSL", "SL").startswith("undecided")
    # two seeds with equal differences: a zero-width interval, but no verdict from two seeds
    assert I.paired_difference([3, 4], [1, 2]).excludes_zero
    assert I.verdict(I.paired_difference([3, 4], [1, 2]), "SSL", "SL").startswith("undecided")
    with pytest.raises(ValueError, match="equal lengths"):
        I.paired_difference([1, 2], [1])
