"""Studies 1 and 2: collect fine-tuning runs into tables and plots beside the study's numbers.

Every row carries the run directory and the code version that produced it (showyourwork): the
book shows only numbers a recorded run wrote.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from camtrap_ssl.core.profiles import get_profile
from camtrap_ssl.data.embedded import STANDS_IN_FOR
from camtrap_ssl.experiments.backbones import describe_backbone
from camtrap_ssl.experiments.finetuning import finetune_run
from camtrap_ssl.studies import reference
from camtrap_ssl.train import rundir


def collect(backbones, targets, profile="demo", seed=0, runs_root=None, epochs=None,
            convergence_tolerance: float = 0.5, progress: bool = True) -> pd.DataFrame:
    """Run (or reuse) every backbone x target fine-tune and return one row per run."""
    profile = get_profile(profile)
    rows = []
    for target in targets:
        for backbone in backbones:
            summary, rd = finetune_run(backbone, target, profile, seed, runs_root, epochs=epochs,
                                       convergence_tolerance=convergence_tolerance, progress=progress)
            params = rundir.RunDir(rd).params()
            rows.append({**describe_backbone(backbone), "target": target,
                         "stands_in_for": STANDS_IN_FOR.get(target, target),
                         "top1": summary["final_top1"], "top5": summary["final_top5"],
                         "best_top1": summary["best_top1"], "train_acc": summary["train_acc"],
                         "convergence_epoch": summary["convergence_epoch"],
                         "epochs": summary["epochs"], "run_dir": str(rd),
                         "code_version": params.get("environment", {}).get("code_version"),
                         "seed": seed, "profile": profile.name})
    return pd.DataFrame(rows)


def with_reported(results: pd.DataFrame) -> pd.DataFrame:
    """Our top-1/top-5/convergence beside the study's ResNet-50 number for the same method."""
    out = results.copy()
    study_top1, study_top5, study_conv = [], [], []
    for _, r in out.iterrows():
        row = reference.study_row(r.stands_in_for, r.method)
        study_top1.append(row["top1"] if row else np.nan)
        study_top5.append(row["top5"] if row else np.nan)
        study_conv.append(reference.study_convergence(r.stands_in_for, r.method) or np.nan)
    out["study_top1_r50"] = study_top1
    out["study_top5_r50"] = study_top5
    out["study_convergence"] = study_conv
    return out


def results_table(results: pd.DataFrame) -> pd.DataFrame:
    """The book's table: one row per target and backbone, ours beside the study's."""
    t = with_reported(results)
    cols = ["target", "stands_in_for", "backbone", "paradigm", "family", "top1", "top5",
            "convergence_epoch", "study_top1_r50", "study_top5_r50", "study_convergence"]
    return t[cols].set_index(["target", "backbone"]).round(2)


