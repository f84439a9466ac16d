"""Equivariance per ResNet block: does transforming the input transform the features?

The study's framework names equivariance but measured only the final prediction (SPEC section 5,
Study 3; section 6 adds the measurement). We follow Lenc & Vedaldi ("Understanding image
representations by measuring their equivariance and equivalence", CVPR 2015): a representation
phi is equivariant to a transformation g when phi(g x) ~= M_g g' phi(x), where g' is g acting on the
feature map's grid and M_g is a *learned* linear map over channels (a 1x1 convolution). M_g
matters: a network whose filters come in mirrored pairs is exactly flip-equivariant, yet its
flipped features land in the partner channels, so comparing channel by channel (M_g = identity,
the "channel-fixed" special case that is also reported) calls it not equivariant at all.

Transformations (:func:`parse_transform`) are the study's own, in its units, as ``"family:value"``
(``"translate_x:25"`` is 25 px at the study's 224-px input, scaled and rounded to ours;
``"rotation:50"``, ``"zoom:2"``, ``"flip:1"``), applied to the input by
:func:`camtrap_ssl.analysis.transforms.apply_transform` and to each feature map by the same
transformation at the map's resolution (bilinear, sub-pixel: a 7-px input shift is 7/8 of a cell
of a stride-8 block). Translations that are not a multiple of a block's stride are where
subsampling aliasing shows (Azulay & Weiss, JMLR 2019; Zhang, ICML 2019). ``"cyclic_x:8"`` /
``"cyclic_y:8"`` roll the image cyclically (no border at all; fractional cells roll the feature
map by linear interpolation between the two neighbouring whole-cell rolls), which isolates
padding and subsampling from the content lost at a zero-filled border. Zero-filled transforms
leave the feature map's border undefined; errors are computed only where the transformed map is
fully defined (positions whose bilinear footprint lies inside the map).

Per block and transformation:

* M_g (and a bias) is fit by ridge regression on the *fit* half of the images, over all defined
  positions, and the error is measured on the *held-out* half (Lenc & Vedaldi fit on one set and
  test on another, or a map with as many parameters as channels squared could fit anything);
* error of image i: ``||phi(g x_i) - M_g g' phi(x_i)|| / ||phi(x_i)||`` over defined positions,
  mean and std over held-out images; ``_fixed`` columns take M_g = identity, no bias;
* baseline ``other_class``: the same error with phi(g x_j) of every held-out image j of *another
  class* in place of phi(g x_i), averaged over all such pairs, so that it depends neither on the
  order of the images nor on the batch size (the old next-image-in-the-batch baseline did: with
  images in class order it compared mostly same-class images). ``same_class`` is reported beside
  it. ``ratio`` = error / other_class: 0 = equivariant, 1 = no better than another animal.

The fit/held-out split is by image content (a hash of each image's bytes), so it too is
independent of order and batch size, and needs no random draw.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from camtrap_ssl.analysis.transforms import (
    TRANSFORM_FAMILIES,
    apply_transform,
    check_value,
    is_identity,
    translation_pixels,
)
from camtrap_ssl.core.progress import progress_bar
from camtrap_ssl.models.utils import (
    BLOCKS,
    blocks,
    check_images,
    eval_mode,
    model_device,
)

CYCLIC = ("cyclic_x", "cyclic_y")
STUDY_EQUIVARIANCE_TRANSFORMS: tuple[str, ...] = (
    "flip:1", "rotation:90", "rotation:50", "rotation:100", "translate_x:25", "translate_x:50",
    "translate_y:25", "translate_y:100", "zoom:2", "cyclic_x:8", "cyclic_x:7",
)
"""Default set: the study's flip, two of its rotations (and the exact 90 degrees), its smallest and
larger shifts (25 px at 224 is 7 px at 64: not a multiple of any stride above 1), its 2x zoom, and
cyclic shifts by a stride-multiple and a non-multiple number of pixels."""
_DEFINED = 0.999


def parse_transform(spec: str) -> tuple[str, float]:
    """``"family:value"`` -> (family, value); families of the study plus ``cyclic_x/y`` (px)."""
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ValueError(f"transform {spec!r} must be 'family:value', e.g. 'translate_x:25'; "
                         f"families: {sorted(TRANSFORM_FAMILIES) + list(CYCLIC)}")
    family, raw = spec.split(":")
    if family not in TRANSFORM_FAMILIES and family not in CYCLIC:
        raise ValueError(f"transform {spec!r}: family {family!r} unknown; allowed: "
                         f"{sorted(TRANSFORM_FAMILIES) + list(CYCLIC)}")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"transform {spec!r}: value {raw!r} is not a number") from None
    if family in CYCLIC:
        if not value.is_integer() or value == 0:
            raise ValueError(f"transform {spec!r}: cyclic shifts take a non-zero whole number "
                             f"of input pixels")
    else:
        check_value(family, value)
        if is_identity(family, value):
            raise ValueError(f"transform {spec!r} is the identity; nothing to measure")
    return family, value


def block_outputs(model: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs of ``layer1`` .. ``layer4`` for a batch, captured with forward hooks in one forward
    pass (the logits are discarded). Runs under ``no_grad``; the caller sets eval mode."""
    captured: dict[str, torch.Tensor] = {}

    def hook(name):
        def fn(_module, _inputs, output):
            if not isinstance(output, torch.Tensor) or output.ndim != 4:
                raise ValueError(f"{name} must output a (N, C, h, w) tensor, got "
                                 f"{getattr(output, 'shape', type(output))}")
            captured[name] = output.detach()
        return fn

    handles = [b.register_forward_hook(hook(n)) for n, b in blocks(model).items()]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in BLOCKS if n not in captured]
    if missing:
        raise ValueError(f"blocks {missing} did not run in the model's forward")
    return captured


