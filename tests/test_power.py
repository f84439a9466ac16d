"""Power by design: each prediction of core.power checked against a simulation of what it predicts.

Tolerances are three Monte-Carlo standard errors of the simulated quantity (stated beside each),
so a correct formula fails about once in 400 runs of a check and the fixed seeds make that never.
"""
import numpy as np
import pytest
from scipy import stats

from camtrap_ssl.core import intervals as I
from camtrap_ssl.core import power as P


def _rejection_rate(rng, delta, sd, n, alpha, m, n_sim=20_000):
    p = I.paired_t_pvalue(rng.normal(delta, sd, (n_sim, n)))
    return np.mean(p <= alpha / m)


@pytest.mark.parametrize("n,m", [(3, 1), (5, 1), (5, 20), (10, 6)])
def test_min_detectable_difference_is_detected_at_the_stated_power(n, m):
    rng = np.random.default_rng(100 + n * m)
    sd, alpha = 2.0, 0.05
    delta = P.min_detectable_difference(sd, n, alpha, 0.8, m)
    assert P.power_paired_t(delta, sd, n, alpha, m) == pytest.approx(0.8, abs=1e-6)
    mc = 3 * np.sqrt(0.8 * 0.2 / 20_000)  # 0.0085
    assert _rejection_rate(rng, delta, sd, n, alpha, m) == pytest.approx(0.8, abs=mc)
    # no effect: the test's size is alpha / m
    assert P.power_paired_t(0.0, sd, n, alpha, m) == pytest.approx(alpha / m)


def test_min_detectable_difference_against_the_normal_approximation():
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    # few seeds: the t distribution's tails make the detectable difference far larger than z says
    assert P.min_detectable_difference(1.0, 3) > 1.8 * z / np.sqrt(3)  # 3.26 against 1.62
    # many: they agree
    assert P.min_detectable_difference(1.0, 5000) == pytest.approx(z / np.sqrt(5000), rel=0.002)
    # more comparisons, more seeds or more power move it the way they must
    base = P.min_detectable_difference(1.0, 5)
    assert P.min_detectable_difference(1.0, 5, m_comparisons=10) > base
    assert P.min_detectable_difference(1.0, 10) < base < P.min_detectable_difference(1.0, 5, power=0.9)
    with pytest.raises(ValueError, match="n must"):
        P.min_detectable_difference(1.0, 1)


@pytest.mark.parametrize("n,m", [(3, 1), (4, 10), (8, 1)])
def test_half_width_is_the_mean_half_width_of_simulated_intervals(n, m):
    rng = np.random.default_rng(7 * n + m)
    sd, alpha, n_sim = 1.5, 0.05, 20_000
    s = rng.normal(0, sd, (n_sim, n)).std(1, ddof=1)
    hw = stats.t.ppf(1 - alpha / (2 * m), n - 1) * s / np.sqrt(n)
    predicted = P.half_width(sd, n, alpha, m)
    assert hw.mean() == pytest.approx(predicted, abs=3 * hw.std() / np.sqrt(n_sim))


def test_seeds_needed_is_the_first_n_that_reaches_the_target():
    for sd, target, m in [(2.0, 1.0, 1), (2.0, 0.5, 1), (1.0, 0.3, 20), (1.0, 100.0, 1)]:
        n = P.seeds_needed(sd, target, m_comparisons=m)
        assert P.half_width(sd, n, 0.05, m) <= target
        assert n == 2 or P.half_width(sd, n - 1, 0.05, m) > target
    assert P.seeds_needed(2.0, 1.0) == 18  # t_17 * c4(18) * 2 / sqrt(18) = 0.980; at 17 seeds 1.012


