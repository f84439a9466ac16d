"""Studies 1 and 2: collect fine-tuning runs over seeds into tables and plots beside the study's.

Every row carries the run directories and the code version that produced it (showyourwork), and
the protocol: which pretraining, which fine-tuning settings, which split, which seeds, which
evaluation crop; the book shows only numbers a recorded run wrote, and a reader never has to
guess whether a number is a linear probe or a full fine-tune.

Intervals (:mod:`camtrap_ssl.core.intervals`) are 95 % Student-t intervals over fine-tuning
seeds: each shipped backbone is a single pretraining run, so they cover fine-tuning variance (head
initialisation, data order, augmentation) and not pretraining variance. SSL - SL differences are
paired by seed, and the comparisons of a table are one family (:mod:`.multiplicity`): Holm's
procedure decides the verdicts, simultaneous Bonferroni intervals show them, and
:func:`resolution` says what difference the design can resolve at all.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from camtrap_ssl.core import intervals
from camtrap_ssl.data.targets import stands_in_for
from camtrap_ssl.experiments.finetuning import finetune_run
from camtrap_ssl.experiments.parallel import train_in_workers
from camtrap_ssl.experiments.results import METRICS, PROTOCOL_COLUMNS, run_row
from camtrap_ssl.studies import reference
from camtrap_ssl.studies.multiplicity import (  # noqa: F401  (the pages call them as report.*)
    ALPHA,
    OUTCOME_STYLE,
    POWER,
    adjust,
    interval_figure,
    mean_resolution,
    resolution,
)
from camtrap_ssl.train import metrics as M
from camtrap_ssl.train import rundir

LABELS = {"top1": "top-1 %", "top5": "top-5 %", "macro_f1": "macro-F1 %",
          "balanced_acc": "balanced acc %", "tail_top1": "tail top-1 %",
          "empty_acc": "empty-vs-animal %", "ece": "ECE % (15 bins)",
          "convergence_epoch": "convergence epoch (own best)",
          "epochs_to_common": "epochs to common threshold"}
INTERVAL = "mean [95 % t-interval over fine-tuning seeds]"
# The share of the best final top-1 on a target that every backbone is asked to reach.
COMMON_SHARE = 0.95


def collect(specs, progress: bool = True, workers: int | None = None) -> pd.DataFrame:
    """Run (or reuse) every spec's fine-tune; one :func:`~camtrap_ssl.experiments.results.run_row`
    per run, with the common-threshold convergence added. Build the specs with
    :func:`~camtrap_ssl.experiments.spec.grid_specs` (backbones x targets x seeds, any other
    field in common).

    ``workers`` (None: :func:`~camtrap_ssl.experiments.parallel.run_workers`): the unfinished runs
    are first trained in that many one-thread processes side by side
    (:func:`~camtrap_ssl.experiments.parallel.train_in_workers`), then every run is read in order
    here; a run is the same run either way (its directory, its seeds), only the time differs."""
    specs = list(specs)
    train_in_workers(specs, workers)
    rows = []
    for spec in specs:
        summary, rd = finetune_run(spec, progress=progress)
        rows.append(run_row(spec, summary, rd))
    return with_common_convergence(pd.DataFrame(rows))


def with_common_convergence(results: pd.DataFrame, share: float = COMMON_SHARE) -> pd.DataFrame:
    """Add ``common_threshold`` and ``epochs_to_common`` (NaN: not reached) to every run.

    The threshold of a target is ``share`` of the best seed-mean final top-1 among its backbones,
    so every backbone is asked to reach the same accuracy; a run's own-best convergence epoch
    favours runs that plateau low. The epochs are read from each run's per-epoch monitor top-1
    (the validation subset every epoch scores, :func:`camtrap_ssl.train.metrics.monitor_curve`).
    """
    out = results.copy()
    means = out.groupby(["target", "backbone"]).top1.mean()
    thr = {t: M.common_threshold(m.values, share) for t, m in means.groupby(level="target")}
    out["common_threshold"] = out.target.map(thr)
    out["epochs_to_common"] = [
        M.epochs_to_reach(M.monitor_curve(rundir.RunDir(r.run_dir).metrics()), r.common_threshold)
        for r in out.itertuples()]
    out["epochs_to_common"] = out.epochs_to_common.astype(float)  # None -> NaN: not reached
    return out


# the per-run columns that Study 1/2 tables average over seeds
SEED_COLUMNS = (*METRICS.values(), "convergence_epoch")


def aggregate(results: pd.DataFrame, columns=SEED_COLUMNS) -> pd.DataFrame:
    """One row per (target, backbone): mean and 95 % t-interval over seeds of each column.

    Columns ``<c>``, ``<c>_low``, ``<c>_high``; a column with no value (no tail, no empty class)
    stays NaN. ``epochs_to_common`` is averaged over the seeds that reached the threshold, with
    ``reached`` counting them; the protocol columns are the runs' (identical across seeds).
    """
    rows = []
    for (target, backbone), g in results.groupby(["target", "backbone"], sort=False):
        row = {"target": target, "backbone": backbone,
               **g.iloc[0][["stands_in_for", "method", "paradigm", "family"]].to_dict(),
               "seeds": ",".join(str(s) for s in sorted(g.seed)), "n_seeds": len(g)}
        for c in columns:
            v = g[c].dropna()
            iv = intervals.t_interval(v) if len(v) else None
            row.update({c: iv.mean if iv else np.nan, f"{c}_low": iv.low if iv else np.nan,
                        f"{c}_high": iv.high if iv else np.nan})
        if "epochs_to_common" in g:
            reached = g.epochs_to_common.dropna()
            row.update({"common_threshold": g.common_threshold.iloc[0],
                        "epochs_to_common": reached.mean() if len(reached) else np.nan,
                        "reached": f"{len(reached)}/{len(g)}"})
        for c in PROTOCOL_COLUMNS:
            row[c] = " | ".join(sorted(set(map(str, g[c]))))
        row["run_dirs"] = " ".join(g.run_dir)
        rows.append(row)
    return pd.DataFrame(rows)


def format_cell(mean, low, high, digits: int = 1) -> str:
    """``mean [low, high]`` as the book prints an estimate with its interval (``-`` for none)."""
    if pd.isna(mean):
        return "-"
    if pd.isna(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _protocol_text(r) -> str:
    return (f"pretraining: {r['pretraining']}; fine-tuning: {r['fine-tuning']}; "
            f"split: {r['split']}; eval crop: {r['eval crop']}; seeds {r['seeds']}")


def results_table(results: pd.DataFrame) -> pd.DataFrame:
    """The book's table: one row per target and backbone, every metric as mean [95 % interval],
    the study's ResNet-50 numbers beside, and the protocol that produced the row."""
    a = aggregate(results)
    out = pd.DataFrame({"target": a.target, "backbone": a.backbone, "paradigm": a.paradigm})
    for c in SEED_COLUMNS:
        out[LABELS[c]] = [format_cell(r[c], r[f"{c}_low"], r[f"{c}_high"]) for _, r in a.iterrows()]
    out[LABELS["epochs_to_common"]] = [
        "not reached" if pd.isna(r.epochs_to_common) else f"{r.epochs_to_common:.1f} ({r.reached} seeds)"
        for r in a.itertuples()]
    study = [reference.study_row(r.stands_in_for, r.method) for r in a.itertuples()]
    out["study_top1_r50"] = [s["top1"] if s else np.nan for s in study]
    out["study_top5_r50"] = [s["top5"] if s else np.nan for s in study]
    out["study_convergence"] = [reference.study_convergence(r.stands_in_for, r.method) or np.nan
                                for r in a.itertuples()]
    out["protocol"] = [_protocol_text(r) for _, r in a.iterrows()]
    out.columns = [f"{c}: {INTERVAL}" if c == LABELS["top1"] else c for c in out.columns]
    return out.set_index(["target", "backbone"])


