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
"""
from __future__ import annotations

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
