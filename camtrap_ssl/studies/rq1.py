"""RQ1 in the embedded world: when does SSL pretraining transfer better than SL, along axes we control.

The page "When does SSL transfer better?" (``notebooks/rq1_when.ipynb``) fine-tunes the supervised
backbone against SSL ones along four axes, each point over several fine-tuning seeds, and states
for which conditions the SSL - SL difference (paired by seed, 95 % t-interval,
:func:`camtrap_ssl.studies.report.paired_differences`) excludes zero:

* **distance**: the domain-distance family ``syn_serengeti_d0`` .. ``d4``
  (:func:`camtrap_ssl.data.synthetic.family_spec`), source-like frames to the Serengeti stand-in's
  settings; the other three axes fine-tune on its far end, ``syn_serengeti_d4``
  (:data:`CAMTRAP_TARGET`);
* **labels**: a class-stratified share of the camera-trap target's labels (nested across shares,
  drawn per seed), full fine-tuning and a linear probe on frozen features
  (:mod:`camtrap_ssl.experiments.probing`);
* **domain**: SSL pretrained on unlabelled camera-trap frames of the world's training sites
  (``<method>.camtrap``) against SSL on the source world and SL on the source world;
* **budget**: the SSL backbones after 25 %, 50 % and 100 % of their pretraining epochs
  (``<method>.b25``...), against SL at its full budget.

Every function returns one row per run (the run's directory or probe file recorded), so the
page's tables and plots are computed from recorded runs only.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from camtrap_ssl.core import intervals
from camtrap_ssl.data.embedded import FAMILY_TARGETS
from camtrap_ssl.data.synthetic import FAMILY_STEPS
from camtrap_ssl.experiments.backbones import describe_backbone, embedded_name
from camtrap_ssl.experiments.probing import linear_probe_run
from camtrap_ssl.experiments.results import probe_row
from camtrap_ssl.experiments.spec import grid_specs
from camtrap_ssl.studies import report

AXES = {"distance": "domain distance (0: source-like, 4: the Serengeti stand-in)",
        "labels": "share of the target's training labels",
        "domain": "what the SSL backbone was pretrained on",
        "budget": "share of the SSL backbone's pretraining epochs"}
# The label, domain and budget axes fine-tune on the far end of the family: the Serengeti
# stand-in's generator settings at the family's size (profile.family_images), so that its full-label,
# full-budget runs are the distance axis' runs at distance 4 and the page fits the book's budget.
CAMTRAP_TARGET = FAMILY_TARGETS[-1]


def distance_results(backbones, distances, seeds=(0, 1, 2), progress: bool = False,
                     **common) -> pd.DataFrame:
    """Fine-tune every backbone on every distance of the family; ``distance`` column added.
    ``common``: any other :class:`~camtrap_ssl.experiments.spec.RunSpec` field (profile, epochs,
    runs_root, ...), passed to every run unchanged."""
    targets = [FAMILY_TARGETS[d] for d in distances]
    out = report.collect(grid_specs(backbones, targets, seeds, **common), progress=progress)
    out["distance"] = out.target.map({t: int(t[-1]) for t in targets})
    out["condition"] = [f"distance {d}" for d in out.distance]
    return out


def label_results(backbones, fractions, seeds=(0, 1, 2), target: str = CAMTRAP_TARGET,
                  progress: bool = False, **common) -> pd.DataFrame:
    """Full fine-tuning and the linear probe of every backbone at every label share."""
    frames = []
    for f in fractions:
        specs = grid_specs(backbones, [target], seeds, label_fraction=f, **common)
        frames.append(report.collect(specs, progress=progress))
        frames.append(pd.DataFrame([probe_row(s, linear_probe_run(s)) for s in specs]))
    out = pd.concat(frames, ignore_index=True)
    out["condition"] = [f"{m}, {100 * f:g} % of labels" for m, f in zip(out["mode"], out.label_fraction)]
    return out


def domain_results(sl_backbone: str, ssl_methods, seeds=(0, 1, 2), target: str = CAMTRAP_TARGET,
                   progress: bool = False, **common) -> pd.DataFrame:
    """SL (source), each SSL method pretrained on the source world and on the camera-trap pool."""
    backbones = [sl_backbone] + [b for m in ssl_methods for b in (m, embedded_name(m, "camtrap"))]
    out = report.collect(grid_specs(backbones, [target], seeds, **common), progress=progress)
    where = {"source": "the source world", "camtrap": "camera-trap frames",
             "imagenet": "ImageNet"}
    out["condition"] = [f"pretrained on {where[p]}" for p in out.pretrained_on]
    return out


def budget_results(sl_backbone: str, ssl_methods, budgets, seeds=(0, 1, 2),
                   target: str = CAMTRAP_TARGET, progress: bool = False, **common) -> pd.DataFrame:
    """Each SSL method after ``budgets`` % of its pretraining epochs, against SL at its full one."""
    names = [embedded_name(m, budget=b) for m in ssl_methods for b in budgets]
    out = report.collect(grid_specs([sl_backbone] + names, [target], seeds, **common),
                         progress=progress)
    out["budget"] = out.budget_percent
    out["condition"] = [f"{b} % of pretraining" for b in out.budget]
    return out


def differences(results: pd.DataFrame, axis: str, baseline: str) -> pd.DataFrame:
    """SSL - SL per condition of an axis, paired by seed; the SSL method named on every row."""
    if axis not in AXES:
        raise ValueError(f"axis={axis!r}; allowed: {list(AXES)}")
    if axis in ("domain", "budget"):  # one target: every backbone is its own condition
        d = report.paired_differences(results, baseline)
        d["condition"] = [results.loc[results.backbone == b, "condition"].iloc[0] for b in d.backbone]
    else:
        d = report.paired_differences(results, baseline, by=("condition",))
    d["method"] = [describe_backbone(b)["method"] for b in d.backbone]
    d["axis"] = axis
    return d


def _outcome(row) -> str:
    """Which side the interval supports: SSL, SL, or neither (with the reason)."""
    n = len(str(row.seeds).split(","))
    if n < intervals.MIN_SEEDS_FOR_VERDICT:
        return f"cannot tell ({n} seeds)"
    if row.top1_low == row.top1_high:
        return "cannot tell (no seed variance: a deterministic probe on all labels)"
    if row.top1_low > 0:
        return "SSL better"
    if row.top1_high < 0:
        return "SL better"
    return "cannot tell (interval includes 0)"


def answer_table(diffs: pd.DataFrame) -> pd.DataFrame:
    """One row per axis, condition and SSL backbone: SSL - SL top-1 [95 % interval] and outcome."""
    out = pd.DataFrame({
        "axis": diffs.axis, "condition": diffs.condition, "SSL backbone": diffs.backbone,
        "minus": diffs.minus, "seeds": diffs.seeds,
        "top-1 SSL - SL, points [95 % t-interval]": [
            report.format_cell(r.top1_diff, r.top1_low, r.top1_high) for r in diffs.itertuples()],
        "outcome": [_outcome(r) for r in diffs.itertuples()]})
    return out.reset_index(drop=True)


def answer_sentences(table: pd.DataFrame) -> str:
    """The answer in words (Markdown bullets), one per outcome, each listing its conditions."""
    if table.empty:
        return "No SSL backbone was compared with SL, so there is nothing to state."
    lines = []
    for outcome, title in (("SSL better", "SSL beat SL (interval above 0)"),
                           ("SL better", "SL beat SSL (interval below 0)"),
                           ("cannot tell", "The data cannot tell")):
        g = table[table.outcome.str.startswith(outcome)]
        if g.empty:
            lines.append(f"* **{title}:** in no condition tested.")
            continue
        items = [f"{r['SSL backbone']} at {r.condition} ({r['top-1 SSL - SL, points [95 % t-interval]']})"
                 for _, r in g.iterrows()]
        lines.append(f"* **{title}:** " + "; ".join(items) + ".")
    seeds = sorted(set(table.seeds))
    lines.append(f"\n(Top-1 differences in points, SSL minus {table.minus.iloc[0]}, paired by "
                 f"fine-tuning seed over seeds {', '.join(seeds)}; the interval is a 95 % Student-t "
                 "interval and covers fine-tuning variance and, below 100 % of the labels, which "
                 "images were labelled; not pretraining variance: each backbone is one pretraining "
                 "run.)")
    return "\n".join(lines)


def plot_axis(results: pd.DataFrame, diffs: pd.DataFrame, axis: str, x: str, xlabel: str,
              ax_top=None, ax_diff=None):
    """Top-1 per backbone (mean and interval band over seeds) and SSL - SL with its interval,
    against the axis' numeric variable ``x``; returns the figure."""
    import matplotlib.pyplot as plt

    if ax_top is None:
        fig, (ax_top, ax_diff) = plt.subplots(1, 2, figsize=(10, 3.4))
    else:
        fig = ax_top.figure
    for backbone, g in results.groupby("backbone", sort=False):
        m = g.groupby(x).top1.agg(list)
        xs = np.array(m.index, dtype=float)
        iv = [intervals.t_interval(v) for v in m]
        ax_top.plot(xs, [i.mean for i in iv], marker="o", label=backbone)
        ax_top.fill_between(xs, np.clip([i.low for i in iv], 0, 100),
                            np.clip([i.high for i in iv], 0, 100), alpha=0.2)
    ax_top.set(xlabel=xlabel, ylabel="validation top-1 %", ylim=(0, 100))
    ax_top.legend(fontsize=8)
    for backbone, g in diffs.groupby("backbone", sort=False):
        xs = np.array([results.loc[results.condition == c, x].iloc[0] for c in g.condition], float)
        ax_diff.errorbar(xs, g.top1_diff, yerr=[g.top1_diff - g.top1_low, g.top1_high - g.top1_diff],
                         marker="o", capsize=3, label=f"{backbone} - {g.minus.iloc[0]}")
    ax_diff.axhline(0, color="k", lw=0.8)
    ax_diff.set(xlabel=xlabel, ylabel="top-1 SSL - SL, points")
    ax_diff.legend(fontsize=8)
    fig.tight_layout()
    return fig


def family_description() -> pd.DataFrame:
    """What each distance of the family switches on (for the page's first table)."""
    rows = [{"distance": 0, "target": FAMILY_TARGETS[0], "adds": "source-like: large centred still "
             "animals on the source's backgrounds, daylight"}]
    rows += [{"distance": k + 1, "target": FAMILY_TARGETS[k + 1], "adds": step}
             for k, step in enumerate(FAMILY_STEPS)]
    return pd.DataFrame(rows).set_index("distance")