def sl_baseline(results: pd.DataFrame, baseline: str | None = None) -> str:
    """``baseline``, else the supervised backbone of ``results``: ``supervised`` (the embedded
    world's) or the first SL one (``supervised_r50`` at paper scale)."""
    if baseline is not None:
        return baseline
    names = list(dict.fromkeys(results.backbone))
    sl = [b for b in names if b == "supervised"] or \
        list(dict.fromkeys(results[results.paradigm == "SL"].backbone))
    return sl[0] if sl else "supervised"


def pretraining_seeds(runs: pd.DataFrame) -> list[int]:
    """The distinct pretraining seeds of some runs (0 for rows that do not record one)."""
    seeds = runs["pretrain_seed"] if "pretrain_seed" in runs else pd.Series(0, index=runs.index)
    return sorted({int(s) for s in seeds.fillna(0)})


def _claim(side: pd.DataFrame, base: pd.DataFrame, backbone: str, baseline: str) -> dict:
    """What a comparison's interval covers, and the pool its seed-to-seed sd is shared with.

    ``claim``: ``method`` where both sides ran from two or more pretraining seeds (run ``k`` from
    pretraining seed ``k``: the interval covers pretraining and fine-tuning variance, a claim
    about the methods), else ``checkpoint`` (a side that always starts from one pretraining run:
    the claim is about that checkpoint). ``pool``: comparisons scored on the same validation
    images with the same training (target, labels, view, mode) and of the same claim share their
    seed-to-seed sd (:func:`camtrap_ssl.studies.multiplicity.adjust`)."""
    a, b = pretraining_seeds(side), pretraining_seeds(base)
    claim = "method" if len(a) >= 2 and len(b) >= 2 else "checkpoint"
    if claim == "method":
        covers = (f"pretraining and fine-tuning variance ({len(a)} pretraining seeds of "
                  f"{backbone}, {len(b)} of {baseline})")
    else:
        one = [name for name, s in ((backbone, a), (baseline, b)) if len(s) < 2]
        covers = (f"fine-tuning variance; one checkpoint of {' and of '.join(one)} (pretraining "
                  f"seed {', '.join(str((a if n == backbone else b)[0]) for n in one)}): a claim "
                  "about that checkpoint, not its method")
    first = side.iloc[0]
    pool = "|".join(str(first.get(c, "")) for c in ("target", "label_fraction", "view", "mode"))
    return {"pretrain_seeds": ",".join(map(str, a)), "claim": claim, "covers": covers,
            "pool": f"{pool}|{claim}"}


