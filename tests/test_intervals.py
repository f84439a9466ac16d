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


# ---------------------------------------------------------------- families: Holm, adjusted intervals
from camtrap_ssl.core import power as P  # noqa: E402


def test_holm_hand_computed_and_edge_cases():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max
    rej, adj = I.holm([0.01, 0.04, 0.03, 0.005])
    assert adj == pytest.approx([0.03, 0.06, 0.06, 0.02]) and rej.tolist() == [True, False, False, True]
    # step-down stops at the first failure: p_(2) = 0.03 > 0.05/2 although p_(3) * 1 = 0.04 < 0.05
    rej, adj = I.holm([0.001, 0.03, 0.04])
    assert rej.tolist() == [True, False, False] and adj == pytest.approx([0.003, 0.06, 0.06])
    rej, adj = I.holm([0.5, 0.9])  # capped at 1, monotone
    assert adj == pytest.approx([1.0, 1.0]) and not rej.any()
    rej, adj = I.holm([0.01, np.nan])  # an untested comparison still counts in m
    assert adj[0] == pytest.approx(0.02) and np.isnan(adj[1]) and rej.tolist() == [True, False]
    rej2, adj2 = I.holm(np.array([[0.01, 0.04, 0.03, 0.005], [0.5, 0.9, 0.001, 0.2]]))  # rows = families
    assert adj2[0] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and adj2[1] == pytest.approx([1.0, 1.0, 0.004, 0.6])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        I.holm([1.2])


