"""Figures of Study 3's invariance curves, in the style of the study's figures 5.1 to 5.5.

Separate from :mod:`camtrap_ssl.analysis.invariance` because drawing is a layer above measuring:
these functions only read the frames that :func:`~camtrap_ssl.analysis.invariance.invariance_curves`
returns. Figures are made without pyplot, so that a notebook shows each exactly once.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from camtrap_ssl.analysis.invariance import bootstrap_band, with_model
from camtrap_ssl.analysis.transforms import (
    FAMILY_TITLES,
    IDENTITY_VALUE,
    TRANSFORM_FAMILIES,
    check_family,
    value_label,
)


def _style_axis(ax, family: str, values) -> None:
    values = sorted(set(float(v) for v in values))
    ax.set_xticks(values)
    if family == "flip":
        ax.set_xticklabels([value_label(family, v).replace("left-right", "left/right")
                            for v in values])
    elif family == "zoom":  # "no zoom" would collide with "2x"; the axis title says 1x = none
        ax.set_xticklabels([f"{v:g}x" for v in values])
    elif family.startswith("translate"):
        ax.set_xticklabels([f"{v:g}" for v in values], rotation=45)
    else:
        ax.set_xticklabels([f"{v:g}" for v in values])
    if family == "flip":
        ax.set_xlim(values[0] - 0.5, values[-1] + 0.5)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)


def _draw_curves(ax, band_df: pd.DataFrame, models, cls: str, family: str, band: bool) -> None:
    colors = {m: f"C{i}" for i, m in enumerate(models)}
    sub = band_df[(band_df["class"] == cls) & (band_df["family"] == family)]
    for m in models:
        cur = sub[sub["model"] == m].sort_values("value") if "model" in sub else sub
        if cur.empty:
            continue
        marker = "o" if family in ("flip",) or len(cur) < 10 else None
        ax.plot(cur["value"], cur["mean"], color=colors[m], marker=marker, ms=3, label=m)
        if band:
            ax.fill_between(cur["value"], cur["low"], cur["high"], color=colors[m], alpha=0.2,
                            linewidth=0)
    ax.axvline(IDENTITY_VALUE[family], color="0.6", lw=0.8, ls=":")


def _band_frame(df_by_model, n_boot, ci, seed, column) -> tuple[pd.DataFrame, list]:
    df = with_model(df_by_model)
    if "model" not in df.columns:
        df = df.assign(model="model")
    bands = bootstrap_band(df, n_boot=n_boot, ci=ci, seed=seed, column=column)
    return bands, list(dict.fromkeys(df["model"]))


def plot_invariance(df_by_model, family: str, classes: Sequence[str] | None = None,
                    band: bool = True, *, n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
                    column: str = "p_true", ncols: int | None = None, panel_size=(3.2, 2.6)):
    """One family, as in the study's figures 5.1 to 5.5: one panel per class, one curve per model
    (x = transformation value, y = mean true-class probability over the class's images), with a
    shaded bootstrap band (``band=True``; see :func:`bootstrap_band`).

    ``df_by_model`` is a dict model name -> :func:`invariance_curves` frame (or one frame with a
    ``model`` column). Returns a :class:`matplotlib.figure.Figure`, made without pyplot so that a
    notebook shows it exactly once.
    """
    check_family(family)
    bands, models = _band_frame(df_by_model, n_boot, ci, seed, column)
    bands = bands[bands["family"] == family]
    if bands.empty:
        raise ValueError(f"no rows of family {family!r} in the curves")
    present = list(dict.fromkeys(bands["class"]))
    classes = present if classes is None else list(classes)
    unknown = [c for c in classes if c not in present]
    if unknown:
        raise ValueError(f"classes {unknown} not in the curves; present: {present}")
    ncols = ncols or min(len(classes), 4)
    nrows = math.ceil(len(classes) / ncols)
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows + 0.6),
                 layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
    for ax, cls in zip(axes, classes):
        _draw_curves(ax, bands, models, cls, family, band)
        _style_axis(ax, family, bands["value"])
        ax.set_title(cls)
    for ax in axes[len(classes):]:
        ax.set_visible(False)
    for ax in axes[::ncols]:
        ax.set_ylabel(f"mean {column}")
    fig.supxlabel(FAMILY_TITLES[family])
    handles, names = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="outside upper right", ncols=len(names), frameon=False)
    return fig


def plot_invariance_grid(df_by_model, families: Sequence[str] | None = None,
                         classes: Sequence[str] | None = None, band: bool = True, *,
                         n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
                         column: str = "p_true", panel_size=(2.6, 2.1)):
    """Every class x family in one figure (rows = classes, columns = families), for the book's
    appendix; same curves and bands as :func:`plot_invariance`."""
    bands, models = _band_frame(df_by_model, n_boot, ci, seed, column)
    present_f = [f for f in TRANSFORM_FAMILIES if f in set(bands["family"])]
    families = present_f if families is None else list(families)
    for f in families:
        check_family(f)
        if f not in present_f:
            raise ValueError(f"family {f!r} not in the curves; present: {present_f}")
    present_c = list(dict.fromkeys(bands["class"]))
    classes = present_c if classes is None else list(classes)
    unknown = [c for c in classes if c not in present_c]
    if unknown:
        raise ValueError(f"classes {unknown} not in the curves; present: {present_c}")
    fig = Figure(figsize=(panel_size[0] * len(families), panel_size[1] * len(classes) + 0.6),
                 layout="constrained")
    axes = fig.subplots(len(classes), len(families), sharey=True, squeeze=False)
    for r, cls in enumerate(classes):
        for c, fam in enumerate(families):
            ax = axes[r, c]
            _draw_curves(ax, bands, models, cls, fam, band)
            _style_axis(ax, fam, bands.loc[bands["family"] == fam, "value"])
            if r == 0:
                ax.set_title(FAMILY_TITLES[fam], fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{cls}\nmean {column}")
    handles, names = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="outside upper right", ncols=len(names), frameon=False)
    return fig