def test_paired_accuracy_sd_against_simulated_validation_sets():
    rng = np.random.default_rng(9)
    # per image: both right 0.70, only A 0.10, only B 0.05, both wrong 0.15
    p11, p10, p01, p00 = 0.70, 0.10, 0.05, 0.15
    p_a, p_b, q, n_val, n_sim = p11 + p10, p11 + p01, p10 + p01, 400, 20_000
    counts = rng.multinomial(n_val, [p11, p10, p01, p00], size=n_sim)
    diff = (counts[:, 1] - counts[:, 2]) / n_val
    predicted = P.paired_accuracy_sd(p_a, p_b, q, n_val)
    assert predicted == pytest.approx(np.sqrt((0.15 - 0.05 ** 2) / 400))
    # sd of a sample sd: about sd / sqrt(2 n_sim), three of them: 1.5 %
    assert diff.std() == pytest.approx(predicted, rel=3 / np.sqrt(2 * n_sim))
    unpaired = np.sqrt(P.binomial_var(p_a, n_val) + P.binomial_var(p_b, n_val))
    assert predicted < 0.7 * unpaired  # the shared images are what pairing buys
    assert P.paired_accuracy_sd(0.8, 0.8, 0.0, 100) == 0.0  # same answers on every image
    assert P.binomial_var(0.5, 100) == pytest.approx(0.0025)
    with pytest.raises(ValueError, match="discordance"):
        P.paired_accuracy_sd(0.9, 0.7, 0.1, 100)  # cannot differ by 0.2 on 10 % of images


def _table(y):
    n_pre, n_ft = y.shape
    return {"pretrain_seed": np.repeat(np.arange(n_pre), n_ft),
            "finetune_seed": np.tile(np.arange(n_ft), n_pre), "diff": y.ravel()}


def test_variance_components_recover_the_components_of_a_known_model():
    rng = np.random.default_rng(4)
    # sigma_pre = 2, sigma_ft = 1, validation noise sd 0.5 per run, 2000 pretraining seeds x 5
    n_pre, n_ft, v_val = 2000, 5, 0.25
    y = 3 + rng.normal(0, 2, (n_pre, 1)) + rng.normal(0, 1, (n_pre, n_ft)) + rng.normal(0, 0.5, (n_pre, n_ft))
    vc = P.variance_components(_table(y), validation_var=v_val)
    # sd of the estimates: pretrain var 2 (1.25 + 5 * 4)^2 / (1999 * 25) -> 0.13; within
    # var 1.25 * sqrt(2 / 8000) -> 0.02; tolerances three of each
    assert vc.pretrain_var == pytest.approx(4.0, abs=0.4)
    assert vc.within_var == pytest.approx(1.25, abs=0.06)
    assert vc.finetune_var == pytest.approx(1.0, abs=0.06) and vc.validation_var == v_val
    assert vc.mean == pytest.approx(3.0, abs=3 * np.sqrt(4 / n_pre + 1.25 / (n_pre * n_ft)))
    assert (vc.n_pretrain, vc.n_runs, vc.n0) == (n_pre, n_pre * n_ft, pytest.approx(5.0))


def test_variance_components_are_unbiased_on_small_unbalanced_designs():
    rng = np.random.default_rng(8)
    sizes = np.array([2, 3, 5, 2, 4, 3])
    pre_hat, within_hat = [], []
    for _ in range(2000):
        a = rng.normal(0, 1.5, sizes.size)
        y = np.concatenate([a[i] + rng.normal(0, 1.0, k) for i, k in enumerate(sizes)])
        tab = {"pretrain_seed": np.repeat(np.arange(sizes.size), sizes),
               "finetune_seed": np.concatenate([np.arange(k) for k in sizes]), "diff": y}
        # the raw (untruncated) moment estimate is unbiased: rebuild it from within and n0
        vc = P.variance_components(tab)
        groups = I.runs_by_pretraining(tab)
        means = np.array([g.mean() for g in groups])
        msb = (sizes * (means - y.mean()) ** 2).sum() / (sizes.size - 1)
        pre_hat.append((msb - vc.within_var) / vc.n0)
        within_hat.append(vc.within_var)
        assert vc.pretrain_var == pytest.approx(max(pre_hat[-1], 0.0))
    pre_hat, within_hat = np.array(pre_hat), np.array(within_hat)
    assert pre_hat.mean() == pytest.approx(2.25, abs=3 * pre_hat.std() / np.sqrt(2000))
    assert within_hat.mean() == pytest.approx(1.0, abs=3 * within_hat.std() / np.sqrt(2000))
    with pytest.raises(ValueError, match="2 pretraining seeds"):
        P.variance_components(_table(np.ones((1, 3))))


