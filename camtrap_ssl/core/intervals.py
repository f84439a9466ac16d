"""95 % intervals over fine-tuning seeds, and paired differences between two backbones.

Why a t-interval by default: the studies run a handful of seeds per cell (the demo book three),
and a seed-level bootstrap of three values has only ten distinct resamples, so its percentile
interval is far too narrow. The t-interval (mean +- t_{n-1} s / sqrt(n)) assumes roughly normal
seed-to-seed variation, which is the usual assumption for fine-tuning noise, and widens honestly
as n shrinks. The bootstrap is offered for many seeds, where it needs no normality.

Paired differences: an SSL and an SL run with the same fine-tuning seed see the same data order,
the same augmentation draws and (same architecture) the same fresh-head initialisation, so pairing
by seed removes that shared part of the variation; :func:`paired_difference` is a t-interval of
the per-seed differences.

What the interval covers is the caller's to say: in the studies, fine-tuning seeds only (each
shipped backbone is one pretraining run, so pretraining variance is not in it).

A page with many comparisons controls them as a family (SPEC section 6, "Power"):
:func:`paired_t_pvalue`, :func:`holm` (Holm 1979) and :func:`adjusted_t_intervals` (the verdicts
of a family, with simultaneous intervals). Claims about *methods* rest on several pretraining runs:
:func:`hierarchical_bootstrap` resamples pretraining seeds, then fine-tuning seeds within each.
The variance components and the power analysis that sizes a design are in :mod:`.power`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float  # NaN where an interval needs more values than there are
    high: float
    n: int
    method: str  # "t" or "bootstrap"

    @property
    def excludes_zero(self) -> bool:
        return bool(self.low > 0 or self.high < 0)

    def __str__(self) -> str:
        if np.isnan(self.low):
            return f"{self.mean:.1f} (n={self.n})"
        return f"{self.mean:.1f} [{self.low:.1f}, {self.high:.1f}]"


def _values(values) -> np.ndarray:
    v = np.asarray([float(x) for x in values], dtype=float)
    if v.size == 0:
        raise ValueError("an interval needs at least one value")
    if np.isnan(v).any():
        raise ValueError(f"values contain NaN: {v.tolist()}")
    return v


def t_interval(values, confidence: float = CONFIDENCE) -> Interval:
    """Mean and Student-t interval of the mean; NaN bounds for a single value."""
    v = _values(values)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    mean = float(v.mean())
    if v.size < 2:
        return Interval(mean, np.nan, np.nan, 1, "t")
    half = float(stats.t.ppf(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return Interval(mean, mean - half, mean + half, int(v.size), "t")


def bootstrap_interval(values, seed: int, n_boot: int = 10_000,
                       confidence: float = CONFIDENCE) -> Interval:
    """Mean and percentile-bootstrap interval of the mean, resampling values (seeds) with replacement.

    The resampling draws come from ``seed`` alone, so the interval is the same in every process.
    """
    v = _values(values)
    if n_boot < 10:
        raise ValueError(f"n_boot must be >= 10, got {n_boot}")
    mean = float(v.mean())
    if v.size < 2:
        return Interval(mean, np.nan, np.nan, 1, "bootstrap")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(1)
    lo, hi = np.quantile(means, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return Interval(mean, float(lo), float(hi), int(v.size), "bootstrap")


def paired_difference(a, b, confidence: float = CONFIDENCE) -> Interval:
    """t-interval of ``a[i] - b[i]`` (values paired by seed: same length, same order)."""
    a, b = _values(a), _values(b)
    if a.shape != b.shape:
        raise ValueError(f"paired values need equal lengths, got {a.size} and {b.size}")
    return t_interval(a - b, confidence)


# Fewest paired seeds a verdict is drawn from. With two, the t-interval is either very wide
# (t = 12.7) or, when both differences happen to be equal (likely on a small validation split,
# where accuracies move in steps), of zero width: a "win" from a coincidence.
MIN_SEEDS_FOR_VERDICT = 3


def verdict(diff: Interval, better: str, worse: str) -> str:
    """Words for a paired difference ``better - worse``: a win only where the interval excludes 0
    (and at least :data:`MIN_SEEDS_FOR_VERDICT` seeds were paired)."""
    if diff.n < MIN_SEEDS_FOR_VERDICT:
        return f"undecided ({diff.n} seed(s): fewer than {MIN_SEEDS_FOR_VERDICT} to judge {better} - {worse})"
    if diff.low > 0:
        return f"{better} wins"
    if diff.high < 0:
        return f"{worse} wins"
    return "no clear difference"


# ---------------------------------------------------------------- a family of paired comparisons

def paired_t_pvalue(a, b=None, axis: int = -1):
    """Two-sided p-value of the paired t-test of mean(a - b) = 0 (``b=None``: ``a`` are differences).

    Vectorised along ``axis`` (one test per remaining index: a float for 1-D input, else an array),
    so a simulation of thousands of families is one call. Student's t with ``n - 1`` degrees of
    freedom; ``n < 2`` gives NaN; differences with no spread give 1 if their mean is 0, else 0 (the
    t statistic is infinite); :data:`MIN_SEEDS_FOR_VERDICT` is the verdict's guard against that.
    """
    d = np.asarray(a, dtype=float) if b is None else np.asarray(a, float) - np.asarray(b, float)
    d = np.moveaxis(d, axis, -1)
    n = d.shape[-1]
    if n < 2:
        out = np.full(d.shape[:-1], np.nan)
        return float(out) if out.ndim == 0 else out
    mean = d.mean(-1)
    se = d.std(-1, ddof=1) / np.sqrt(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.abs(mean) / se
    p = 2 * stats.t.sf(t, n - 1)
    p = np.where(se > 0, p, np.where(mean == 0, 1.0, 0.0))
    return float(p) if np.ndim(p) == 0 else p


def holm(p_values, alpha: float = 0.05):
    """Holm's (1979) step-down procedure: ``(rejected, adjusted_p)`` for a family of ``m`` tests.

    Follows Holm, "A simple sequentially rejective multiple test procedure", Scand. J. Statist. 6
    (1979) 65-70: sort ``p_(1) <= ... <= p_(m)``, reject ``H_(1) ... H_(k-1)`` where ``k`` is the
    first rank with ``p_(k) > alpha / (m - k + 1)``. Equivalently (Wright 1992) the adjusted p-value
    ``p~_(i) = max_{j<=i} min(1, (m - j + 1) p_(j))`` (monotone in the ordering, capped at 1) and
    ``rejected = p~ <= alpha``. The family-wise error rate is at most ``alpha`` under any dependence.

    ``p_values`` is one family (1-D) or many (2-D: one family per row, ``m`` along the last axis).
    A NaN p-value (a comparison that could not be tested, e.g. one seed) still counts in ``m`` (the
    family is every comparison the page shows, which errs on the safe side), is never rejected and
    has a NaN adjusted p-value.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    p = np.asarray(p_values, dtype=float)
    if p.ndim == 0 or p.shape[-1] == 0:
        raise ValueError("holm needs at least one p-value")
    nan = np.isnan(p)
    if ((p[~nan] < 0) | (p[~nan] > 1)).any():
        raise ValueError("p-values must lie in [0, 1]")
    q = np.where(nan, 1.0, p)
    m = q.shape[-1]
    order = np.argsort(q, axis=-1, kind="stable")
    ranked = np.take_along_axis(q, order, -1) * (m - np.arange(m))
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate(ranked, axis=-1))
    adjusted = np.empty_like(q)
    np.put_along_axis(adjusted, order, adjusted_sorted, -1)
    adjusted[nan] = np.nan
    rejected = np.where(nan, False, adjusted <= alpha)
    return rejected, adjusted


