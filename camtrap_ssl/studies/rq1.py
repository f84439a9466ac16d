"""RQ1 in the embedded world: when does SSL pretraining transfer better than SL, along axes we control.

The page "When does SSL transfer better?" (``notebooks/rq1_when.ipynb``) compares the supervised
backbone with SSL ones along five axes and states for which conditions the SSL - SL difference
(paired by seed, :func:`camtrap_ssl.studies.report.paired_differences`, one Holm-controlled family
over the page's distinct conditions, :func:`family`) excludes zero:

* **distance** (fine-tuning, the page's key comparisons): the domain-distance family
  ``syn_serengeti_d0`` .. ``d4`` (:func:`camtrap_ssl.data.synthetic.family_spec`), source-like
  frames to the Serengeti stand-in's settings, each run from its own pretraining seed (run *k* of a
  ``seeded_pretraining`` backbone starts from pretraining seed *k*), as many runs as the power
  design asks (``params.REPLICATES``);

the other four axes measure the frozen representations on the family's far end,
``syn_serengeti_d4`` (:data:`CAMTRAP_TARGET`), with a linear probe
(:mod:`camtrap_ssl.experiments.probing`: one forward pass per image, a deterministic logistic
regression), so that their seeds replicate the pretraining (and, below 100 % of the labels, which
images are labelled), not a fine-tuning run the book's budget cannot pay for:

* **labels**: a class-stratified share of the target's training labels (nested across shares);
* **domain**: SSL pretrained on unlabelled camera-trap frames of the world's training sites
  (``<method>.camtrap``) against SSL on the source world and SL on the source world;
* **budget**: the SSL backbones after 25 %, 50 % and 100 % of their pretraining epochs
  (``<method>.b25``...), against SL at its full budget;
* **view**: the whole frame or the animal's box (:mod:`camtrap_ssl.data.crops`).

Every function returns one row per run or probe (its directory or file recorded), so the page's
tables and plots are computed from recorded runs only.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from camtrap_ssl.core import intervals
from camtrap_ssl.core.progress import progress_bar
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
        "budget": "share of the SSL backbone's pretraining epochs",
        "view": "what the network sees: the whole frame or the animal's box"}
VIEW_NAMES = {"frame": "whole frame", "box": "animal crop"}
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


def probe_results(specs, progress: bool = False) -> pd.DataFrame:
    """One row per linear probe of ``specs`` (read where recorded, else computed and recorded;
    the features of one backbone, pretraining seed, target and view are extracted once)."""
    specs = list(specs)
    specs = progress_bar(specs, show=progress, desc="linear probes", unit="probe")
    return pd.DataFrame([probe_row(s, linear_probe_run(s)) for s in specs])


def label_results(backbones, fractions, seeds=(0, 1, 2), target: str = CAMTRAP_TARGET,
                  progress: bool = False, **common) -> pd.DataFrame:
    """The linear probe of every backbone at every label share (the same labelled images for
    every backbone of a seed, nested across shares)."""
    out = pd.concat([probe_results(grid_specs(backbones, [target], seeds, label_fraction=f, **common),
                                   progress) for f in fractions], ignore_index=True)
    out["condition"] = [f"{100 * f:g} % of labels" for f in out.label_fraction]
    return out


def domain_results(sl_backbone: str, ssl_methods, seeds=(0, 1, 2), target: str = CAMTRAP_TARGET,
                   progress: bool = False, **common) -> pd.DataFrame:
    """Linear probes of SL (source), each SSL method pretrained on the source world and on the
    camera-trap pool."""
    backbones = [sl_backbone] + [b for m in ssl_methods for b in (m, embedded_name(m, "camtrap"))]
    out = probe_results(grid_specs(backbones, [target], seeds, **common), progress)
    where = {"source": "the source world", "camtrap": "camera-trap frames",
             "imagenet": "ImageNet"}
    out["condition"] = [f"pretrained on {where[p]}" for p in out.pretrained_on]
    return out


def budget_results(sl_backbone: str, ssl_methods, budgets, seeds=(0, 1, 2),
                   target: str = CAMTRAP_TARGET, progress: bool = False, **common) -> pd.DataFrame:
    """Linear probes of each SSL method after ``budgets`` % of its pretraining epochs, against SL
    at its full one."""
    names = [embedded_name(m, budget=b) for m in ssl_methods for b in budgets]
    out = probe_results(grid_specs([sl_backbone] + names, [target], seeds, **common), progress)
    out["budget"] = out.budget_percent
    out["condition"] = [f"{b} % of pretraining" for b in out.budget]
    return out


def view_results(backbones, views=("frame", "box"), seeds=(0, 1, 2), target: str = CAMTRAP_TARGET,
                 progress: bool = False, **common) -> pd.DataFrame:
    """Linear probes of every backbone on the whole frames and on the animals' boxes
    (``view="box"``: padded square crops of the target's exact boxes cut from the original frames,
    :mod:`camtrap_ssl.data.crops`; empty frames have no box and are left out, the detector's
    question). Both views split the frames alike, so they are scored on the same sites; the
    frame view's probes are the other axes' shared ones. ``view`` and ``condition`` columns."""
    frames = [probe_results(grid_specs(backbones, [target], seeds, view=v, **common),
                            progress).assign(view=v) for v in views]
    out = pd.concat(frames, ignore_index=True)
    out["view_index"] = [list(VIEW_NAMES).index(v) for v in out.view]
    out["condition"] = [VIEW_NAMES[v] for v in out.view]
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


def family(diffs: pd.DataFrame, alpha: float = report.ALPHA) -> pd.DataFrame:
    """The page's family: every distinct comparison of its axes, once, controlled together.

    A comparison is identified by its SSL backbone, its baseline and the set of run directories
    (or probe files) on both sides: the far end of the distance axis at 100 % of the labels, with
    the source-pretrained, fully pretrained backbone, is the same runs on the distance, label,
    domain and budget axes, so it is one condition (its ``axis`` and ``condition`` name all the
    axes it appears on), not four. The rows are then adjusted as one family
    (:func:`camtrap_ssl.studies.report.adjust`: Holm's procedure on the paired t-tests of top-1,
    simultaneous Bonferroni intervals). Idempotent: a family passed again comes back unchanged.
    """
    if diffs.empty:
        return diffs.copy()
    key = (diffs.backbone.astype(str) + "|" + diffs.minus.astype(str) + "|"
           + diffs.run_dirs.astype(str))
    merged = []
    for _, g in diffs.groupby(key.to_numpy(), sort=False):
        row = g.iloc[0].copy()
        row["axis"] = " = ".join(dict.fromkeys(a for v in g.axis for a in str(v).split(" = ")))
        row["condition"] = " = ".join(dict.fromkeys(c for v in g.condition
                                                    for c in str(v).split(" = ")))
        merged.append(row)
    return report.adjust(pd.DataFrame(merged).reset_index(drop=True), ("top1",), alpha)


def _outcome(row) -> str:
    """Which side the Holm-adjusted test supports: SSL, SL, or neither (with the reason)."""
    n = len(str(row.seeds).split(","))
    if n < intervals.MIN_SEEDS_FOR_VERDICT:
        return f"cannot tell ({n} seeds)"
    if np.isnan(row.top1_p):
        return "cannot tell (no seed variance, e.g. a deterministic probe on all labels)"
    if row.top1_resolved > 0:
        return "SSL better"
    if row.top1_resolved < 0:
        return "SL better"
    return f"cannot tell (Holm-adjusted p = {row.top1_p_adjusted:.2f})"


INTERVAL_COLUMN = "top-1 SSL - SL, points [simultaneous interval]"


def answer_table(diffs: pd.DataFrame, alpha: float = report.ALPHA) -> pd.DataFrame:
    """One row per distinct condition of the page (:func:`family`): SSL - SL top-1 with its
    simultaneous interval, the Holm-adjusted p and the outcome of the adjusted test."""
    fam = family(diffs, alpha)
    if fam.empty:
        return pd.DataFrame(columns=["axis", "condition", "SSL backbone", "minus", "seeds", "claim",
                                     INTERVAL_COLUMN, "Holm-adjusted p", "outcome"])
    out = pd.DataFrame({
        "axis": fam.axis, "condition": fam.condition, "SSL backbone": fam.backbone,
        "minus": fam.minus, "seeds": fam.seeds, "claim": fam.get("claim", "-"),
        INTERVAL_COLUMN: [report.format_cell(r.top1_diff, r.top1_adj_low, r.top1_adj_high)
                          for r in fam.itertuples()],
        "Holm-adjusted p": [f"{p:.3f}" if pd.notna(p) else "-" for p in fam.top1_p_adjusted],
        "outcome": [_outcome(r) for r in fam.itertuples()]})
    return out.reset_index(drop=True)


# resolved conditions named in the sentences; beyond that many, the rest are counted
NAMED = 8


def _named(g: pd.DataFrame) -> str:
    items = [f"{r['SSL backbone']} at {r.condition} ({r[INTERVAL_COLUMN]})"
             for _, r in g.head(NAMED).iterrows()]
    more = len(g) - NAMED
    return "; ".join(items) + (f"; and {more} more (see the table)" if more > 0 else "")


def _seed_range(seeds: str) -> str:
    """``"0,1,2,3"`` as ``"0-3"`` where the seeds run without a gap, else as given."""
    k = [int(x) for x in seeds.split(",")]
    gapless = len(k) > 2 and k == list(range(k[0], k[-1] + 1))
    return f"{k[0]}-{k[-1]}" if gapless else ",".join(map(str, k))


def _seed_sets(seeds: pd.Series) -> str:
    """The seed sets of the conditions, each with how many conditions ran it: ``seeds 0-2 (5
    conditions), 0-8 (1 condition)``."""
    counts = {s: int(n) for s, n in seeds.value_counts().items()}
    order = sorted(counts, key=lambda s: (len(s.split(",")), s))
    named = [f"{_seed_range(s)} ({counts[s]} condition{'s' if counts[s] > 1 else ''})" for s in order]
    return "seeds " + ", ".join(named)


def answer_sentences(table: pd.DataFrame, alpha: float = report.ALPHA) -> str:
    """The answer in a few words (Markdown): how many of the page's distinct conditions favour
    SSL, SL or neither under the Holm-adjusted test, naming the resolved ones."""
    if table.empty:
        return "No SSL backbone was compared with SL, so there is nothing to state."
    n = len(table)
    ssl = table[table.outcome == "SSL better"]
    sl = table[table.outcome == "SL better"]
    neither = table[table.outcome.str.startswith("cannot tell")]
    untested = int((~neither.outcome.str.startswith("cannot tell (Holm")).sum())
    lines = [f"* **SSL better than SL** in {len(ssl)} of the {n} distinct conditions"
             + (f": {_named(ssl)}." if len(ssl) else "."),
             f"* **SL better than SSL** in {len(sl)} of the {n}"
             + (f": {_named(sl)}." if len(sl) else "."),
             f"* **Cannot tell** in {len(neither)} of the {n}"
             + (f" ({untested} of them with too few seeds or no seed variance to test)"
                if untested else "") + "."]
    level = 100 * (1 - alpha / n)
    lines.append(
        f"\n(Top-1 differences in points, SSL minus {table.minus.iloc[0]}, paired by run over "
        f"{_seed_sets(table.seeds)}. The family is the page's {n} distinct conditions, a "
        f"run shared by several axes counted once, controlled by Holm's step-down procedure "
        f"(Holm 1979) on the paired t-tests at family-wise alpha = {alpha:g}; the intervals are "
        f"simultaneous Bonferroni t-intervals at {level:.3g} % each. A row whose claim is "
        "*method* runs each side from its own pretraining seed per run, so its interval covers "
        "pretraining variance as well as fine-tuning variance (and, below 100 % of the labels, "
        "which images were labelled); a *checkpoint* row has one pretraining run on a side.)")
    return "\n".join(lines)


def answer_figure(diffs: pd.DataFrame, alpha: float = report.ALPHA):
    """RQ1's answer at a glance: one row per distinct condition (:func:`family`), SSL - SL top-1
    with its simultaneous interval as an error bar, colour and marker by the adjusted outcome."""
    fam = family(diffs, alpha)
    if fam.empty:
        raise ValueError("no SSL - SL comparison to draw")
    m = len(fam)
    resolved = [r.top1_resolved if _outcome(r) in ("SSL better", "SL better") else 0
                for r in fam.itertuples()]
    return report.interval_figure(
        [f"{b}: {c}" for b, c in zip(fam.backbone, fam.condition)], fam.top1_diff,
        fam.top1_adj_low, fam.top1_adj_high, resolved,
        f"RQ1: {m} distinct conditions, Holm at family-wise alpha {alpha:g}; "
        f"simultaneous {100 * (1 - alpha / m):.3g} % intervals",
        f"top-1 SSL minus {fam.minus.iloc[0]}, points",
        names={1: "SSL better", -1: "SL better"})


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