def learning_curves(results: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch validation top-1 of every run, long format."""
    rows = []
    for _, r in results.iterrows():
        for m in rundir.RunDir(r.run_dir).metrics():
            rows.append({"target": r.target, "backbone": r.backbone, "paradigm": r.paradigm,
                         "epoch": m["epoch"], "val_top1": m["val_top1"], "train_acc": m["train_acc"]})
    return pd.DataFrame(rows)


def plot_learning_curves(results: pd.DataFrame):
    """One panel per target: validation top-1 per epoch, SL solid, SSL dashed."""
    import matplotlib.pyplot as plt

    curves = learning_curves(results)
    targets = list(dict.fromkeys(results.target))
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.4), squeeze=False)
    for ax, target in zip(axes[0], targets):
        for backbone, c in curves[curves.target == target].groupby("backbone", sort=False):
            style = "-" if c.paradigm.iloc[0] == "SL" else "--"
            ax.plot(c.epoch, c.val_top1, style, marker="o", ms=3, label=backbone)
        conv = results[results.target == target]
        for _, r in conv.iterrows():
            ax.axvline(r.convergence_epoch, color="0.85", lw=0.8, zorder=0)
        ax.set_title(f"{target} (stands in for {STANDS_IN_FOR.get(target, target)})", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation top-1 (%)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def per_class(results: pd.DataFrame, target: str) -> pd.DataFrame:
    """Final per-class precision and recall of each backbone on one target (long format)."""
    rows = []
    for _, r in results[results.target == target].iterrows():
        for cls, pr in rundir.RunDir(r.run_dir).summary()["per_class"].items():
            rows.append({"backbone": r.backbone, "paradigm": r.paradigm, "class": cls, **pr})
    return pd.DataFrame(rows)


def plot_per_class(results: pd.DataFrame, target: str):
    """Precision and recall per class, one bar per backbone; classes ordered by support."""
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
            ax.bar(x + k * width - 0.4 + width / 2, d[metric].astype(float).fillna(0), width, label=b)
    for ax, metric in zip(axes, ("precision", "recall")):
        ax.set_ylabel(metric)
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    support = df.groupby("class").support.first()
    axes[1].set_xticks(x, [f"{c}\n(n={support[c]})" for c in classes], rotation=60, fontsize=7)
    axes[0].legend(fontsize=8, ncol=len(backbones))
    axes[0].set_title(f"per-class precision and recall on {target} (validation)", fontsize=10)
    fig.tight_layout()
    return fig


def paradigm_summary(results: pd.DataFrame) -> pd.DataFrame:
    """RQ1/RQ2 in one table: mean top-1 and convergence epoch by target and paradigm/family."""
    r = results.copy()
    r["group"] = np.where(r.paradigm == "SL", "SL", "SSL-" + r.family.fillna(""))
    return (r.groupby(["target", "group"])[["top1", "convergence_epoch"]].mean().round(2)
            .unstack("group"))


def provenance(results: pd.DataFrame) -> pd.DataFrame:
    """Where each number came from: run directory, code version, seed, profile."""
    return results[["target", "backbone", "run_dir", "code_version", "seed", "profile"]]


TABLE_TITLES = {
    "5.1": "Serengeti, supervised", "5.2": "NACTI, supervised", "5.3": "ENA24, supervised",
    "5.4": "CIFAR-10, supervised", "5.5": "CIFAR-100, supervised", "5.6": "Serengeti, SSL",
    "5.7": "NACTI, SSL", "5.8": "ENA24, SSL", "5.9": "CIFAR-10, SSL", "5.10": "CIFAR-100, SSL",
    "5.11": "Serengeti, convergence", "5.12": "NACTI, convergence", "5.13": "ENA24, convergence",
    "5.14": "CIFAR-10, convergence", "5.15": "CIFAR-100, convergence",
}


def study_tables(results: pd.DataFrame, tables=None) -> pd.DataFrame:
    """The study's tables 5.1 to 5.15 row by row, with our number beside each where a run maps.

    A study row maps to our run of the same method on the target standing in for its dataset
    (architectures differ: ours is the profile's backbone, so every ResNet-50/152 and width or SK
    variant of a method shares our one number). Rows no run of ours covers stay empty.
    """
    rep = reference.reported().copy()
    if tables is not None:
        rep = rep[rep.table.isin([str(t) for t in tables])]
    ours = results.assign(study_method=results.method.map(lambda m: reference.STUDY_METHOD.get(m, m)))
    ours = ours.drop_duplicates(["stands_in_for", "study_method"]).set_index(["stands_in_for", "study_method"])
    rows = []
    for _, r in rep.iterrows():
        key = (r.dataset, r.method if r.method != "supervised-from-scratch-sota" else None)
        run = ours.loc[key] if key in ours.index else None
        conv = pd.notna(r.convergence_epochs)
        rows.append({
            "table": r.table, "title": TABLE_TITLES.get(r.table, ""), "dataset": r.dataset,
            "method": r.method, "architecture": r.architecture,
            "study": r.convergence_epochs if conv else r.top1,
            "ours": (None if run is None else (run.convergence_epoch if conv else run.top1)),
            "measure": "convergence epoch" if conv else "top-1 %",
            "our target": None if run is None else run.target,
            "profile": None if run is None else run.profile,
            "run": None if run is None else run.run_dir,
        })
    return pd.DataFrame(rows).set_index(["table", "title", "method", "architecture"])