@dataclass(frozen=True)
class AdjustedComparison:
    """One comparison of a family: mean difference, its simultaneous interval, p-values, verdict."""
    name: str
    mean: float
    low: float  # interval at confidence ``level`` (Bonferroni: 1 - alpha/m); NaN for n < 2
    high: float
    n: int
    p: float  # paired t-test, unadjusted
    p_adjusted: float  # Holm (or Bonferroni) adjusted over the family
    verdict: str  # "<better> better", "<worse> better" or "cannot tell"
    level: float


def adjusted_t_intervals(diffs_per_comparison, alpha: float = 0.05, labels=("SSL", "SL"),
                         method: str = "holm") -> list[AdjustedComparison]:
    """Verdicts for a family of paired comparisons, controlled for multiplicity, with intervals.

    ``diffs_per_comparison``: a mapping name -> paired differences (``labels[0] - labels[1]``, one
    per seed), or a sequence of them (named by position). The family has ``m`` members.

    * **Tests and verdicts**: paired t-test p-values (:func:`paired_t_pvalue`) adjusted by Holm's
      step-down procedure (:func:`holm`; ``method="bonferroni"`` for ``min(1, m p)``). A verdict
      names a winner (by the sign of the mean) only where the adjusted p is <= ``alpha`` and at
      least :data:`MIN_SEEDS_FOR_VERDICT` seeds were paired; otherwise "cannot tell". Under Holm
      the probability of any false claim, wrong direction included, stays at most ``alpha`` for
      independent comparisons (Shaffer, Ann. Statist. 8, 1980, on directional decisions).
    * **Intervals**: Bonferroni t-intervals at confidence ``1 - alpha/m`` each, so that all ``m``
      cover their true means together with probability >= ``1 - alpha`` (Bonferroni's inequality;
      Miller, *Simultaneous Statistical Inference*, 1981, 2.3). Why not Holm-consistent intervals:
      the intervals compatible with the step-down test (Strassburger & Bretz 2008, Stat. Med. 27)
      collapse to "> 0" for every rejected comparison and say nothing about size. The Bonferroni
      interval is consistent with the verdict one way: an interval that excludes 0 implies the
      Holm rejection in the same direction (Holm rejects every hypothesis Bonferroni rejects). Holm,
      being more powerful, may name a winner whose interval just touches 0; with
      ``method="bonferroni"`` verdict and interval agree exactly.
    """
    if method not in ("holm", "bonferroni"):
        raise ValueError(f"method must be 'holm' or 'bonferroni', got {method!r}")
    items = (list(diffs_per_comparison.items()) if isinstance(diffs_per_comparison, Mapping)
             else [(str(i), v) for i, v in enumerate(diffs_per_comparison)])
    if not items:
        raise ValueError("a family needs at least one comparison")
    values = [(str(k), _values(v)) for k, v in items]
    m = len(values)
    p = np.array([paired_t_pvalue(v) for _, v in values])
    if method == "holm":
        rejected, adjusted = holm(p, alpha)
    else:
        adjusted = np.where(np.isnan(p), np.nan, np.minimum(1.0, m * p))
        rejected = np.where(np.isnan(p), False, adjusted <= alpha)
    level = 1 - alpha / m
    out = []
    for (name, v), pi, adj, rej in zip(values, p, adjusted, rejected):
        iv = t_interval(v, level)
        if rej and v.size >= MIN_SEEDS_FOR_VERDICT and iv.mean != 0:
            words = f"{labels[0]} better" if iv.mean > 0 else f"{labels[1]} better"
        else:
            words = "cannot tell"
        out.append(AdjustedComparison(name, iv.mean, iv.low, iv.high, iv.n, float(pi), float(adj),
                                      words, level))
    return out