def _roll(x: torch.Tensor, cells: float, dim: int) -> torch.Tensor:
    """Cyclic shift by a possibly fractional number of cells (linear between whole rolls)."""
    lo = math.floor(cells)
    frac = cells - lo
    out = torch.roll(x, lo, dims=dim)
    return out if frac == 0 else (1 - frac) * out + frac * torch.roll(x, lo + 1, dims=dim)


def act_on_input(x: torch.Tensor, family: str, value: float) -> torch.Tensor:
    """g applied to images (the study's conventions; cyclic shifts roll whole pixels)."""
    if family in CYCLIC:
        return torch.roll(x, int(value), dims=-1 if family == "cyclic_x" else -2)
    return apply_transform(x, family, value)


def act_on_features(f: torch.Tensor, family: str, value: float, input_hw) -> torch.Tensor:
    """g' applied to (N, C, h, w) feature maps of an input of size ``input_hw``: the same
    transformation at the map's resolution, with the input's *actual* (rounded) pixel shift."""
    H, W = input_hw
    h, w = f.shape[-2:]
    if family in CYCLIC:
        axis_in, axis_f = (W, w) if family == "cyclic_x" else (H, h)
        return _roll(f, value * axis_f / axis_in, -1 if family == "cyclic_x" else -2)
    if family.startswith("translate"):
        size = W if family == "translate_x" else H
        pixels = translation_pixels(value, size)
        return apply_transform(f, family, pixels, reference_size=size, subpixel=True)
    return apply_transform(f, family, value)


def _defined(family, value, shape, input_hw) -> torch.Tensor:
    """(h, w) bool: positions of g' phi(x) that the transformation fully defines."""
    ones = torch.ones(1, 1, *shape[-2:], dtype=torch.float64)
    return act_on_features(ones, family, value, input_hw)[0, 0] > _DEFINED