def paired_differences(results: pd.DataFrame, baseline: str | None = None,
                       metrics=("top1", "macro_f1"), by=("target",),
                       alpha: float = ALPHA) -> pd.DataFrame:
    """Each backbone minus ``baseline`` (default :func:`sl_baseline`) per target (or per
    condition ``by``: columns whose values together name one comparison), paired by seed.

    Per metric ``m``: ``m_seed_diffs`` (the per-seed differences), ``m_diff`` with its
    per-comparison 95 % t-interval ``m_low``/``m_high`` and ``m_verdict_unadjusted`` (for
    reference), and the family's columns of :func:`adjust`: the rows of the returned table are one
    family per metric, controlled by Holm's procedure, and ``m_verdict`` comes from that adjusted
    test. ``run_dirs`` lists both sides' runs (what identifies a comparison shared by two tables).
    """
    baseline = sl_baseline(results, baseline)
    rows = []
    by = list(by)
    for key, g in results.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        target = g.target.iloc[0]
        base = g[g.backbone == baseline].set_index("seed")
        for backbone, h in g[g.backbone != baseline].groupby("backbone", sort=False):
            h = h.set_index("seed")
            seeds = sorted(set(h.index) & set(base.index))
            if not seeds:
                continue
            row = {**dict(zip(by, key)), "target": target,
                   "stands_in_for": h.stands_in_for.iloc[0], "backbone": backbone,
                   "paradigm": h.paradigm.iloc[0], "family": h.family.iloc[0],
                   "minus": baseline, "seeds": ",".join(map(str, seeds)),
                   **_claim(h.loc[seeds], base.loc[seeds], backbone, baseline)}
            for m in metrics:
                d = (h.loc[seeds, m].astype(float) - base.loc[seeds, m].astype(float)).to_numpy()
                d = d[~np.isnan(d)]  # a metric a run could not score (no tail class) pairs nothing
                row[f"{m}_seed_diffs"] = tuple(float(x) for x in d)
                if d.size:
                    iv = intervals.t_interval(d)
                    row.update({f"{m}_diff": iv.mean, f"{m}_low": iv.low, f"{m}_high": iv.high,
                                f"{m}_verdict_unadjusted": intervals.verdict(iv, backbone, baseline)})
                else:
                    row.update({f"{m}_diff": np.nan, f"{m}_low": np.nan, f"{m}_high": np.nan,
                                f"{m}_verdict_unadjusted": "no values"})
            if "run_dir" in h:
                row["run_dirs"] = " ".join(sorted(map(str, h.loc[seeds, "run_dir"]))
                                           + sorted(map(str, base.loc[seeds, "run_dir"])))
            rows.append(row)
    return adjust(pd.DataFrame(rows), metrics, alpha)


