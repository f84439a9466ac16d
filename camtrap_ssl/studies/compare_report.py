"""What a comparison report shows: the answer in words, two figures and the tables, for the
report notebook (``notebooks/compare_report.ipynb``) and the book's page on the embedded world.

Every number comes from the files :func:`camtrap_ssl.experiments.compare.run_compare` wrote
(``runs.csv``, ``predictions.npz``) through :mod:`camtrap_ssl.experiments.compare_stats`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from camtrap_ssl.experiments import compare_stats

COLORS = {"better": "tab:green", "worse": "tab:red", "cannot tell": "tab:gray"}
NAMES = {"top1": "top-1 (%)", "macro_f1": "macro-F1 (%)", "balanced_acc": "balanced accuracy (%)"}

__all__ = ["answer_markdown", "plot_differences", "plot_shares", "report_tables", "runs_table"]


def report_tables(runs_csv, metric: str = "top1", alpha: float = 0.05):
    """``(runs, summary, comparisons)`` of the report whose ``runs.csv`` is given."""
    folder = Path(runs_csv).parent
    runs, preds = compare_stats.load_report(folder)
    return (runs, compare_stats.summarise(runs, preds),
            compare_stats.comparisons(runs, preds, metric, alpha))


def _share(f: float) -> str:
    return "all labels" if f == 1 else f"{100 * f:g} % of the labels"


def answer_markdown(summary: pd.DataFrame, comparisons: pd.DataFrame, metric: str = "top1") -> str:
    """The answer in sentences: the best backbone per protocol and share, and every verdict the
    family supports (the rest: the data cannot tell)."""
    name = NAMES[metric]
    lines = ["**Best mean per protocol and label share** (" + name + "; a higher mean is not a "
             "verdict, the comparisons below are):", ""]
    for (protocol, share), g in summary.groupby(["protocol", "label_fraction"], sort=False):
        best = g.loc[g[metric].idxmax()]
        lines.append(f"* {protocol}, {_share(share)}: **{best['backbone']}** "
                     f"({best['paradigm']}), {best[metric]:.1f} "
                     f"[{best[metric + '_low']:.1f}, {best[metric + '_high']:.1f}]")
    lines.append("")
    if comparisons.empty:
        lines.append("No SSL backbone has an SL partner of its architecture in this report, so "
                     "nothing is compared.")
        return "\n".join(lines)
    decided = comparisons[comparisons["verdict"] != "cannot tell"]
    lines.append(f"**SSL against SL** ({len(comparisons)} comparisons, "
                 f"{len(decided)} decided; {comparisons['family'].iloc[0]}):")
    lines.append("")
    for _, r in decided.iterrows():
        lines.append(f"* **{r['backbone']} {r['verdict']} than {r['reference']}** with "
                     f"{r['protocol']} at {_share(r['label_fraction'])}: "
                     f"{r['difference']:+.1f} points [{r['low']:+.1f}, {r['high']:+.1f}], "
                     f"Holm-adjusted p = {r['p_holm']:.3g}")
    if decided.empty:
        lines.append("* The data cannot tell any SSL backbone from its SL partner: no adjusted "
                     "test rejects. More validation images or seeds would narrow the intervals.")
    else:
        lines.append(f"* The other {len(comparisons) - len(decided)} comparisons: the data cannot "
                     "tell.")
    return "\n".join(lines)


def plot_shares(summary: pd.DataFrame, metric: str = "top1"):
    """One panel per protocol: each backbone's mean and 95 % interval against the label share
    (log axis); SL backbones drawn dashed."""
    import matplotlib.pyplot as plt

    protocols = list(dict.fromkeys(summary["protocol"]))
    fig, axes = plt.subplots(1, len(protocols), figsize=(4.8 * len(protocols), 3.8),
                             squeeze=False, sharey=True)
    for ax, protocol in zip(axes[0], protocols):
        g = summary[summary["protocol"] == protocol]
        for b, gb in g.groupby("backbone", sort=False):
            gb = gb.sort_values("label_fraction")
            x, y = gb["label_fraction"].to_numpy(), gb[metric].to_numpy()
            err = np.nan_to_num(np.vstack([y - gb[metric + "_low"], gb[metric + "_high"] - y]))
            ax.errorbar(x, y, yerr=np.clip(err, 0, None), marker="o", capsize=3, label=b,
                        linestyle="--" if gb["paradigm"].iloc[0] == "SL" else "-")
        ax.set_xscale("log")
        ax.set_xticks(sorted(g["label_fraction"].unique()))
        ax.set_xticklabels([f"{f:g}" for f in sorted(g["label_fraction"].unique())])
        ax.set_xlabel("share of the training labels")
        ax.set_title(protocol)
    axes[0][0].set_ylabel(NAMES[metric] + ", mean and 95 % interval")
    axes[0][-1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def plot_differences(comparisons: pd.DataFrame):
    """Each SSL backbone minus its SL partner with its simultaneous interval, coloured by the
    Holm verdict (green better, red worse, grey cannot tell)."""
    import matplotlib.pyplot as plt

    c = comparisons.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(c) + 1.4))
    for i, r in c.iterrows():
        ax.errorbar(r["difference"], i, xerr=[[max(0, r["difference"] - r["low"])],
                                               [max(0, r["high"] - r["difference"])]],
                    fmt="o", color=COLORS[r["verdict"]], capsize=3)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(c)))
    ax.set_yticklabels([f"{r['backbone']} - {r['reference']}, {r['protocol']}, "
                        f"{r['label_fraction']:g}" for _, r in c.iterrows()], fontsize=8)
    ax.invert_yaxis()
    metric = c["metric"].iloc[0] if len(c) else "top1"
    level = c["level"].iloc[0] if len(c) else 0.95
    ax.set_xlabel(f"difference in {NAMES[metric]} (SSL - SL), {100 * level:.2f} % "
                  "simultaneous interval")
    fig.tight_layout()
    return fig


def runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with their provenance, rounded for display: ``source`` is shown by its file (or
    run folder) name; ``runs.csv`` keeps the full path."""
    cols = ["backbone", "paradigm", "protocol", "label_fraction", "knn_k", "seed", "n_labelled",
            "top1", "macro_f1", "balanced_acc", "source", "code_version"]
    out = runs[cols].round(2)
    out["source"] = [Path(str(s)).name for s in out.source]
    return out


def sequence_table(runs: pd.DataFrame):
    """Frame and sequence top-1 per backbone, protocol and share, mean over seeds; a sentence
    instead where the target has no sequences (the measure says so rather than failing)."""
    if "seq_top1" not in runs or runs.seq_top1.notna().sum() == 0:
        return "This target has no sequences (no seq_id or event): sequence-level scores do not apply."
    g = runs.groupby(["backbone", "protocol", "label_fraction"], sort=False)
    return g[["top1", "seq_top1"]].mean().round(1).rename(
        columns={"top1": "frame top-1 %", "seq_top1": "sequence top-1 %"})