def content_split(images: torch.Tensor) -> torch.Tensor:
    """Bool (N,): True for the fit half. Images are ranked by a hash of their bytes and every
    other one is fit, so the split does not depend on order, batch size or a seed."""
    keys = [hashlib.sha256(im.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()
            for im in images]
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    fit = torch.zeros(len(keys), dtype=torch.bool)
    fit[order[::2]] = True
    return fit


def fit_channel_map(source: torch.Tensor, target: torch.Tensor, ridge: float = 1e-3
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge least squares for target ~= M source + b over rows (positions x images).

    ``source``/``target``: (P, C) float64. ``ridge`` is relative to the mean diagonal of
    source's Gram matrix, so it means the same at every block's scale. Returns (M (C, C), b (C,)).
    """
    mu_s, mu_t = source.mean(0), target.mean(0)
    s, t = source - mu_s, target - mu_t
    gram = s.T @ s
    lam = ridge * float(gram.diagonal().mean().clamp(min=1e-12))
    m = torch.linalg.solve(gram + lam * torch.eye(len(gram), dtype=gram.dtype), s.T @ t).T
    return m, mu_t - m @ mu_s


def _rows(f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N, P, C) at the defined positions."""
    return f.permute(0, 2, 3, 1)[:, mask].double()


def _pair_errors(moved: torch.Tensor, pred: torch.Tensor, norm: torch.Tensor) -> np.ndarray:
    """(N, N) matrix: ||moved_j - pred_i|| / norm_i, from flattened (N, D) tensors."""
    d = torch.cdist(pred.flatten(1), moved.flatten(1))
    return (d / norm[:, None]).cpu().numpy()


def _summaries(err: np.ndarray, labels: np.ndarray) -> dict:
    diag = np.diag(err)
    other = labels[:, None] != labels[None, :]
    same = (labels[:, None] == labels[None, :]) & ~np.eye(len(labels), dtype=bool)
    return {"mean": float(np.mean(diag)),
            "std": float(np.std(diag, ddof=1)) if len(diag) > 1 else float("nan"),
            "other": float(err[other].mean()) if other.any() else float("nan"),
            "same": float(err[same].mean()) if same.any() else float("nan")}


def equivariance_errors(model: nn.Module, images: torch.Tensor, labels=None,
                        transforms: Sequence[str] = STUDY_EQUIVARIANCE_TRANSFORMS, *,
                        ridge: float = 1e-3, batch_size: int = 32, model_name: str | None = None,
                        progress: bool = False) -> pd.DataFrame:
    """Equivariance error of each block for each transformation (see the module docstring).

    ``labels`` (one class per image) define the other-class baseline; without them every other
    image counts as "other". Needs >= 4 images (two to fit M_g, two held out).

    Returns one row per (transform, block): ``transform``, ``family``, ``value``, ``block``,
    ``depth``, ``stride``, ``shift_cells`` (translations: the shift in cells of the block, to see
    which are stride multiples), ``error_learned_mean``/``_std``, ``other_class_learned``,
    ``same_class_learned``, ``ratio_learned``, the same four with ``_fixed`` (M_g = identity),
    ``unmoved`` (``||phi(g x) - phi(x)||/||phi(x)||``: the error of claiming invariance),
    ``n_fit``, ``n_test``, ``n_positions`` and ``note`` (why a row is NaN), plus ``model``.
    """
    check_images(images)
    n = len(images)
    if n < 4:
        raise ValueError(f"images: {n} given; equivariance needs >= 4 (two to fit M_g, two held "
                         f"out)")
    labels = (np.arange(n) if labels is None
              else np.asarray(torch.as_tensor(labels).reshape(-1).cpu(), dtype=np.int64))
    if len(labels) != n:
        raise ValueError(f"labels has {len(labels)} entries for {n} images")
    specs = [(t, *parse_transform(t)) for t in transforms]
    if not specs:
        raise ValueError("transforms is empty; e.g. ['flip:1', 'translate_x:25']")
    H, W = images.shape[-2:]
    if H != W and any(f == "rotation" for _, f, _ in specs):
        raise ValueError(f"rotations need square images, got {H}x{W}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive int")
    if not ridge > 0:
        raise ValueError(f"ridge={ridge!r} must be > 0")
    blocks(model)

    device = model_device(model)

    def features(x):
        parts = [block_outputs(model, x[s:s + batch_size].to(device))
                 for s in range(0, len(x), batch_size)]
        return {b: torch.cat([p[b] for p in parts]).cpu() for b in BLOCKS}

    fit = content_split(images).numpy()
    test = ~fit
    rows = []
    with eval_mode(model):
        base = features(images)
        for spec, family, value in progress_bar(specs, desc="equivariance", show=progress):
            moved = features(act_on_input(images, family, value))
            for depth, b in enumerate(BLOCKS, start=1):
                f0, f1 = base[b], moved[b]
                stride = W / f0.shape[-1]
                row = {"transform": spec, "family": family, "value": value, "block": b,
                       "depth": depth, "stride": stride, "shift_cells": float("nan"),
                       "n_fit": int(fit.sum()), "n_test": int(test.sum()), "note": None}
                if family in CYCLIC:
                    row["shift_cells"] = value / stride
                elif family.startswith("translate"):
                    size = W if family == "translate_x" else H
                    row["shift_cells"] = translation_pixels(value, size) / stride
                if f1.shape != f0.shape:
                    rows.append({**row, "note": "feature map changes shape"})
                    continue
                pred = act_on_features(f0, family, value, (H, W))
                mask = _defined(family, value, f0.shape, (H, W))
                row["n_positions"] = int(mask.sum())
                if not mask.any():
                    rows.append({**row, "note": "no feature position is defined after the "
                                                "transformation"})
                    continue
                src, tgt, ref = _rows(pred, mask), _rows(f1, mask), _rows(f0, mask)
                norm = ref.flatten(1).norm(dim=1)
                if (norm[torch.as_tensor(test)] <= 0).any():
                    rows.append({**row, "note": "dead block (all-zero features)"})
                    continue
                m, bias = fit_channel_map(src[fit].reshape(-1, src.shape[-1]),
                                          tgt[fit].reshape(-1, tgt.shape[-1]), ridge)
                learned = src @ m.T + bias
                t = torch.as_tensor(test)
                lab = labels[test]
                for kind, p in (("learned", learned), ("fixed", src)):
                    s = _summaries(_pair_errors(tgt[t], p[t], norm[t]), lab)
                    row[f"error_{kind}_mean"], row[f"error_{kind}_std"] = s["mean"], s["std"]
                    row[f"other_class_{kind}"], row[f"same_class_{kind}"] = s["other"], s["same"]
                    row[f"ratio_{kind}"] = (s["mean"] / s["other"] if s["other"] > 0
                                            else float("nan"))
                row["unmoved"] = float(((tgt[t] - ref[t]).flatten(1).norm(dim=1) / norm[t])
                                       .mean())
                rows.append(row)
    columns = ["transform", "family", "value", "block", "depth", "stride", "shift_cells",
               "error_learned_mean", "error_learned_std", "other_class_learned",
               "same_class_learned", "ratio_learned", "error_fixed_mean", "error_fixed_std",
               "other_class_fixed", "same_class_fixed", "ratio_fixed", "unmoved", "n_fit",
               "n_test", "n_positions", "note"]
    df = pd.DataFrame(rows).reindex(columns=columns)
    if model_name is not None:
        df.insert(0, "model", model_name)
    return df


PLOT_COLUMNS = ("ratio_learned", "ratio_fixed", "error_learned_mean", "error_fixed_mean")


def plot_equivariance(dfs_by_model, transforms: Sequence[str] | None = None, *,
                      y: str = "ratio_learned", panel_size=(3.0, 2.6)) -> Figure:
    """Equivariance against depth: one panel per transformation, one line per model.

    ``y="ratio_learned"`` (default): held-out error with the learned M_g over the other-class
    baseline (0 = equivariant, 1 = no better than another class's image), which puts blocks and
    models on one scale. ``"ratio_fixed"`` is the channel-fixed special case; the ``*_mean``
    columns plot raw errors with one standard deviation over images, and the other-class
    baseline dashed. ``dfs_by_model``: dict model -> :func:`equivariance_errors` frame, or one
    frame with a ``model`` column.
    """
    if isinstance(dfs_by_model, Mapping):
        if not dfs_by_model:
            raise ValueError("no models given (empty dict)")
        df = pd.concat([d.drop(columns="model", errors="ignore").assign(model=name)
                        for name, d in dfs_by_model.items()], ignore_index=True)
    elif isinstance(dfs_by_model, pd.DataFrame):
        df = dfs_by_model if "model" in dfs_by_model else dfs_by_model.assign(model="model")
    else:
        raise ValueError(f"expected a dict model -> DataFrame or a DataFrame, got "
                         f"{type(dfs_by_model).__name__}")
    if y not in PLOT_COLUMNS:
        raise ValueError(f"y={y!r}; allowed: {list(PLOT_COLUMNS)}")
    missing = {"block", "depth", "transform", y} - set(df.columns)
    if missing:
        raise ValueError(f"frame lacks column(s) {sorted(missing)}; make it with "
                         f"equivariance_errors")
    present = list(dict.fromkeys(df["transform"]))
    transforms = present if transforms is None else list(transforms)
    unknown = [t for t in transforms if t not in present]
    if unknown:
        raise ValueError(f"transforms {unknown} not in the frame; present: {present}")
    kind = "learned" if "learned" in y else "fixed"
    raw = y.startswith("error")
    models = list(dict.fromkeys(df["model"]))
    ncols = min(len(transforms), 4)
    nrows = math.ceil(len(transforms) / ncols)
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows + 0.5),
                 layout="constrained")
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False).ravel()
    for ax, t in zip(axes, transforms):
        for i, m in enumerate(models):
            cur = df[(df["model"] == m) & (df["transform"] == t)].sort_values("depth")
            if raw:
                ax.errorbar(cur["depth"], cur[y], yerr=cur[f"error_{kind}_std"].fillna(0),
                            color=f"C{i}", marker="o", ms=3, capsize=2, label=m)
                ax.plot(cur["depth"], cur[f"other_class_{kind}"], color=f"C{i}", ls="--",
                        lw=0.8, label=f"{m} (other class)")
            else:
                ax.plot(cur["depth"], cur[y], color=f"C{i}", marker="o", ms=3, label=m)
        if not raw:
            ax.axhline(1.0, color="0.6", lw=0.8, ls=":")
        ax.set_title(t, fontsize=9)
        ax.set_xticks(range(1, len(BLOCKS) + 1))
        ax.set_xticklabels(BLOCKS, fontsize=7)
        ax.grid(alpha=0.3)
    shown = df[df["transform"].isin(transforms)]
    top = np.nanmax(np.r_[shown[y].to_numpy(dtype=float), 1.0 if not raw else 0.0])
    if raw:
        top = max(top, np.nanmax(shown[f"other_class_{kind}"].to_numpy(dtype=float)))
    if np.isfinite(top) and top > 0:
        axes[0].set_ylim(0, 1.05 * top)
    for ax in axes[len(transforms):]:
        ax.set_visible(False)
    label = {"ratio_learned": "error (learned M_g) / other class",
             "ratio_fixed": "error (channels fixed) / other class",
             "error_learned_mean": "||phi(gx) - M g'phi(x)|| / ||phi(x)||",
             "error_fixed_mean": "||phi(gx) - g'phi(x)|| / ||phi(x)||"}[y]
    for ax in axes[::ncols]:
        ax.set_ylabel(label, fontsize=8)
    handles, names = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="outside upper right", ncols=min(len(names), 4),
                   frameon=False)
    return fig