def family_text(diffs: pd.DataFrame, metric: str = "top1", alpha: float = ALPHA) -> str:
    """One sentence naming the family of ``diffs`` and how it is controlled."""
    m = len(diffs)
    return (f"The family is the {m} {LABELS.get(metric, metric)} comparison{'s' * (m != 1)} of this "
            f"table, controlled together by Holm's step-down procedure (Holm 1979) on the paired "
            f"t-tests at family-wise alpha = {alpha:g}; the intervals shown are simultaneous "
            f"Bonferroni t-intervals at {100 * (1 - alpha / max(m, 1)):.3g} % each, so that all "
            f"{m} cover their true differences together with probability at least "
            f"{100 * (1 - alpha):g} %.")


def differences_table(results: pd.DataFrame, baseline: str | None = None,
                      alpha: float = ALPHA) -> pd.DataFrame:
    """:func:`paired_differences` for display: difference [simultaneous interval, paired by seed],
    the Holm-adjusted p and the adjusted verdict, one family per metric (:func:`family_text`)."""
    baseline = sl_baseline(results, baseline)
    d = paired_differences(results, baseline, alpha=alpha)
    if d.empty:  # no backbone beside the baseline, or no baseline run: nothing to pair
        return pd.DataFrame(columns=["target", "backbone", "seeds"]).set_index(["target", "backbone"])
    out = pd.DataFrame({"target": d.target, "backbone": d.backbone, "seeds": d.seeds})
    level = 100 * d.top1_level.iloc[0]
    for m in ("top1", "macro_f1"):
        out[f"{LABELS[m]} minus {baseline} [simultaneous {level:.3g} % interval]"] = [
            format_cell(r[f"{m}_diff"], r[f"{m}_adj_low"], r[f"{m}_adj_high"]) for _, r in d.iterrows()]
        out[f"Holm-adjusted p ({LABELS[m]})"] = [f"{p:.3f}" if pd.notna(p) else "-"
                                                 for p in d[f"{m}_p_adjusted"]]
        out[f"verdict ({LABELS[m]})"] = d[f"{m}_verdict"]
    proto = {(r.target, r.backbone): _protocol_text(r) for _, r in aggregate(results).iterrows()}
    out["claim"] = d.claim.to_numpy()
    out["pretraining seeds"] = d.pretrain_seeds.to_numpy()
    out["protocol"] = [f"{proto[(t, b)]} (vs {baseline}: {proto[(t, baseline)].split('; ')[0]})"
                       for t, b in zip(d.target, d.backbone)]
    return out.set_index(["target", "backbone"])


