"""A page's family of paired comparisons: Holm's procedure, simultaneous intervals, and the
smallest difference the design can resolve (SPEC section 6, "Power").

:func:`adjust` turns a table of paired differences (one row per comparison, with its per-seed
differences) into one controlled family; :func:`resolution` says, from the observed seed-to-seed
spread, what such a family can resolve; :func:`interval_figure` draws a family at a glance.
:mod:`camtrap_ssl.studies.report` and :mod:`camtrap_ssl.studies.rq1` build their tables on them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from camtrap_ssl.core import intervals
from camtrap_ssl.core import power as design

# Family-wise error rate of each page's family of comparisons, and the power a design is sized to.
ALPHA = 0.05
POWER = 0.8


def pooled_sd(values) -> tuple[float, int]:
    """``(sd, df)`` pooled over several comparisons' per-seed differences (arrays): ``sqrt(sum
    (n_i - 1) s_i^2 / sum (n_i - 1))`` on ``sum (n_i - 1)`` degrees of freedom, the error mean square
    of a one-way layout (Montgomery, *Design and Analysis of Experiments*, 9th ed. 2017, 3.3 and
    3.4); arrays of one value add nothing. ``(nan, 0)`` where none has two."""
    usable = [np.asarray(v, float) for v in values if np.size(v) >= 2]
    df = int(sum(v.size - 1 for v in usable))
    if df == 0:
        return float("nan"), 0
    return float(np.sqrt(sum(((v - v.mean()) ** 2).sum() for v in usable) / df)), df


def adjust(diffs: pd.DataFrame, metrics=("top1",), alpha: float = ALPHA) -> pd.DataFrame:
    """Control the rows of ``diffs`` as one family per metric (``m`` = the number of rows).

    Tests: the paired t-test of each row's ``<metric>_seed_diffs`` (``<metric>_p``), adjusted by
    Holm's step-down procedure (:func:`camtrap_ssl.core.intervals.holm`, Holm 1979;
    ``<metric>_p_adjusted``). Where ``diffs`` has a ``pool`` column, the rows sharing its value
    share one seed-to-seed sd, :func:`pooled_sd` of their differences (comparisons scored on the
    same validation images with the same training budget, e.g. two SSL methods against SL on one
    target: a one-way layout's common error variance), so each row's test and intervals use
    ``mean / (s_pooled / sqrt(n))`` on the pool's degrees of freedom (``<metric>_df``) instead of
    its own ``n - 1``: three seeds per comparison no longer put a t-multiplier of 4.3 on every
    interval. A row that cannot be tested (fewer than two seeds, or no spread in its pool)
    counts in ``m`` and is never resolved. ``<metric>_resolved`` is +1 (the backbone better), -1
    (the baseline better) or 0, and ``<metric>_verdict`` says it in words; fewer than
    :data:`~camtrap_ssl.core.intervals.MIN_SEEDS_FOR_VERDICT` seeds stay undecided. Intervals:
    ``<metric>_low``/``_high`` the comparison's own 95 % interval, ``<metric>_adj_low``/``_adj_high``
    simultaneous Bonferroni t-intervals at confidence ``1 - alpha/m`` (``<metric>_level``); one
    that excludes 0 implies the Holm verdict, while Holm may resolve a row whose interval just
    touches 0. ``<metric>_family`` is ``m``, ``<metric>_sd`` the sd each row's test used. Running
    it again on its own output changes nothing.
    """
    out = diffs.copy()
    m = len(out)
    if m == 0:
        return out
    level = 1 - alpha / m
    pools = out["pool"].astype(str).to_numpy() if "pool" in out else np.arange(m).astype(str)
    for metric in metrics:
        values = [np.asarray(v, float) for v in out[f"{metric}_seed_diffs"]]
        sd, df = np.full(m, np.nan), np.zeros(m, int)
        for key in dict.fromkeys(pools):
            rows = np.flatnonzero(pools == key)
            sd[rows], df[rows] = pooled_sd([values[i] for i in rows])
        mean = np.array([v.mean() if v.size else np.nan for v in values])
        n = np.array([v.size for v in values])
        se = np.where((n >= 2) & (sd > 0), sd / np.sqrt(np.maximum(n, 1)), np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            p = np.where(np.isnan(se), np.nan,
                         2 * stats.t.sf(np.abs(mean / se), np.maximum(df, 1)))
        rejected, adjusted = intervals.holm(p, alpha)
        half = lambda conf: se * stats.t.ppf(0.5 + conf / 2, np.maximum(df, 1))  # noqa: E731
        resolved = [int(np.sign(mu)) if rej and k >= intervals.MIN_SEEDS_FOR_VERDICT else 0
                    for mu, k, rej in zip(mean, n, rejected)]
        words = []
        for k, r, b, base, pv in zip(n, resolved, out.backbone, out.minus, p):
            if k < intervals.MIN_SEEDS_FOR_VERDICT:
                words.append(f"undecided ({k} seed(s): fewer than "
                             f"{intervals.MIN_SEEDS_FOR_VERDICT} to judge {b} - {base})")
            elif np.isnan(pv):
                words.append("no clear difference (no seed-to-seed spread to test against)")
            else:
                words.append(f"{b} wins" if r > 0 else f"{base} wins" if r < 0
                             else "no clear difference")
        out[f"{metric}_sd"] = sd
        out[f"{metric}_df"] = df
        out[f"{metric}_p"] = p
        out[f"{metric}_p_adjusted"] = adjusted
        out[f"{metric}_low"] = mean - half(intervals.CONFIDENCE)
        out[f"{metric}_high"] = mean + half(intervals.CONFIDENCE)
        out[f"{metric}_adj_low"] = mean - half(level)
        out[f"{metric}_adj_high"] = mean + half(level)
        out[f"{metric}_level"] = level
        out[f"{metric}_family"] = m
        out[f"{metric}_resolved"] = resolved
        out[f"{metric}_verdict"] = words
    return out


def _resolution_row(values, m: int, alpha: float, power: float, what: str, sds=None,
                    dfs=None) -> dict:
    """Median seed-to-seed sd and seed count of ``values`` (arrays), and what they resolve;
    ``sds``/``dfs``: the sd each comparison was tested with and its degrees of freedom (pooled,
    :func:`adjust`), else each array's own sd on ``n - 1``."""
    own = sds is None
    sds = [v.std(ddof=1) if v.size >= 2 else np.nan for v in values] if own else list(sds)
    dfs = [v.size - 1 for v in values] if dfs is None else list(dfs)
    usable = [(v, s, d) for v, s, d in zip(values, sds, dfs)
              if v.size >= 2 and np.isfinite(s) and s > 0 and d >= 1]
    row = {"table": what, "comparisons": m, "alpha": alpha, "power": power,
           "n seeds": np.nan, "median sd": np.nan, "df": np.nan, "expected half-width": np.nan,
           "95 % half-width": np.nan, "smallest detectable difference": np.nan}
    if usable and m >= 1:
        sd = float(np.median([s for _, s, _ in usable]))
        n = int(np.floor(np.median([v.size for v, _, _ in usable])))  # rounded down: the safe side
        df = int(np.floor(np.median([d for _, _, d in usable])))
        row.update({"n seeds": n, "median sd": sd, "df": df,
                    "expected half-width": design.half_width(sd, n, alpha, m, df),
                    "95 % half-width": design.half_width(sd, n, alpha, 1, df),
                    "smallest detectable difference": design.min_detectable_difference(
                        sd, n, alpha, power, m, df)})
    return row


def resolution(diffs: pd.DataFrame, metrics=("top1",), alpha: float = ALPHA,
               power: float = POWER) -> pd.DataFrame:
    """What a table of paired differences (:func:`paired_differences`, one family of ``m`` rows)
    can resolve, one row per metric: the median over its comparisons of the seed-to-seed sd of the
    paired differences (pooled where :func:`adjust` pooled it, on its degrees of freedom ``df``),
    the (median) number of seeds ``n``, the expected half-width of its simultaneous intervals
    (:func:`camtrap_ssl.core.power.half_width` at ``1 - alpha/m``) and of one comparison's own
    95 % interval, and the smallest true difference found with probability ``power`` by a
    Bonferroni test at ``alpha/m`` (:func:`camtrap_ssl.core.power.min_detectable_difference`; Holm
    finds at least that). Comparisons without spread or with one seed say nothing about the sd
    and are left out of the medians; with none left the numbers are NaN."""
    rows = []
    for metric in metrics:
        values = [np.asarray(v, float) for v in diffs.get(f"{metric}_seed_diffs", [])]
        pooled = f"{metric}_sd" in diffs and f"{metric}_df" in diffs
        rows.append({"metric": metric, **_resolution_row(
            values, len(diffs), alpha, power, "paired differences",
            diffs[f"{metric}_sd"] if pooled else None, diffs[f"{metric}_df"] if pooled else None)})
    return pd.DataFrame(rows).set_index("metric")


def mean_resolution(results: pd.DataFrame, metrics=("top1",), alpha: float = ALPHA,
                    power: float = POWER) -> pd.DataFrame:
    """:func:`resolution` for a table of seed means with no pair (Study 1's one backbone): the
    median seed-to-seed sd of a cell, the expected half-width of its 95 % interval, and the
    smallest shift of a cell's mean a t-test at ``alpha`` (one comparison: nothing is paired or
    compared on the page) finds with probability ``power``."""
    rows = []
    for metric in metrics:
        values = [g[metric].dropna().to_numpy(float)
                  for _, g in results.groupby(["target", "backbone"], sort=False)]
        rows.append({"metric": metric, **_resolution_row(values, 1, alpha, power, "seed means")})
    return pd.DataFrame(rows).set_index("metric")


OUTCOME_STYLE = {1: ("tab:green", "^", "backbone better"), -1: ("tab:red", "v", "baseline better"),
                 0: ("0.45", "o", "cannot tell")}


def interval_figure(labels, mean, low, high, resolved, title: str, xlabel: str,
                    names=None):
    """One row per comparison: the estimate, its interval as an error bar, colour and marker by
    ``resolved`` (+1, -1, 0; ``names`` renames the legend's three outcomes), a line at zero."""
    import matplotlib.pyplot as plt

    labels = list(labels)
    mean, low, high = (np.asarray(x, float) for x in (mean, low, high))
    resolved = np.asarray(resolved, int)
    names = {**{k: v[2] for k, v in OUTCOME_STYLE.items()}, **(names or {})}
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.28 * max(len(labels), 1)))
    y = np.arange(len(labels))[::-1]
    for k, (colour, marker, _) in OUTCOME_STYLE.items():
        sel = resolved == k
        if not sel.any():
            continue
        err = np.vstack([mean[sel] - low[sel], high[sel] - mean[sel]])
        ax.errorbar(mean[sel], y[sel], xerr=np.where(np.isnan(err), 0, err), fmt=marker,
                    color=colour, capsize=3, label=f"{names[k]} ({int(sel.sum())})")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(-0.7, len(labels) - 0.3)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
