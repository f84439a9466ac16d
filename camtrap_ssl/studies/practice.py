"""Studies 1 and 2 scored as camera-trap practice decides (SPEC section 6): sequences and automation.

Every fine-tuning run records its per-image validation probabilities (``predictions.npz``,
:mod:`camtrap_ssl.train.predictions`) and, in its summary, the sequence-level scores and the
coverage at 95 % accuracy (:mod:`camtrap_ssl.train.practice`). This module turns the runs of a
page (the rows of :func:`camtrap_ssl.studies.report.collect`) into

* :func:`sequence_table`: frame-level against sequence-level top-1 (mean over seeds, 95 %
  t-interval), where the target has sequences; a target without them says so;
* :func:`coverage_bands` / :func:`plot_coverage`: the coverage-accuracy curve of every backbone on
  a common coverage grid, the band a 95 % t-interval over fine-tuning seeds;
* :func:`coverage_table`: the share of images automated at the target accuracy (default 95 %)
  per backbone with its interval, and each backbone's paired difference from the SL baseline.

Intervals are over fine-tuning seeds (each backbone is one pretraining run unless the page uses
several pretraining seeds); "not reached" counts as coverage 0, as the run summaries do.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from camtrap_ssl.core import intervals
from camtrap_ssl.studies.report import paired_differences, sl_baseline
from camtrap_ssl.train import practice, rundir

GRID = np.linspace(0.05, 1.0, 20)  # coverages at which the curves are compared

__all__ = ["GRID", "coverage_bands", "coverage_table", "plot_coverage", "sequence_table"]


def _cell(iv) -> str:
    return "-" if iv is None or np.isnan(iv.mean) else \
        (f"{iv.mean:.1f}" if np.isnan(iv.low) else f"{iv.mean:.1f} [{iv.low:.1f}, {iv.high:.1f}]")


def sequence_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per target and backbone: frame and sequence top-1 (points, mean [95 % t-interval over
    seeds]) and their difference; "no sequences" where the target has none."""
    rows = []
    for (target, backbone), g in results.groupby(["target", "backbone"], sort=False):
        seq = g["seq_top1"].dropna() if "seq_top1" in g else pd.Series(dtype=float)
        row = {"target": target, "backbone": backbone, "seeds": len(g),
               "frame top-1 %": _cell(intervals.t_interval(g.top1))}
        if len(seq) == 0:
            row.update({"sequence top-1 %": "no sequences in this target",
                        "sequence - frame, points": "-"})
        else:
            both = g.dropna(subset=["seq_top1"])
            row.update({"sequence top-1 %": _cell(intervals.t_interval(seq)),
                        "sequence - frame, points": _cell(intervals.paired_difference(
                            both.seq_top1.to_numpy(), both.top1.to_numpy()))})
        rows.append(row)
    return pd.DataFrame(rows).set_index(["target", "backbone"])


def _curve_on_grid(run_dir) -> np.ndarray:
    """Accuracy of the accepted images at each coverage of :data:`GRID` for one run."""
    rec = rundir.RunDir(run_dir).predictions()
    curve = practice.coverage_curve(rec["probs"].astype(np.float64), rec["labels"])
    # coverage rises as the threshold falls: interpolate accuracy at the grid's coverages
    return np.interp(GRID, curve.coverage, curve.accuracy)


def coverage_bands(results: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy of the accepted images at each coverage of :data:`GRID`, per target and
    backbone, with its 95 % t-interval over seeds (runs without a predictions file are left out
    and counted in ``n``)."""
    rows = []
    for (target, backbone), g in results.groupby(["target", "backbone"], sort=False):
        curves = []
        for rd in g.run_dir:
            try:
                curves.append(_curve_on_grid(rd))
            except FileNotFoundError:  # a run older than the predictions file
                continue
        if not curves:
            continue
        c = np.stack(curves)
        for k, cov in enumerate(GRID):
            iv = intervals.t_interval(100 * c[:, k])
            rows.append({"target": target, "backbone": backbone, "paradigm": g.paradigm.iloc[0],
                         "coverage": 100 * cov, "accuracy": iv.mean, "low": iv.low,
                         "high": iv.high, "n": len(curves)})
    return pd.DataFrame(rows)


def plot_coverage(results: pd.DataFrame, target_accuracy: float = practice.CONFIDENCE):
    """One panel per target: accuracy on the automated images against the share automated (the
    images whose top probability passes a threshold), one curve per backbone, seeds as a band;
    the dotted line is the target accuracy."""
    import matplotlib.pyplot as plt

    bands = coverage_bands(results)
    targets = list(dict.fromkeys(bands.target)) if len(bands) else []
    fig, axes = plt.subplots(1, max(1, len(targets)), figsize=(4.2 * max(1, len(targets)), 3.4),
                             squeeze=False)
    for ax, target in zip(axes[0], targets):
        for backbone, b in bands[bands.target == target].groupby("backbone", sort=False):
            style = "-" if b.paradigm.iloc[0] == "SL" else "--"
            (line,) = ax.plot(b.coverage, b.accuracy, style, label=backbone)
            ax.fill_between(b.coverage, b.low, b.high, color=line.get_color(), alpha=0.15, lw=0)
        ax.axhline(100 * target_accuracy, color="0.5", ls=":", lw=0.8)
        ax.set(title=target, xlabel="images automated, %", ylabel="accuracy on them, %",
               ylim=(0, 100.5))
        ax.grid(alpha=0.3)
    if targets:
        axes[0][-1].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def coverage_table(results: pd.DataFrame, baseline: str | None = None,
                   alpha: float = 0.05) -> pd.DataFrame:
    """Per target and backbone: the share of validation images automated at 95 % accuracy
    (``coverage_at_95`` of each run; 0 where never reached), mean [95 % t-interval over seeds],
    how many seeds reached it, and each SSL backbone's difference from the SL ``baseline``,
    paired by seed, with its simultaneous interval and verdict, the comparisons of the table
    one family controlled by Holm's procedure like the page's other tables
    (:func:`camtrap_ssl.studies.report.paired_differences`)."""
    baseline = sl_baseline(results, baseline)
    pts = results.assign(coverage_at_95=100 * results.coverage_at_95.astype(float))
    diffs = paired_differences(pts, baseline, metrics=("coverage_at_95",), alpha=alpha)
    diff_of = {(r.target, r.backbone): r for r in diffs.itertuples()} if len(diffs) else {}
    rows = []
    for (target, backbone), g in pts.groupby(["target", "backbone"], sort=False):
        cov = g["coverage_at_95"]
        row = {"target": target, "backbone": backbone,
               "automated at 95 % accuracy, % of images": _cell(intervals.t_interval(cov)),
               "seeds reaching it": f"{int((cov > 0).sum())}/{len(cov)}"}
        d = diff_of.get((target, backbone))
        if d is not None:
            row[f"minus {baseline}, points [simultaneous interval]"] = (
                f"{d.coverage_at_95_diff:.1f} [{d.coverage_at_95_adj_low:.1f}, "
                f"{d.coverage_at_95_adj_high:.1f}]" if not np.isnan(d.coverage_at_95_adj_low)
                else f"{d.coverage_at_95_diff:.1f}")
            row["verdict (Holm)"] = d.coverage_at_95_verdict
        rows.append(row)
    return pd.DataFrame(rows).set_index(["target", "backbone"])