def verdict_text(results: pd.DataFrame, baseline: str | None = None, alpha: float = ALPHA) -> str:
    """The book's sentences on SSL against SL, written from the Holm-adjusted paired tests of
    top-1 (Markdown): the family, then per target the backbones resolved either way."""
    baseline = sl_baseline(results, baseline)
    d = paired_differences(results, baseline, alpha=alpha)
    if d.empty:
        return f"No backbone other than {baseline} ran, so there is no comparison to state."
    n_better, n_worse = int((d.top1_resolved > 0).sum()), int((d.top1_resolved < 0).sum())
    lines = [f"Of the {len(d)} top-1 comparisons with {baseline} (every backbone on every target), "
             f"{n_better} {'is' if n_better == 1 else 'are'} resolved in the backbone's favour, "
             f"{n_worse} in {baseline}'s and {len(d) - n_better - n_worse} not at all. "
             + family_text(d, "top1", alpha), ""]
    for target, g in d.groupby("target", sort=False):
        wins = g[g.top1_resolved > 0].backbone.tolist()
        losses = g[g.top1_resolved < 0].backbone.tolist()
        even = g[g.top1_resolved == 0].backbone.tolist()
        parts = []
        if wins:
            parts.append(f"better than {baseline}: {', '.join(wins)}")
        if losses:
            parts.append(f"worse: {', '.join(losses)}")
        if even:
            parts.append(f"no difference the adjusted test can resolve: {', '.join(even)}")
        if len(g.seeds.iloc[0].split(",")) < intervals.MIN_SEEDS_FOR_VERDICT:
            parts = [f"undecided, fewer than {intervals.MIN_SEEDS_FOR_VERDICT} seeds"]
        lines.append(f"* **{target}** (stands in for {g.stands_in_for.iloc[0]}), top-1 paired by "
                     f"seed over seeds {g.seeds.iloc[0]}: " + "; ".join(parts) + ".")
    lines.append("\n" + claims_text(d))
    return "\n".join(lines)


def claims_text(d: pd.DataFrame) -> str:
    """Which comparisons of ``d`` (:func:`paired_differences`) are claims about methods and which
    about one checkpoint, and which variance their intervals cover (Markdown)."""
    method = d[d.claim == "method"]
    ckpt = d[d.claim != "method"]
    parts = []
    if len(method):
        names = ", ".join(dict.fromkeys(method.backbone))
        parts.append(f"**Claims about methods** ({len(method)} comparison"
                     f"{'s' * (len(method) != 1)}: {names} against {method.minus.iloc[0]}): run "
                     "*k* of each side starts from pretraining seed *k*, so the intervals and "
                     "tests cover pretraining and fine-tuning variance (seeds: pretraining run, "
                     "head initialisation, data order, augmentation).")
    if len(ckpt):
        names = ", ".join(dict.fromkeys(ckpt.backbone))
        parts.append(f"**Claims about one checkpoint** ({len(ckpt)} comparison"
                     f"{'s' * (len(ckpt) != 1)}: {names}): every run of that backbone starts from "
                     "the same pretraining run, so its pretraining variance is not covered; a "
                     "verdict there is about the shipped checkpoint, not its method.")
    parts.append("Neither covers the draw of the validation images themselves (every run is "
                 "scored on the same ones); the sd of a comparison is pooled over the comparisons "
                 "scored on the same images with the same training (Holm's tests and the "
                 "intervals use its degrees of freedom).")
    return " ".join(parts)