def _simulate_design(rng, comp, n_val, f, p, delta, n_sim):
    """Mean differences per pretraining seed (n_sim, p) under the model of core.power."""
    v = comp.per_image_sd ** 2 / n_val
    s = comp.shared_validation
    y = (delta + rng.normal(0, comp.pretrain_sd, (n_sim, p, 1))
         + rng.normal(0, comp.finetune_sd, (n_sim, p, f))
         + rng.normal(0, np.sqrt((1 - s) * v), (n_sim, p, f))
         + rng.normal(0, np.sqrt(s * v), (n_sim, 1, 1)))
    return y.mean(-1)


@pytest.mark.parametrize("shared", [0.0, 1.0])
def test_design_sd_of_mean_matches_simulation(shared):
    rng = np.random.default_rng(int(shared * 10) + 1)
    comp = P.DesignComponents(pretrain_sd=1.0, finetune_sd=0.8, per_image_sd=0.4, shared_validation=shared)
    n_sim = 20_000
    means = _simulate_design(rng, comp, 50, 3, 4, 0.0, n_sim).mean(-1)
    predicted = np.sqrt(comp.var_of_mean(50, 3, 4))
    assert means.std() == pytest.approx(predicted, rel=3 / np.sqrt(2 * n_sim))


def test_a_designs_min_detectable_difference_is_detected_at_the_stated_power():
    comp = P.DesignComponents(pretrain_sd=1.0, finetune_sd=1.5, per_image_sd=0.45, shared_validation=0.0)
    costs = {"pretrain_s": 100.0, "finetune_s": 10.0}
    (d,) = P.design_table(comp, costs, m_comparisons=4, n_val_options=(200,), finetune_options=(3,),
                          pretrain_options=(6,))
    assert d.df == 5 and d.cost == 2 * 6 * 100 + 2 * 18 * 10
    rng = np.random.default_rng(12)
    means = _simulate_design(rng, comp, 200, 3, 6, d.min_detectable, 20_000)
    rate = np.mean(I.paired_t_pvalue(means) <= 0.05 / 4)
    assert rate == pytest.approx(0.8, abs=3 * np.sqrt(0.16 / 20_000))


def test_design_table_lists_costs_and_resolutions():
    comp = {"pretrain_sd": 1.0, "finetune_sd": 1.0, "per_image_sd": 0.4}
    costs = P.DesignCosts(pretrain_s=1000.0, finetune_s=60.0, eval_s_per_image=0.01, label_s_per_image=30.0)
    assert costs.cost(100, 2, 3) == 2 * 3 * 1000 + 2 * 6 * (60 + 100 * 0.01) + 100 * 30
    rows = P.design_table(comp, costs)
    assert len(rows) == 5 * 5 * 5
    assert all(np.isinf(r.half_width) for r in rows if r.n_pretrain_seeds == 1)  # no claim about methods
    finite = [r for r in rows if np.isfinite(r.half_width)]
    assert [r.half_width for r in finite] == sorted(r.half_width for r in finite)
    assert all(r.min_detectable > r.half_width for r in finite)  # power 0.8 asks for more than the interval
    budget = 20_000.0
    within = P.design_table(comp, costs, budget=budget)
    assert within and all(r.cost <= budget for r in within) and len(within) < len(rows)
    # more validation images shrink the shared validation part, which no number of seeds does
    hw = {r.n_val: r.half_width for r in rows if (r.n_finetune_seeds, r.n_pretrain_seeds) == (3, 5)}
    assert hw[250] > hw[1000] > hw[5000]
    # a claim about one checkpoint pair (no pretraining variance): units are all runs
    (one,) = P.design_table({**comp, "pretrain_sd": 0.0}, costs, n_val_options=(1000,),
                            finetune_options=(5,), pretrain_options=(1,))
    assert one.df == 4 and np.isfinite(one.half_width)