def test_holm_agrees_with_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    rng = np.random.default_rng(3)
    for m in (1, 2, 7, 20):
        p = np.concatenate([rng.uniform(0, 0.02, m // 2), rng.uniform(0, 1, m - m // 2)])
        ours = I.holm(p, 0.05)
        ref = multitest.multipletests(p, alpha=0.05, method="holm")
        assert ours[0].tolist() == ref[0].tolist() and ours[1] == pytest.approx(ref[1])


def test_paired_t_pvalue_matches_scipy():
    a, b = [71.0, 74.0, 70.5, 73.0], [70.0, 72.5, 70.0, 71.0]
    assert I.paired_t_pvalue(a, b) == pytest.approx(stats.ttest_rel(a, b).pvalue)
    d = np.random.default_rng(0).normal(0.3, 1, (6, 5))
    assert I.paired_t_pvalue(d) == pytest.approx(stats.ttest_1samp(d, 0, axis=-1).pvalue)
    assert I.paired_t_pvalue([2.0, 2.0, 2.0]) == 0.0 and I.paired_t_pvalue([0.0, 0.0]) == 1.0
    assert np.isnan(I.paired_t_pvalue([1.0]))


def _families(rng, n_fam, m, k, delta, sd, n):
    """Paired differences (n_fam, m, n): the first k comparisons have true mean delta, the rest 0."""
    true = np.zeros(m)
    true[:k] = delta
    return true, true[:, None] + rng.normal(0, sd, (n_fam, m, n))


def test_holm_controls_the_familywise_error_and_finds_effects_at_the_predicted_power():
    m, n, sd, alpha, n_fam = 20, 5, 2.0, 0.05, 2000
    mc = 3 * np.sqrt(alpha * (1 - alpha) / n_fam)  # three Monte-Carlo standard errors: 0.0146
    rng = np.random.default_rng(20)
    _, d = _families(rng, n_fam, m, 0, 0.0, sd, n)  # no true effect
    p = I.paired_t_pvalue(d)
    rej, _ = I.holm(p, alpha)
    assert rej.any(1).mean() <= alpha + mc
    assert (p <= alpha).any(1).mean() > 0.5  # uncorrected, 20 tests err in ~64 % of families
    # five true effects at the smallest difference a Bonferroni family of 20 detects with power 0.8
    k = 5
    delta = P.min_detectable_difference(sd, n, alpha, 0.8, m_comparisons=m)
    true, d = _families(rng, n_fam, m, k, delta, sd, n)
    p = I.paired_t_pvalue(d)
    mean = d.mean(-1)
    rej, _ = I.holm(p, alpha)
    bonf = p <= alpha / m
    found = rej[:, :k] & (mean[:, :k] > 0)
    assert bonf[:, :k].mean() == pytest.approx(0.8, abs=3 * np.sqrt(0.16 / (n_fam * k)))
    assert (rej >= bonf).all()  # Holm rejects everything Bonferroni does
    # and no more than the most lenient threshold a true effect can meet, alpha / (m - k + 1)
    assert bonf[:, :k].mean() <= found.mean() <= P.power_paired_t(delta, sd, n, alpha, m - k + 1) + 0.02
    false_claim = rej[:, k:].any(1) | (rej[:, :k] & (mean[:, :k] < 0)).any(1)
    assert false_claim.mean() <= alpha + mc


def test_adjusted_intervals_cover_simultaneously_and_agree_with_the_verdicts():
    m, n, alpha, n_fam = 10, 4, 0.05, 300
    rng = np.random.default_rng(5)
    true = np.linspace(-3, 3, m)
    all_cover, seen_holm_only = [], 0
    for _ in range(n_fam):
        d = true[:, None] + rng.normal(0, 2, (m, n))
        res = I.adjusted_t_intervals({f"c{i}": d[i] for i in range(m)}, alpha)
        all_cover.append(all(r.low <= t <= r.high for r, t in zip(res, true)))
        for r in res:
            assert r.level == pytest.approx(1 - alpha / m)
            if r.low > 0:
                assert r.verdict == "SSL better"
            elif r.high < 0:
                assert r.verdict == "SL better"
            elif r.verdict != "cannot tell":
                seen_holm_only += 1  # Holm's extra power: a winner whose interval touches 0
        for r in I.adjusted_t_intervals(list(d), alpha, method="bonferroni"):
            assert (r.verdict != "cannot tell") == (r.low > 0 or r.high < 0)
    assert np.mean(all_cover) >= 1 - alpha - 3 * np.sqrt(alpha * (1 - alpha) / n_fam)
    assert seen_holm_only > 0


def test_adjusted_intervals_on_a_small_family():
    res = I.adjusted_t_intervals({"a": [2.0, 2.5, 3.0, 2.2], "b": [0.1, -0.2, 0.3, 0.0],
                                  "c": [-1.0, -1.2, -0.9, -1.1], "d": [5.0, 6.0]}, labels=("SSL", "SL"))
    by = {r.name: r for r in res}
    assert [r.name for r in res] == ["a", "b", "c", "d"]
    assert by["a"].verdict == "SSL better" and by["c"].verdict == "SL better"
    assert by["b"].verdict == "cannot tell"
    assert by["d"].verdict == "cannot tell" and by["d"].n == 2  # fewer than MIN_SEEDS_FOR_VERDICT
    p = [I.paired_t_pvalue(v) for v in ([2.0, 2.5, 3.0, 2.2], [0.1, -0.2, 0.3, 0.0],
                                        [-1.0, -1.2, -0.9, -1.1], [5.0, 6.0])]
    assert [r.p_adjusted for r in res] == pytest.approx(I.holm(p)[1])
    iv = I.t_interval([2.0, 2.5, 3.0, 2.2], 1 - 0.05 / 4)
    assert (by["a"].low, by["a"].high) == pytest.approx((iv.low, iv.high))
    with pytest.raises(ValueError, match="method"):
        I.adjusted_t_intervals([[1, 2, 3]], method="sidak")


# ---------------------------------------------------------------- claims about methods

def _nested(rng, n_pre, n_ft, sd_pre, sd_ft, mu=0.0):
    y = mu + rng.normal(0, sd_pre, (n_pre, 1)) + rng.normal(0, sd_ft, (n_pre, n_ft))
    return {"pretrain_seed": np.repeat(np.arange(n_pre), n_ft),
            "finetune_seed": np.tile(np.arange(n_ft), n_pre), "diff": y.ravel()}


def test_hierarchical_bootstrap_covers_the_method_mean_where_a_run_level_interval_does_not():
    # 10 pretraining seeds x 4 fine-tuning seeds, sd 2 between pretraining runs and 1 within.
    # Percentile bootstrap over 10 top-level units under-covers (theory: about 0.90, from the
    # (a-1)/a shrinkage and z in place of t_9); 400 simulations give a Monte-Carlo sd of 0.015.
    rng = np.random.default_rng(11)
    n_sim = 400
    hier, flat = [], []
    for s in range(n_sim):
        tab = _nested(rng, 10, 4, 2.0, 1.0, mu=1.5)
        iv = I.hierarchical_bootstrap(tab, seed=s, n_boot=1000)
        hier.append(iv.low <= 1.5 <= iv.high)
        t = I.t_interval(tab["diff"])  # treats the 40 runs as independent: pseudo-replication
        flat.append(t.low <= 1.5 <= t.high)
    assert 0.85 <= np.mean(hier) <= 0.99
    assert np.mean(flat) < 0.8


def test_hierarchical_bootstrap_details():
    rng = np.random.default_rng(2)
    tab = _nested(rng, 6, 3, 1.0, 1.0)
    a = I.hierarchical_bootstrap(tab, seed=1, n_boot=2000)
    assert a == I.hierarchical_bootstrap(tab, seed=1, n_boot=2000) and a.n == 6
    assert a.mean == pytest.approx(np.mean(tab["diff"]))
    b = I.hierarchical_bootstrap(tab, seed=1, n_boot=2000, inner=False)
    # top level only: the spread of 6 resampled pretraining means, about sd(means)/sqrt(6)
    means = tab["diff"].reshape(6, 3).mean(1)
    assert (b.high - b.low) / 3.92 == pytest.approx(means.std() / np.sqrt(6), rel=0.15)
    # unbalanced: each pretraining seed weighs equally in the estimate
    un = {"pretrain_seed": [0, 0, 0, 1], "finetune_seed": [0, 1, 2, 0], "diff": [1.0, 1.0, 1.0, 3.0]}
    assert I.hierarchical_bootstrap(un, seed=0, n_boot=100).mean == pytest.approx(2.0)
    one = I.hierarchical_bootstrap({"pretrain_seed": [0, 0], "finetune_seed": [0, 1],
                                    "diff": [1.0, 2.0]}, seed=0)
    assert np.isnan(one.low) and one.n == 1
    with pytest.raises(ValueError, match="appears twice"):
        I.hierarchical_bootstrap({"pretrain_seed": [0, 0], "finetune_seed": [1, 1], "diff": [1, 2]}, 0)