def resolution_text(res: pd.DataFrame, unit: str = "points") -> str:
    """The resolution of a table (:func:`resolution` or :func:`mean_resolution`) in words."""
    lines = []
    for metric, r in res.iterrows():
        label = LABELS.get(metric, metric)
        if pd.isna(r["median sd"]):
            lines.append(f"{label}: no comparison with two or more seeds and some spread, so the "
                         "design's resolution cannot be estimated.")
            continue
        paired = r.table == "paired differences"
        what = "paired differences" if paired else "seed values of a cell"
        family = (f"simultaneous over the {r.comparisons} comparisons, family-wise alpha "
                  f"{r.alpha:g}" if paired else f"alpha {r.alpha:g}")
        pooled = (f" pooled on {int(r.df)} degrees of freedom"
                  if paired and "df" in r and pd.notna(r.df) and r.df != r["n seeds"] - 1 else "")
        own = (f"; one comparison's own 95 % interval +-{r['95 % half-width']:.2f} {unit}"
               if paired and "95 % half-width" in r and pd.notna(r["95 % half-width"]) else "")
        lines.append(
            f"What this design can resolve ({label}): with {int(r['n seeds'])} seeds and a "
            f"seed-to-seed sd of the {what} of {r['median sd']:.2f} {unit} (median{pooled}), an "
            f"interval is expected to reach +-{r['expected half-width']:.2f} {unit} ({family}"
            f"{own}), and a true difference smaller than "
            f"{r['smallest detectable difference']:.2f} {unit} is found with less than "
            f"{100 * r.power:g} % power.")
    return "\n".join(lines)


def verdict_figure(diffs: pd.DataFrame, metric: str = "top1"):
    """Study 2's verdicts at a glance: one row per backbone and target, its difference from the
    baseline with the simultaneous interval, coloured by the Holm-adjusted verdict."""
    if diffs.empty:
        raise ValueError("no paired differences to draw")
    m, level = len(diffs), 100 * diffs[f"{metric}_level"].iloc[0]
    base = diffs.minus.iloc[0]
    return interval_figure(
        [f"{b} on {t}" for b, t in zip(diffs.backbone, diffs.target)], diffs[f"{metric}_diff"],
        diffs[f"{metric}_adj_low"], diffs[f"{metric}_adj_high"], diffs[f"{metric}_resolved"],
        f"{LABELS.get(metric, metric)}, backbone minus {base}: {m} comparisons, Holm at family-wise "
        f"alpha {(100 - level) * m / 100:.2g}; simultaneous {level:.3g} % intervals",
        f"{LABELS.get(metric, metric)}: backbone minus {base}, points",
        names={1: "backbone better", -1: f"{base} better"})


