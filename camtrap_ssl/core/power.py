"""Power by design: variance components, the smallest difference a design resolves, and designs.

SPEC section 6 ("Power") asks that validation sets, seeds and epochs be sized so that a comparison
resolves the differences it asks about. This module gives the pieces.

**The model.** One paired run (SSL and SL, pretraining seed ``i``, fine-tuning seed ``j``, scored on
the same ``n_val`` validation images) gives a difference ``d_ij = mu + a_i + b_ij + e_ij``:

* ``a_i``, variance ``pretrain_var``: the pretraining run (a claim about a *method* averages over
  it; a claim about one checkpoint does not);
* ``b_ij``, variance ``finetune_var``: the fine-tuning run (data order, augmentation, head init);
* ``e_ij``: validation sampling, the finite number of images. For one accuracy it is binomial,
  ``p (1 - p) / n_val``; for a paired difference of accuracies on the same images it is McNemar's,
  :func:`paired_accuracy_sd`. Part of it is particular to each run (which borderline images a run
  gets right), part is shared by every run scored on the same images (which images were drawn).

**What each interval covers.** An interval over seeds (:func:`.intervals.t_interval` over
fine-tuning seeds of one checkpoint, :func:`.intervals.hierarchical_bootstrap` over pretraining and
fine-tuning seeds) measures the spread between runs, so it covers ``b`` (and ``a`` if pretraining
seeds vary) and the run-particular part of ``e``: "another set of runs on these images". It does
not cover the shared part of ``e`` ("another draw of images from the same cameras"), which no
number of seeds reduces; :class:`DesignComponents` adds it back (``shared_validation``, by default
all of ``e``, the safe bound) when a design is sized.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np
from scipy import optimize, special, stats

from camtrap_ssl.core.intervals import runs_by_pretraining


# ---------------------------------------------------------------- validation sampling

def binomial_var(p, n_val):
    """Sampling variance of one accuracy ``p`` (a proportion) measured on ``n_val`` images:
    ``p (1 - p) / n_val``. In percentage points multiply by 100**2."""
    p, n_val = np.asarray(p, float), np.asarray(n_val, float)
    if ((p < 0) | (p > 1)).any() or (n_val < 1).any():
        raise ValueError("p must be a proportion in [0, 1] and n_val >= 1")
    out = p * (1 - p) / n_val
    return float(out) if out.ndim == 0 else out


def paired_accuracy_sd(p_a, p_b, discordance, n_val):
    """Standard deviation, over draws of the ``n_val`` shared validation images, of ``acc_a - acc_b``.

    Both models are scored on the same images, so the difference is the mean of per-image terms
    ``x_a - x_b`` in {-1, 0, 1}; with ``discordance = P(x_a != x_b) = p10 + p01`` (the share of
    images exactly one model gets right, McNemar's discordant pairs) and ``p_a - p_b = p10 - p01``,
    ``Var = (discordance - (p_a - p_b)**2) / n_val`` (the variance of a difference of dependent
    proportions; Agresti, *Categorical Data Analysis*, 3rd ed. 2013, 11.1). It is below the unpaired
    ``sqrt(p_a(1-p_a)/n + p_b(1-p_b)/n)`` when the models agree on most images. Proportions in, the
    same unit out (times 100 for percentage points). Needs ``|p_a - p_b| <= discordance <=
    min(p_a + p_b, 2 - p_a - p_b)``.
    """
    p_a, p_b, q, n = (np.asarray(x, float) for x in (p_a, p_b, discordance, n_val))
    for name, x in (("p_a", p_a), ("p_b", p_b), ("discordance", q)):
        if ((x < 0) | (x > 1)).any():
            raise ValueError(f"{name} must be a proportion in [0, 1]")
    eps = 1e-12
    if ((q < np.abs(p_a - p_b) - eps) | (q > np.minimum(p_a + p_b, 2 - p_a - p_b) + eps)).any():
        raise ValueError("discordance must lie between |p_a - p_b| and min(p_a + p_b, 2 - p_a - p_b)")
    if (n < 1).any():
        raise ValueError("n_val must be >= 1")
    out = np.sqrt(np.maximum(q - (p_a - p_b) ** 2, 0.0) / n)
    return float(out) if out.ndim == 0 else out


# ---------------------------------------------------------------- variance components

@dataclass(frozen=True)
class VarianceComponents:
    """Method-of-moments estimates from runs nested in pretraining seeds (variances, value's unit)."""
    mean: float  # mean of the per-pretraining-seed means
    pretrain_var: float  # between pretraining runs (truncated at 0)
    within_var: float  # between fine-tuning runs of one pretraining run, run-particular noise included
    validation_var: float  # the validation sampling variance per run that the caller gave
    finetune_var: float  # within_var - validation_var, truncated at 0: the training noise alone
    n_pretrain: int
    n_runs: int
    n0: float  # the ANOVA's effective runs per pretraining seed (the mean size if balanced)

    @property
    def pretrain_sd(self) -> float:
        return float(np.sqrt(self.pretrain_var))

    @property
    def finetune_sd(self) -> float:
        return float(np.sqrt(self.finetune_var))


def variance_components(table, value: str = "diff", pretrain: str = "pretrain_seed",
                        finetune: str | None = "finetune_seed",
                        validation_var: float = 0.0) -> VarianceComponents:
    """Nested one-way random-effects ANOVA by the method of moments (Searle, Casella & McCulloch,
    *Variance Components*, 1992, 3.5 and 3.6 for unbalanced data).

    With ``a`` pretraining seeds of ``n_i`` runs each (``N`` in all): ``MSW = sum (d_ij - dbar_i)^2 /
    (N - a)`` estimates the within variance, ``MSB = sum n_i (dbar_i - dbar)^2 / (a - 1)`` has
    expectation ``within + n0 * pretrain`` with ``n0 = (N - sum n_i^2 / N) / (a - 1)``, so
    ``pretrain_var = (MSB - MSW) / n0`` (unbiased before truncation at 0).

    Fine-tuning seed and run-particular validation noise are confounded in one run per pair of
    seeds; ``validation_var`` (e.g. ``paired_accuracy_sd(...)**2``, which bounds the run-particular
    part from above) is subtracted to leave ``finetune_var``, the training noise alone.
    """
    groups = runs_by_pretraining(table, value, pretrain, finetune)
    a = len(groups)
    sizes = np.array([x.size for x in groups], float)
    n_runs = int(sizes.sum())
    if a < 2 or n_runs - a < 1:
        raise ValueError("variance components need >= 2 pretraining seeds and one with >= 2 runs")
    means = np.array([x.mean() for x in groups])
    grand = (sizes * means).sum() / n_runs
    msw = sum(((x - x.mean()) ** 2).sum() for x in groups) / (n_runs - a)
    msb = (sizes * (means - grand) ** 2).sum() / (a - 1)
    n0 = (n_runs - (sizes ** 2).sum() / n_runs) / (a - 1)
    pre = max((msb - msw) / n0, 0.0)
    if validation_var < 0:
        raise ValueError("validation_var must be >= 0")
    return VarianceComponents(float(means.mean()), float(pre), float(msw), float(validation_var),
                              float(max(msw - validation_var, 0.0)), a, n_runs, float(n0))


# ---------------------------------------------------------------- power of a paired t-test

def _check(sd_diff, n, alpha, m_comparisons, df=None) -> int:
    """Check the arguments; return the degrees of freedom (``n - 1`` unless ``df`` is given)."""
    if not sd_diff > 0:
        raise ValueError(f"sd_diff must be > 0, got {sd_diff}")
    if int(n) != n or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n}")
    if not 0 < alpha < 1 or int(m_comparisons) != m_comparisons or m_comparisons < 1:
        raise ValueError("alpha must be in (0, 1) and m_comparisons an integer >= 1")
    if df is None:
        return int(n) - 1
    if int(df) != df or df < 1:
        raise ValueError(f"df must be None or an integer >= 1, got {df}")
    return int(df)


def power_paired_t(delta: float, sd_diff: float, n: int, alpha: float = 0.05,
                   m_comparisons: int = 1, df: int | None = None) -> float:
    """Probability that a two-sided paired t-test at level ``alpha / m_comparisons`` (Bonferroni)
    rejects when the true mean difference is ``delta``: the noncentral t with ``n - 1`` degrees of
    freedom and noncentrality ``delta sqrt(n) / sd_diff``, both tails (Cohen, *Statistical Power
    Analysis for the Behavioral Sciences*, 2nd ed. 1988, ch. 2; Julious, Stat. Med. 23, 2004).
    Holm's procedure rejects at least what Bonferroni does, so this is a lower bound on its power.
    ``df``: the degrees of freedom of the sd estimate where it is pooled over several comparisons
    (:func:`camtrap_ssl.studies.multiplicity.adjust`); default ``n - 1``."""
    df = _check(sd_diff, n, alpha, m_comparisons, df)
    crit = stats.t.ppf(1 - alpha / (2 * m_comparisons), df)
    nc = delta * np.sqrt(n) / sd_diff
    upper = stats.nct.sf(crit, df, nc)
    lower = stats.nct.cdf(-crit, df, nc)  # far in the tail scipy returns NaN for what is ~0
    return float(upper + (0.0 if np.isnan(lower) else lower))


def min_detectable_difference(sd_diff: float, n: int, alpha: float = 0.05, power: float = 0.8,
                              m_comparisons: int = 1, df: int | None = None) -> float:
    """The smallest true mean difference that ``n`` paired units (seeds; pretraining seeds for a
    claim about methods) with per-unit difference sd ``sd_diff`` detect with probability ``power``,
    two-sided at Bonferroni level ``alpha / m_comparisons``: :func:`power_paired_t` solved for
    ``delta`` (exact noncentral t, no normal approximation; the normal one,
    ``(z_{1-alpha/2m} + z_power) sd / sqrt(n)``, is far too optimistic at a handful of seeds).
    ``df``: as in :func:`power_paired_t`."""
    df = _check(sd_diff, n, alpha, m_comparisons, df)
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")
    if power <= alpha / m_comparisons:
        return 0.0
    z = stats.norm.ppf(1 - alpha / (2 * m_comparisons)) + stats.norm.ppf(power)
    hi = z * sd_diff / np.sqrt(n)
    while power_paired_t(hi, sd_diff, n, alpha, m_comparisons, df) < power:
        hi *= 2
    f = lambda d: power_paired_t(d, sd_diff, n, alpha, m_comparisons, df) - power  # noqa: E731
    return float(optimize.brentq(f, 0.0, hi, xtol=1e-10 * hi))


def _c4(n):
    """E[s] / sigma for the sample sd of ``n`` normal values."""
    n = np.asarray(n, float)
    return np.sqrt(2 / (n - 1)) * np.exp(special.gammaln(n / 2) - special.gammaln((n - 1) / 2))


def half_width(sd_diff: float, n: int, alpha: float = 0.05, m_comparisons: int = 1,
               df: int | None = None) -> float:
    """Expected half-width of the t-interval of a mean of ``n`` paired differences at confidence
    ``1 - alpha / m_comparisons`` (the Bonferroni level of :func:`.intervals.adjusted_t_intervals`):
    ``t_{1 - alpha/2m, n-1} * E[s] / sqrt(n)`` with ``E[s] = c4(n) sd_diff`` (the sample sd is biased
    low: ``c4(3) = 0.886``). ``df``: as in :func:`power_paired_t` (a pooled sd on ``df`` degrees
    of freedom has ``E[s] = c4(df + 1) sd_diff``)."""
    df = _check(sd_diff, n, alpha, m_comparisons, df)
    t = stats.t.ppf(1 - alpha / (2 * m_comparisons), df)
    return float(t * _c4(df + 1) * sd_diff / np.sqrt(n))


def seeds_needed(sd_diff: float, target_half_width: float, alpha: float = 0.05,
                 m_comparisons: int = 1, max_n: int = 1_000_000) -> int:
    """Smallest ``n >= 2`` whose expected :func:`half_width` is at most ``target_half_width``."""
    if not target_half_width > 0:
        raise ValueError("target_half_width must be > 0")
    hw = lambda n: half_width(sd_diff, n, alpha, m_comparisons)  # noqa: E731
    if hw(2) <= target_half_width:
        return 2
    lo, hi = 2, 4  # hw(lo) > target; grow hi until hw(hi) <= target, then bisect (hw decreases in n)
    while hw(hi) > target_half_width:
        lo, hi = hi, hi * 2
        if hi > max_n:
            raise ValueError(f"more than {max_n} seeds would be needed")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if hw(mid) <= target_half_width else (mid, hi)
    return hi


# ---------------------------------------------------------------- designs

@dataclass(frozen=True)
class DesignComponents:
    """Standard deviations of the paired difference's parts (one unit throughout).

    ``per_image_sd``: sd of the per-image term, so that the validation sampling sd on ``n`` images
    is ``per_image_sd / sqrt(n)`` (``paired_accuracy_sd(p_a, p_b, q, 1)``). ``shared_validation``
    in [0, 1]: the share of that variance common to all runs on the same images; 1 (the default)
    is the safe bound when per-image predictions are not at hand to estimate it.
    """
    pretrain_sd: float
    finetune_sd: float
    per_image_sd: float
    shared_validation: float = 1.0

    def var_of_mean(self, n_val: int, n_finetune: int, n_pretrain: int) -> float:
        """``pretrain^2/P + (finetune^2 + (1-s) v/n_val)/(P F) + s v/n_val`` with ``v = per_image^2``."""
        v = self.per_image_sd ** 2 / n_val
        s = self.shared_validation
        runs = n_pretrain * n_finetune
        return (self.pretrain_sd ** 2 / n_pretrain + (self.finetune_sd ** 2 + (1 - s) * v) / runs
                + s * v)


@dataclass(frozen=True)
class DesignCosts:
    """Seconds (or any unit) of each part of a paired design; ``sides`` runs per pair (SSL and SL)."""
    pretrain_s: float  # one pretraining run
    finetune_s: float  # one fine-tuning run
    eval_s_per_image: float = 0.0  # scoring one validation image once
    label_s_per_image: float = 0.0  # labelling one validation image, paid once
    sides: int = 2

    def cost(self, n_val: int, n_finetune: int, n_pretrain: int) -> float:
        runs = self.sides * n_pretrain * n_finetune
        return (self.sides * n_pretrain * self.pretrain_s
                + runs * (self.finetune_s + n_val * self.eval_s_per_image)
                + n_val * self.label_s_per_image)


@dataclass(frozen=True)
class Design:
    n_val: int
    n_finetune_seeds: int
    n_pretrain_seeds: int
    sd_of_mean: float  # predicted sd of the mean paired difference
    df: int  # degrees of freedom of its t-interval
    half_width: float  # expected half-width at confidence 1 - alpha/m (inf: cannot be estimated)
    min_detectable: float  # smallest difference found with the given power (inf likewise)
    cost: float


def _as(cls, x):
    if isinstance(x, cls):
        return x
    if isinstance(x, Mapping):
        return cls(**{f.name: x[f.name] for f in fields(cls) if f.name in x})
    raise TypeError(f"expected a {cls.__name__} or a mapping, got {type(x).__name__}")


def design_table(components, costs, budget: float | None = None, alpha: float = 0.05,
                 m_comparisons: int = 1, power: float = 0.8,
                 n_val_options=(250, 500, 1000, 2000, 5000),
                 finetune_options=(1, 2, 3, 5, 10), pretrain_options=(1, 2, 3, 5, 10)) -> list[Design]:
    """Candidate designs (n_val, fine-tuning seeds per pretraining seed, pretraining seeds per side)
    with the predicted half-width and smallest resolvable difference of the mean paired difference,
    and their cost; within ``budget`` if given, best (narrowest, then cheapest) first.

    ``components``: :class:`DesignComponents` (or a mapping of its fields), e.g. from
    :func:`variance_components` and :func:`paired_accuracy_sd`; ``costs``: :class:`DesignCosts`
    (or a mapping). The analysis is the t-interval over units: pretraining seeds (``df = P - 1``)
    when ``pretrain_sd > 0`` (a claim about methods; one pretraining seed cannot estimate its
    variance, so such designs get ``inf``), else all ``P F`` runs. The per-unit sd
    ``sd_of_mean * sqrt(units)`` goes into :func:`half_width` and :func:`min_detectable_difference`;
    the shared validation part is thereby treated as if estimated on the same degrees of freedom,
    an approximation (it is known from the binomial, so the truth is a little narrower).
    """
    comp, cost = _as(DesignComponents, components), _as(DesignCosts, costs)
    rows = []
    for n_val in n_val_options:
        for f in finetune_options:
            for p in pretrain_options:
                c = cost.cost(n_val, f, p)
                if budget is not None and c > budget:
                    continue
                sd = float(np.sqrt(comp.var_of_mean(n_val, f, p)))
                units = p if comp.pretrain_sd > 0 else p * f
                if units < 2 or sd == 0:
                    hw = mdd = float("inf") if sd > 0 else 0.0
                else:
                    unit_sd = sd * np.sqrt(units)
                    hw = half_width(unit_sd, units, alpha, m_comparisons)
                    mdd = min_detectable_difference(unit_sd, units, alpha, power, m_comparisons)
                rows.append(Design(int(n_val), int(f), int(p), sd, int(units - 1), hw, mdd, float(c)))
    return sorted(rows, key=lambda d: (d.half_width, d.cost))
