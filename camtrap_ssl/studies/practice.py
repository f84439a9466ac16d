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
from camtrap_ssl.studies.report import format_cell, paired_differences, sl_baseline
from camtrap_ssl.train import practice, rundir

GRID = np.linspace(0.05, 1.0, 20)  # coverages at which the curves are compared

__all__ = ["GRID", "coverage_bands", "coverage_table", "plot_coverage", "sequence_table"]


def _cell(iv) -> str:
    """An interval as the pages print it (:func:`camtrap_ssl.studies.report.format_cell`)."""
    return "-" if iv is None else format_cell(iv.mean, iv.low, iv.high)


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


def automation(results: pd.DataFrame, target_accuracy: float = practice.CONFIDENCE) -> pd.DataFrame:
    """Per run: the share of validation images automated at ``target_accuracy`` (0 where it is
    never reached, as the run summaries count it), recomputed from the run's predictions, and the
    empty-vs-animal accuracy of the automated images at that threshold where an empty class
    exists (NaN otherwise)."""
    rows = []
    for r in results.itertuples():
        rec = rundir.RunDir(r.run_dir).predictions()
        probs, labels = rec["probs"].astype(np.float64), rec["labels"]
        at = practice.coverage_at_accuracy(probs, labels, target_accuracy)
        classes = rundir.RunDir(r.run_dir).params()["classes"]
        ev = (practice.empty_vs_animal_at_threshold(probs, labels, classes, at.threshold)
              if at.reached else None)
        rows.append({"target": r.target, "backbone": r.backbone, "seed": r.seed,
                     "paradigm": r.paradigm,
                     "coverage": 100 * at.coverage if at.reached else 0.0,
                     "empty_vs_animal": np.nan if ev is None or ev.get("accuracy") is None
                     else 100 * ev["accuracy"]})
    return pd.DataFrame(rows)


def coverage_table(results: pd.DataFrame, baseline: str | None = None,
                   target_accuracy: float = practice.CONFIDENCE, alpha: float = 0.05) -> pd.DataFrame:
    """Per target and backbone: the share of validation images automated at ``target_accuracy``
    (:func:`automation`), mean [95 % t-interval over seeds], how many seeds reached it, the
    empty-vs-animal accuracy of the automated images where the target has an empty class, and
    each SSL backbone's difference in coverage from the SL ``baseline``, paired by seed, with its
    simultaneous interval and verdict: the table's comparisons are one family controlled by
    Holm's procedure, like the page's other tables (:func:`~camtrap_ssl.studies.report.
    paired_differences`)."""
    baseline = sl_baseline(results, baseline)
    per_run = automation(results, target_accuracy)
    auto = results.reset_index(drop=True).assign(coverage=per_run.coverage,
                                                 empty_vs_animal=per_run.empty_vs_animal)
    diffs = paired_differences(auto, baseline, metrics=("coverage",), alpha=alpha)
    diff_of = {(r.target, r.backbone): r for r in diffs.itertuples()} if len(diffs) else {}
    share = f"{100 * target_accuracy:g} %"
    rows = []
    for (target, backbone), g in auto.groupby(["target", "backbone"], sort=False):
        row = {"target": target, "backbone": backbone,
               f"automated at {share} accuracy, % of images": _cell(intervals.t_interval(g.coverage)),
               "seeds reaching it": f"{int((g.coverage > 0).sum())}/{len(g)}",
               "empty vs animal on them, %": (_cell(intervals.t_interval(g.empty_vs_animal.dropna()))
                                               if g.empty_vs_animal.notna().sum() else "-")}
        d = diff_of.get((target, backbone))
        if d is not None:
            row[f"minus {baseline}, points [simultaneous interval]"] = (
                f"{d.coverage_diff:.1f} [{d.coverage_adj_low:.1f}, {d.coverage_adj_high:.1f}]"
                if not np.isnan(d.coverage_adj_low) else f"{d.coverage_diff:.1f}")
            row["verdict (Holm)"] = d.coverage_verdict
        rows.append(row)
    return pd.DataFrame(rows).set_index(["target", "backbone"])
