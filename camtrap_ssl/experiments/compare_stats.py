"""The statistics of a comparison report: each backbone's mean and 95 % interval, and each SSL
backbone's paired difference from the SL one, decided as one Holm-controlled family.

Read from the files a comparison writes (``runs.csv`` and ``predictions.npz``, see
:mod:`.compare`), so that the report notebook and anyone holding those files get the same numbers.

**Intervals of one backbone.** Where the seeds gave different predictions (a label share below
one: each seed labels other images; fine-tuning), the mean over seeds and its Student-t 95 %
interval (:func:`camtrap_ssl.core.intervals.t_interval`): "another draw of labelled images, on
these validation images". Where every seed gave the very same predictions (a probe with all labels
is deterministic), seeds carry no variation, and the interval is a percentile bootstrap over the
validation images instead ("another draw of validation images from the same cameras"). The
``interval`` column says which.

**Paired differences.** Each SSL backbone is paired with the SL backbone of the same architecture
(:func:`.compare.architecture`: the embedded backbones share one; at the paper profile R50 with
R50, R152 with R152), per protocol and label share, on :data:`METRIC`'s choice of metric:

* by seed (same labelled images on both sides): paired t-test and t-interval of the per-seed
  differences (:func:`~camtrap_ssl.core.intervals.paired_t_pvalue`);
* deterministic cells: a paired bootstrap over validation images (both backbones resampled on the
  same images, :data:`N_BOOT` resamples), its standard error giving a normal test and interval.

The family is every comparison of the report; p-values are adjusted by Holm's step-down
procedure (:func:`~camtrap_ssl.core.intervals.holm`) and a backbone is called *better* or *worse*
than its SL partner only where the adjusted p is at most ``alpha`` (and, by seed, at least
:data:`~camtrap_ssl.core.intervals.MIN_SEEDS_FOR_VERDICT` seeds were paired); intervals are
Bonferroni-simultaneous at ``1 - alpha / m`` (as :func:`~camtrap_ssl.core.intervals.
adjusted_t_intervals` reports them), so all of them cover together with 95 % probability.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from camtrap_ssl.core import fileio
from camtrap_ssl.core.intervals import (
    MIN_SEEDS_FOR_VERDICT,
    holm,
    paired_t_pvalue,
    t_interval,
)

PREDICTIONS = "predictions.npz"
N_BOOT = 2000
BOOT_SEED = 0
METRICS = ("top1", "macro_f1", "balanced_acc")
CELL = ["backbone", "protocol", "label_fraction"]

__all__ = ["N_BOOT", "PREDICTIONS", "bootstrap_metrics", "comparisons", "family_text",
           "load_report", "metric_values", "summarise", "write_report_tables"]


def metric_values(pred: np.ndarray, y: np.ndarray, n_classes: int, idx=None) -> dict:
    """``{metric: values}`` of predictions ``pred`` against labels ``y``, in points, for each row
    of resampled indices ``idx`` ((B, n); ``None``: the images as they are, B = 1). The same
    definitions as :mod:`camtrap_ssl.train.metrics` (classes absent from a resample left out)."""
    pred, y = np.asarray(pred), np.asarray(y)
    idx = np.arange(len(y))[None] if idx is None else np.asarray(idx)
    b = len(idx)
    codes = (y[idx] * n_classes + pred[idx]) + (np.arange(b) * n_classes ** 2)[:, None]
    cm = np.bincount(codes.ravel(), minlength=b * n_classes ** 2).reshape(b, n_classes, n_classes)
    tp = np.diagonal(cm, axis1=1, axis2=2).astype(float)
    support = cm.sum(2)
    present = support > 0
    denom = cm.sum(1) + support
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=present)
    n_present = present.sum(1)
    return {"top1": 100 * tp.sum(1) / idx.shape[1],
            "macro_f1": 100 * (f1 * present).sum(1) / n_present,
            "balanced_acc": 100 * (recall * present).sum(1) / n_present}


def _resamples(n: int, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap_metrics(pred, y, n_classes, confidence: float = 0.95, n_boot: int = N_BOOT) -> dict:
    """``{metric: (estimate, low, high)}``: percentile bootstrap over the validation images."""
    boot = metric_values(pred, y, n_classes, _resamples(len(y), n_boot))
    point = metric_values(pred, y, n_classes)
    q = [0.5 - confidence / 2, 0.5 + confidence / 2]
    return {m: (float(point[m][0]), *map(float, np.quantile(boot[m], q))) for m in METRICS}


def load_report(folder) -> tuple[pd.DataFrame, dict]:
    """``runs.csv`` and the validation predictions of a report: ``{"labels": y, "classes":
    names, row: predicted class per validation image}``."""
    folder = Path(folder)
    runs = pd.read_csv(folder / "runs.csv")
    preds = {}
    path = folder / PREDICTIONS
    if path.is_file():
        with np.load(path) as z:
            preds = {(k if k in ("labels", "classes") else int(k[3:])): z[k] for k in z.files}
    return runs, preds


def _deterministic(group: pd.DataFrame, preds: dict) -> bool:
    """Every seed of the cell gave the very same predictions (so seeds carry no variation)."""
    rows = [preds.get(int(r)) for r in group["row"]]
    if len(rows) < 2 or any(p is None for p in rows):
        return False
    return all(np.array_equal(rows[0], p) for p in rows[1:])


def _n_classes(preds: dict) -> int:
    """The target's classes (recorded with the predictions), else the largest label or
    prediction seen, plus one."""
    if "classes" in preds:
        return len(preds["classes"])
    arrays = [v for v in preds.values() if len(v)]
    return int(max(int(np.max(a)) for a in arrays)) + 1 if arrays else 0


def summarise(runs: pd.DataFrame, preds: dict, confidence: float = 0.95) -> pd.DataFrame:
    """One row per (backbone, protocol, label share): each metric's mean and 95 % interval, the
    number of seeds and how the interval was made."""
    y = preds.get("labels")
    n_classes = _n_classes(preds)
    out = []
    for key, g in runs.groupby(CELL, sort=False):
        first = g.iloc[0]
        row = {**dict(zip(CELL, key)), "method": first["method"], "paradigm": first["paradigm"],
               "architecture": first["architecture"], "n_seeds": len(g)}
        if y is not None and _deterministic(g, preds):
            boot = bootstrap_metrics(preds[int(first["row"])], y, n_classes, confidence)
            for m in METRICS:
                row[m], row[f"{m}_low"], row[f"{m}_high"] = boot[m]
            row["interval"] = (f"bootstrap over {len(y)} validation images (every seed gave the "
                               "same predictions)")
        else:
            for m in METRICS:
                iv = t_interval(g[m].astype(float), confidence)
                row[m], row[f"{m}_low"], row[f"{m}_high"] = iv.mean, iv.low, iv.high
            row["interval"] = f"t over {len(g)} seeds"
        out.append(row)
    return pd.DataFrame(out)


def _partner(runs: pd.DataFrame, backbone: str) -> str | None:
    """The SL backbone paired with ``backbone``: the first of the report with its architecture."""
    arch = runs.loc[runs["backbone"] == backbone, "architecture"].iloc[0]
    sl = runs[(runs["paradigm"] == "SL") & (runs["architecture"] == arch)]["backbone"]
    return sl.iloc[0] if len(sl) else None


def family_text(m: int, metric: str, alpha: float) -> str:
    return (f"family: all {m} SSL-vs-SL comparisons of this report (every SSL backbone against "
            f"the SL backbone of its architecture, per protocol and label share, on {metric}); "
            f"method: Holm's step-down adjustment (1979) at alpha = {alpha}; intervals "
            f"Bonferroni-simultaneous at {100 * (1 - alpha / max(m, 1)):.2f} % each")


def comparisons(runs: pd.DataFrame, preds: dict, metric: str = "top1",
                alpha: float = 0.05) -> pd.DataFrame:
    """Each SSL backbone minus its SL partner (see the module docstring), one row per protocol
    and label share, with the Holm-adjusted p-value and the verdict (better / worse / cannot
    tell)."""
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not allowed; metric must be one of {list(METRICS)}")
    y = preds.get("labels")
    n_classes = _n_classes(preds)
    items = []
    for b in runs.loc[runs["paradigm"] == "SSL", "backbone"].unique():
        ref = _partner(runs, b)
        if ref is None:
            continue
        for key, g in runs[runs["backbone"] == b].groupby(["protocol", "label_fraction"],
                                                          sort=False):
            r = runs[(runs["backbone"] == ref) & (runs["protocol"] == key[0])
                     & (runs["label_fraction"] == key[1])]
            both = g.merge(r, on="seed", suffixes=("", "_ref"))
            if both.empty:
                continue
            item = {"backbone": b, "reference": ref, "architecture": g["architecture"].iloc[0],
                    "protocol": key[0], "label_fraction": key[1], "metric": metric,
                    "n": len(both)}
            if y is not None and _deterministic(g, preds) and _deterministic(r, preds):
                pa, pb = preds[int(g["row"].iloc[0])], preds[int(r["row"].iloc[0])]
                idx = _resamples(len(y))
                d_boot = (metric_values(pa, y, n_classes, idx)[metric]
                          - metric_values(pb, y, n_classes, idx)[metric])
                d = float(metric_values(pa, y, n_classes)[metric][0]
                          - metric_values(pb, y, n_classes)[metric][0])
                se = float(d_boot.std(ddof=1))
                item.update(difference=d, se=se, test=f"paired bootstrap over {len(y)} "
                                                      "validation images (deterministic)",
                            p=float(2 * stats.norm.sf(abs(d) / se)) if se > 0 else float(d == 0))
                item["n"] = len(y)
            else:
                diffs = (both[metric].astype(float) - both[f"{metric}_ref"].astype(float)).values
                item.update(difference=float(diffs.mean()), diffs=diffs,
                            test=f"paired t over {len(diffs)} seeds",
                            p=float(paired_t_pvalue(diffs)))
            items.append(item)
    cols = ["backbone", "reference", "architecture", "protocol", "label_fraction", "metric",
            "difference", "low", "high", "level", "n", "test", "p", "p_holm", "verdict", "family"]
    if not items:
        return pd.DataFrame(columns=cols)
    m = len(items)
    rejected, adjusted = holm([it["p"] for it in items], alpha)
    level = 1 - alpha / m
    for it, rej, adj in zip(items, rejected, adjusted):
        if "diffs" in it:
            iv = t_interval(it.pop("diffs"), level)
            low, high = iv.low, iv.high
            enough = iv.n >= MIN_SEEDS_FOR_VERDICT
        else:
            half = float(stats.norm.ppf(1 - alpha / (2 * m))) * it.pop("se")
            low, high = it["difference"] - half, it["difference"] + half
            enough = True
        verdict = "cannot tell"
        if rej and enough and it["difference"] != 0:
            verdict = "better" if it["difference"] > 0 else "worse"
        it.update(low=low, high=high, level=level, p_holm=float(adj), verdict=verdict,
                  family=family_text(m, metric, alpha))
    return pd.DataFrame(items)[cols]


def write_report_tables(folder, metric: str = "top1", alpha: float = 0.05):
    """Compute and write ``summary.csv`` and ``comparisons.csv`` beside ``runs.csv``."""
    folder = Path(folder)
    runs, preds = load_report(folder)
    summary = summarise(runs, preds)
    comp = comparisons(runs, preds, metric, alpha)
    fileio.atomic_write_bytes(folder / "summary.csv", summary.to_csv(index=False).encode())
    fileio.atomic_write_bytes(folder / "comparisons.csv", comp.to_csv(index=False).encode())
    return summary, comp