def learning_curves(results: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch monitor top-1 (the validation subset every epoch scores, the same for every run
    of a target; :func:`camtrap_ssl.train.metrics.monitor_curve`) of every run, long format."""
    rows = []
    for _, r in results.iterrows():
        metrics = rundir.RunDir(r.run_dir).metrics()
        for m, top1 in zip(metrics, M.monitor_curve(metrics)):
            rows.append({"target": r.target, "backbone": r.backbone, "paradigm": r.paradigm,
                         "seed": r.seed, "epoch": m["epoch"], "monitor_top1": top1,
                         "train_acc": m["train_acc"]})
    return pd.DataFrame(rows)


def curve_bands(results: pd.DataFrame) -> pd.DataFrame:
    """Mean monitor top-1 per epoch over seeds with its 95 % t-interval (NaN for one seed)."""
    rows = []
    for (t, b, p, e), g in learning_curves(results).groupby(["target", "backbone", "paradigm", "epoch"],
                                                             sort=False):
        iv = intervals.t_interval(g.monitor_top1)
        rows.append({"target": t, "backbone": b, "paradigm": p, "epoch": e, "mean": iv.mean,
                     "low": iv.low, "high": iv.high, "n": iv.n})
    return pd.DataFrame(rows)


def plot_learning_curves(results: pd.DataFrame):
    """One panel per target: mean monitor top-1 per epoch over seeds, its 95 % t-interval as a
    band; SL solid, SSL dashed; the dotted line is the target's common threshold."""
    import matplotlib.pyplot as plt

    bands = curve_bands(results)
    targets = list(dict.fromkeys(results.target))
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.4), squeeze=False)
    for ax, target in zip(axes[0], targets):
        for backbone, c in bands[bands.target == target].groupby("backbone", sort=False):
            style = "-" if c.paradigm.iloc[0] == "SL" else "--"
            (line,) = ax.plot(c.epoch, c["mean"], style, marker="o", ms=3, label=backbone)
            ax.fill_between(c.epoch, c.low, c.high, color=line.get_color(), alpha=0.15, lw=0)
        if "common_threshold" in results:
            thr = results[results.target == target].common_threshold.iloc[0]
            ax.axhline(thr, color="0.5", ls=":", lw=0.8)
        ax.set_title(f"{target} (stands in for {stands_in_for(target)})", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("monitor top-1 (%)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def per_class(results: pd.DataFrame, target: str) -> pd.DataFrame:
    """Final per-class precision and recall of each backbone on one target, averaged over seeds."""
    rows = []
    for _, r in results[results.target == target].iterrows():
        for cls, pr in rundir.RunDir(r.run_dir).summary()["per_class"].items():
            rows.append({"backbone": r.backbone, "paradigm": r.paradigm, "class": cls, **pr})
    df = pd.DataFrame(rows)
    df[["precision", "recall"]] = df[["precision", "recall"]].astype(float)
    return (df.groupby(["backbone", "paradigm", "class"], sort=False)
            .agg(precision=("precision", "mean"), recall=("recall", "mean"),
                 support=("support", "first")).reset_index())


def plot_per_class(results: pd.DataFrame, target: str):
    """Precision and recall per class (mean over seeds), one bar per backbone; classes by support."""
    import matplotlib.pyplot as plt

    df = per_class(results, target)
    classes = (df.groupby("class").support.first().sort_values(ascending=False).index.tolist())
    backbones = list(dict.fromkeys(df.backbone))
    fig, axes = plt.subplots(2, 1, figsize=(max(6, 0.55 * len(classes) * len(backbones) / 2), 6),
                             sharex=True)
    width = 0.8 / len(backbones)
    x = np.arange(len(classes))
    for k, b in enumerate(backbones):
        d = df[df.backbone == b].set_index("class").reindex(classes)
        for ax, metric in zip(axes, ("precision", "recall")):
            ax.bar(x + k * width - 0.4 + width / 2, d[metric].fillna(0), width, label=b)
    for ax, metric in zip(axes, ("precision", "recall")):
        ax.set_ylabel(metric)
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    support = df.groupby("class").support.first()
    axes[1].set_xticks(x, [f"{c}\n(n={support[c]})" for c in classes], rotation=60, fontsize=7)
    axes[0].legend(fontsize=8, ncol=len(backbones))
    axes[0].set_title(f"per-class precision and recall on {target} (validation, mean over seeds)",
                      fontsize=10)
    fig.tight_layout()
    return fig


def paradigm_summary(results: pd.DataFrame) -> pd.DataFrame:
    """RQ1/RQ2 in one table: by target and paradigm/family, the mean over backbones and seeds of
    top-1 and macro-F1, and the efficiency measure: epochs to the target's common threshold
    (mean over the runs that reached it; ``reached`` counts them)."""
    r = results.copy()
    r["group"] = np.where(r.paradigm == "SL", "SL", "SSL-" + r.family.fillna(""))
    g = r.groupby(["target", "group"])
    out = g[["top1", "macro_f1", "epochs_to_common"]].mean().round(2)
    out["reached"] = g.epochs_to_common.apply(lambda s: f"{s.notna().sum()}/{len(s)}")
    out = out.rename(columns={"top1": LABELS["top1"], "macro_f1": LABELS["macro_f1"],
                              "epochs_to_common": LABELS["epochs_to_common"]})
    return out.unstack("group")


def under_runs_root(paths, runs_root=None):
    """``paths`` (one path, a string of several, or a sequence) with the ``runs_root`` prefix
    removed, so that a published page names a run by where it lies among the runs, not by a
    folder of the machine that built the book; ``runs_root=None`` leaves them as they are."""
    if runs_root is None:
        return paths
    prefix = str(runs_root).rstrip("/\\") + os.sep
    strip = lambda p: None if p is None else str(p).replace(prefix, "")  # noqa: E731
    return strip(paths) if isinstance(paths, (str, os.PathLike)) else [strip(p) for p in paths]


def provenance(results: pd.DataFrame, runs_root=None) -> pd.DataFrame:
    """Where each number came from: run directory (under ``runs_root`` where given), code
    version, seed, profile, protocol."""
    out = results[["target", "backbone", "seed", "run_dir", "code_version", "profile",
                   "pretraining", "fine-tuning", "split", "eval crop"]].copy()
    if runs_root is not None:
        out["run_dir"] = under_runs_root(out.run_dir, runs_root)
        out = out.rename(columns={"run_dir": "run_dir (under runs_root)"})
    return out


TABLE_TITLES = {
    "5.1": "Serengeti, supervised", "5.2": "NACTI, supervised", "5.3": "ENA24, supervised",
    "5.4": "CIFAR-10, supervised", "5.5": "CIFAR-100, supervised", "5.6": "Serengeti, SSL",
    "5.7": "NACTI, SSL", "5.8": "ENA24, SSL", "5.9": "CIFAR-10, SSL", "5.10": "CIFAR-100, SSL",
    "5.11": "Serengeti, convergence", "5.12": "NACTI, convergence", "5.13": "ENA24, convergence",
    "5.14": "CIFAR-10, convergence", "5.15": "CIFAR-100, convergence",
}


def study_tables(results: pd.DataFrame, tables=None, runs_root=None) -> pd.DataFrame:
    """The study's tables 5.1 to 5.15 row by row, our numbers beside each where a run maps.

    A study row maps to our runs of the same method on the target standing in for its dataset
    (architectures differ: ours is the profile's backbone, so every ResNet-50/152 and width or SK
    variant of a method shares our one number). ``ours`` is the mean over seeds with its 95 %
    t-interval beside; the metrics the study did not report (macro-F1, balanced accuracy, tail
    top-1, empty-vs-animal, ECE; epochs to the common threshold for convergence rows) sit next to
    it, and ``protocol`` says what produced them. Rows no run of ours covers stay empty.
    """
    rep = reference.reported().copy()
    if tables is not None:
        rep = rep[rep.table.isin([str(t) for t in tables])]
    agg = aggregate(results) if "seed" in results else results.assign(n_seeds=1)
    agg = agg.assign(study_method=agg.method.map(lambda m: reference.STUDY_METHOD.get(m, m)))
    ours = agg.drop_duplicates(["stands_in_for", "study_method"]).set_index(["stands_in_for",
                                                                            "study_method"])
    extra = ["macro_f1", "balanced_acc", "tail_top1", "empty_acc", "ece"]
    rows = []
    for _, r in rep.iterrows():
        key = (r.dataset, r.method if r.method != "supervised-from-scratch-sota" else None)
        run = ours.loc[key] if key in ours.index else None
        conv = pd.notna(r.convergence_epochs)
        col = "convergence_epoch" if conv else "top1"
        row = {"table": r.table, "title": TABLE_TITLES.get(r.table, ""), "dataset": r.dataset,
               "method": r.method, "architecture": r.architecture,
               "study": r.convergence_epochs if conv else r.top1,
               "ours": None if run is None else run[col],
               "ours 95 % t-interval": (None if run is None or pd.isna(run.get(f"{col}_low", np.nan))
                                        else f"[{run[f'{col}_low']:.1f}, {run[f'{col}_high']:.1f}]"),
               "measure": "convergence epoch (own best)" if conv else "top-1 %"}
        if conv:
            row["ours: epochs to common threshold"] = None if run is None else run.get("epochs_to_common")
        else:
            row.update({LABELS[m]: None if run is None else run.get(m) for m in extra})
        row.update({"our target": None if run is None else run.target,
                    "seeds": None if run is None else run.get("seeds"),
                    "runs": None if run is None else under_runs_root(
                        run.get("run_dirs", run.get("run_dir")), runs_root),
                    "protocol": None if run is None or "pretraining" not in run else _protocol_text(run),
                    "profile": None if run is None else results.profile.iloc[0]})
        rows.append(row)
    return pd.DataFrame(rows).set_index(["table", "title", "method", "architecture"])