# ---------------------------------------------------------------- claims about methods

def runs_by_pretraining(table, value: str = "diff", pretrain: str = "pretrain_seed",
                        finetune: str | None = "finetune_seed") -> list[np.ndarray]:
    """The ``value`` of each run, grouped by pretraining seed (groups in order of first appearance).

    ``table``: a pandas DataFrame or a mapping of equal-length columns, one row per run. With
    ``finetune`` named, a (pretraining seed, fine-tuning seed) pair may appear only once.
    """
    col = (lambda c: np.asarray(table[c]))
    v = col(value).astype(float)
    pre = col(pretrain)
    if v.ndim != 1 or pre.shape != v.shape or v.size == 0:
        raise ValueError("the table needs one row per run and at least one run")
    if np.isnan(v).any():
        raise ValueError(f"{value} contains NaN")
    if finetune is not None:
        pairs = list(zip(pre.tolist(), col(finetune).tolist()))
        if len(set(pairs)) != len(pairs):
            raise ValueError(f"a ({pretrain}, {finetune}) pair appears twice")
    keys = list(dict.fromkeys(pre.tolist()))
    return [v[pre == k] for k in keys]


def hierarchical_bootstrap(table, seed: int, n_boot: int = 10_000,
                           confidence: float = CONFIDENCE, value: str = "diff",
                           pretrain: str = "pretrain_seed", finetune: str | None = "finetune_seed",
                           inner: bool = True) -> Interval:
    """Two-level percentile bootstrap of the mean paired difference over pretraining runs.

    Each row of ``table`` is one pair of runs (SSL and SL, paired on both the pretraining seed and
    the fine-tuning seed) with its difference in ``value``. The estimand is the methods' mean
    difference over pretraining runs (each pretraining seed weighs equally: the mean of the
    per-pretraining-seed means). Each bootstrap replicate draws pretraining seeds with replacement,
    then (``inner=True``) fine-tuning seeds with replacement within each drawn pretraining seed,
    as in Saravanan, Berman & Sober, "Application of the hierarchical bootstrap to multi-level data
    in neuroscience", Neurons, Behavior, Data analysis and Theory 3 (2020); ``inner=False`` resamples
    the top level only (Davison & Hinkley, *Bootstrap Methods and their Application*, 1997, 3.8,
    "strategy 1"). Davison & Hinkley show the top level carries the variance that matters; the
    inner resampling adds a little (its within-seed variance is counted twice, in part), so the
    interval errs wide, while with few pretraining seeds the percentile interval errs narrow (the
    spread of ``a`` resampled units is ``(a - 1)/a`` of the truth and there is no t correction):
    test it at 10 pretraining seeds and expect under-coverage below that.

    The interval covers pretraining and fine-tuning variation and the validation noise particular
    to each run, on these validation images; not the draw of the validation images themselves
    (:mod:`.power` adds that part). ``Interval.n`` is the number of pretraining seeds; with one
    the bounds are NaN (one pretraining run supports no claim about its method).
    """
    if n_boot < 10:
        raise ValueError(f"n_boot must be >= 10, got {n_boot}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    groups = runs_by_pretraining(table, value, pretrain, finetune)
    g = len(groups)
    means = np.array([x.mean() for x in groups])
    estimate = float(means.mean())
    if g < 2:
        return Interval(estimate, np.nan, np.nan, g, "hierarchical bootstrap")
    sizes = np.array([x.size for x in groups])
    padded = np.zeros((g, sizes.max()))
    for i, x in enumerate(groups):
        padded[i, :x.size] = x
    rng = np.random.default_rng(seed)
    stats_ = []
    chunk = max(1, 2_000_000 // (g * sizes.max()))  # cap the memory of one block of replicates
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        top = rng.integers(0, g, size=(b, g))
        if inner:
            n_top = sizes[top][..., None]
            idx = (rng.random((b, g, sizes.max())) * n_top).astype(int)
            keep = np.arange(sizes.max()) < n_top
            drawn = np.where(keep, padded[top[..., None], idx], 0.0).sum(-1) / n_top[..., 0]
        else:
            drawn = means[top]
        stats_.append(drawn.mean(-1))
    lo, hi = np.quantile(np.concatenate(stats_), [0.5 - confidence / 2, 0.5 + confidence / 2])
    return Interval(estimate, float(lo), float(hi), g, "hierarchical bootstrap")
