"""Study 3 (RQ3): how a classifier's prediction, and its representation, hold up when the input
is translated, rotated, flipped or zoomed.

The study fine-tuned one SSL and one SL ResNet-50 on Snapshot Serengeti, picked four classes by
per-class precision and recall, took ten images per class, transformed every image along five
families of transformations and plotted the predicted probability of the true class, averaged over
the ten images, against the size of the transformation (SPEC section 5, Study 3). The package
splits that along its layers: the grids and their tensor implementations are in
:mod:`camtrap_ssl.analysis.transforms`, the class selection in
:mod:`camtrap_ssl.analysis.class_selection`, the figures in
:mod:`camtrap_ssl.analysis.invariance_plots`, and this module holds the measurements:

* :func:`invariance_curves` (one row per image x transformation), :func:`invariance_summary` and
  :func:`bootstrap_band` (confidence band over images, which the study did not show);
* :func:`representation_invariance`, a representation-level measure from the literature
  (Ericsson, Gouk & Hospedales, CVPR 2022), beside the study's probability curves, which mix
  what the features keep with what the classifier head reads from them.

The names of the transforms and class-selection modules most used with these are re-exported
here, so a notebook needs one import for the measurements.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.covariance import LedoitWolf
from torch import nn

from camtrap_ssl.analysis.class_selection import (  # noqa: F401  (re-exported)
    CRITERIA,
    STUDY_CLASSES,
    ClassSelection,
    select_classes,
)
from camtrap_ssl.analysis.transforms import (  # noqa: F401  (re-exported)
    FAMILY_TITLES,
    FILL_MODES,
    FLIP,
    IDENTITY_VALUE,
    ROTATION_DEG,
    STUDY_INPUT_SIZE,
    TRANSFORM_FAMILIES,
    TRANSLATION_PX,
    ZOOM,
    apply_transform,
    check_family,
    check_value,
    is_identity,
    transform_copies,
    transformed_batch,
    translation_pixels,
    value_label,
)
from camtrap_ssl.core.progress import progress_bar
from camtrap_ssl.models.utils import blocks, check_images, eval_mode, model_device


def _families_arg(families) -> dict[str, list]:
    if families is None:
        return {k: list(v) for k, v in TRANSFORM_FAMILIES.items()}
    if isinstance(families, str):
        families = [families]
    if isinstance(families, Mapping):
        out = {}
        for fam, vals in families.items():
            check_family(fam)
            out[fam] = list(TRANSFORM_FAMILIES[fam] if vals is None else vals)
    else:
        out = {}
        for fam in families:
            check_family(fam)
            out[fam] = list(TRANSFORM_FAMILIES[fam])
    for fam, vals in out.items():
        if not vals:
            raise ValueError(f"family {fam!r} has no values")
        for v in vals:
            check_value(fam, v)
    return out


def invariance_curves(model: nn.Module, images: torch.Tensor, labels, families=None, *,
                      batch_size: int = 64, class_names: Sequence[str] | None = None,
                      model_name: str | None = None, fill: str = "zeros",
                      reference_size: int = STUDY_INPUT_SIZE, subpixel: bool = False,
                      progress: bool = True) -> pd.DataFrame:
    """Predict every image under every transformation value; one row per (image, family, value).

    ``families``: None (all five study grids), a list of family names, or a dict family -> values.
    Inputs are streamed through the model in batches of ``batch_size`` across images and values,
    generated lazily (at 224 px the full set would not fit in memory). The untransformed image is
    forwarded once; each family's identity value reuses that prediction instead of a second pass, so
    one image along one study family costs at most ceil(n_values / batch_size) forward calls.

    Columns: ``image`` (index into ``images``), ``label``, ``class``, ``family``, ``value`` (study
    units), ``value_label``, ``p_true`` (softmax probability of the true class),
    ``p_true_original``, ``pred``, ``pred_original``, ``pred_changed`` (prediction differs from the
    untransformed one), ``p_pred`` (probability of the predicted class), ``p_top_original``
    (probability, under the transformation, of the class predicted for the original), ``correct``,
    and ``model`` when ``model_name`` is given.
    """
    check_images(images)
    labels = torch.as_tensor(labels).reshape(-1)
    if labels.dtype.is_floating_point or len(labels) != len(images):
        raise ValueError(f"labels must be {len(images)} integer class indices, one per image; got "
                         f"{len(labels)} of dtype {labels.dtype}")
    if len(images) == 0:
        raise ValueError("images is empty")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    if fill not in FILL_MODES:
        raise ValueError(f"fill={fill!r}; allowed: {list(FILL_MODES)}")
    fams = _families_arg(families)
    labels = labels.long()
    if labels.min() < 0:
        raise ValueError("labels must be non-negative class indices")
    if class_names is not None and labels.max() >= len(class_names):
        raise ValueError(f"label {int(labels.max())} has no entry in class_names "
                         f"({len(class_names)} names)")

    # Inputs per image: the untransformed one, keyed (image, None, None), plus every non-identity
    # value of every family, keyed (image, family, value).
    n_inputs = len(images) * (1 + sum(not is_identity(f, v) for f, vals in fams.items()
                                      for v in vals))

    def inputs():
        """Yield (key, image tensor), building one family's copies of one image at a time."""
        for i in range(len(images)):
            yield (i, None, None), images[i]
            for fam, vals in fams.items():
                moved = [float(check_value(fam, v)) for v in vals if not is_identity(fam, v)]
                if moved:
                    copies = transform_copies(images[i], fam, moved, fill, reference_size,
                                               subpixel)
                    for v, x in zip(moved, copies):
                        yield (i, fam, v), x

    device = model_device(model)
    probs: dict = {}
    n_batches = math.ceil(n_inputs / batch_size)
    bar = None
    if progress:
        bar = progress_bar(total=n_batches, unit="batch",
                           desc=f"invariance{f' {model_name}' if model_name else ''}")
    try:
        with eval_mode(model), torch.no_grad():
            buf_keys, buf = [], []
            stream = inputs()
            while True:
                item = next(stream, None)
                if item is not None:
                    buf_keys.append(item[0])
                    buf.append(item[1])
                if buf and (len(buf) == batch_size or item is None):
                    logits = model(torch.stack(buf).to(device))
                    if logits.ndim != 2 or logits.shape[0] != len(buf):
                        raise ValueError(f"model must return (N, num_classes) logits, got "
                                         f"{tuple(logits.shape)}")
                    if int(labels.max()) >= logits.shape[1]:  # checked on the first batch
                        raise ValueError(f"label {int(labels.max())} is out of range for a model "
                                         f"with {logits.shape[1]} classes")
                    p = torch.softmax(logits.float(), dim=1).cpu()
                    for k, row in zip(buf_keys, p):
                        probs[k] = row
                    buf_keys, buf = [], []
                    if bar is not None:
                        bar.update(1)
                if item is None:
                    break
    finally:
        if bar is not None:
            bar.close()

    rows = []
    for i in range(len(images)):
        y = int(labels[i])
        p0 = probs[(i, None, None)]
        pred0 = int(p0.argmax())
        for fam, vals in fams.items():
            for v in vals:
                v = float(check_value(fam, v))
                p = p0 if is_identity(fam, v) else probs[(i, fam, v)]
                pred = int(p.argmax())
                rows.append({
                    "image": i, "label": y,
                    "class": class_names[y] if class_names is not None else str(y),
                    "family": fam, "value": v, "value_label": value_label(fam, v),
                    "p_true": float(p[y]), "p_true_original": float(p0[y]),
                    "pred": pred, "pred_original": pred0, "pred_changed": pred != pred0,
                    "p_pred": float(p[pred]), "p_top_original": float(p[pred0]),
                    "correct": pred == y,
                })
    df = pd.DataFrame(rows)
    if model_name is not None:
        df.insert(0, "model", model_name)
    return df


def with_model(df_or_dict) -> pd.DataFrame:
    """A dict model -> frame becomes one frame with a ``model`` column."""
    if isinstance(df_or_dict, Mapping):
        if not df_or_dict:
            raise ValueError("no models given (empty dict)")
        parts = []
        for name, df in df_or_dict.items():
            part = df.drop(columns="model", errors="ignore").copy()
            part.insert(0, "model", name)
            parts.append(part)
        return pd.concat(parts, ignore_index=True)
    if not isinstance(df_or_dict, pd.DataFrame):
        raise ValueError(f"expected a DataFrame from invariance_curves or a dict model -> "
                         f"DataFrame, got {type(df_or_dict).__name__}")
    return df_or_dict


_CURVE_COLUMNS = {"image", "class", "family", "value", "p_true", "p_true_original",
                  "pred_changed", "correct", "pred_original", "label"}


def _check_curves(df: pd.DataFrame, needed=_CURVE_COLUMNS) -> None:
    missing = set(needed) - set(df.columns)
    if missing:
        raise ValueError(f"curves frame lacks column(s) {sorted(missing)}; "
                         f"make it with invariance_curves")


def invariance_summary(curves, by: Sequence[str] = ("model", "family")) -> pd.DataFrame:
    """One row per model and family (or any ``by``): how much of the prediction survives.

    Identity values are left out (they match the original by construction and would inflate every
    score). Columns:

    * ``p_true_original`` / ``p_true_transformed``: mean true-class probability before / after;
    * ``retained``: their ratio, the share of the true-class probability kept. A ratio of means,
      not a mean of per-image ratios, because per-image ratios explode for images the model
      already got wrong (p_true near 0), which the study's "low for both" class is full of;
    * ``delta_p_true``: mean(p_true after - p_true before), the same in absolute terms;
    * ``consistency``: share of transformed copies whose predicted class is unchanged;
    * ``accuracy_original`` / ``accuracy_transformed``; ``n``: rows averaged.
    """
    df = with_model(curves)
    _check_curves(df)
    by = [b for b in by if b != "model" or "model" in df.columns]  # one model: no model column
    missing = set(by) - set(df.columns)
    if missing:
        raise ValueError(f"by={list(by)}: column(s) {sorted(missing)} not in the frame")
    moved = df[[not is_identity(f, v) for f, v in zip(df["family"], df["value"])]].copy()
    moved["accuracy_original"] = moved["pred_original"] == moved["label"]
    moved["delta"] = moved["p_true"] - moved["p_true_original"]
    moved["same"] = ~moved["pred_changed"].astype(bool)
    g = moved.groupby(by, sort=False) if by else moved.groupby(lambda _: 0)
    out = pd.DataFrame({
        "p_true_original": g["p_true_original"].mean(),
        "p_true_transformed": g["p_true"].mean(),
        "delta_p_true": g["delta"].mean(),
        "consistency": g["same"].mean(),
        "accuracy_original": g["accuracy_original"].mean(),
        "accuracy_transformed": g["correct"].mean(),
        "n": g.size(),
    })
    out.insert(2, "retained", out["p_true_transformed"] / out["p_true_original"])
    return out.reset_index() if by else out.reset_index(drop=True)


def bootstrap_band(curves, n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
                   column: str = "p_true") -> pd.DataFrame:
    """Mean of ``column`` over a class's images per (model, class, family, value), with a percentile
    bootstrap confidence band over images.

    The study averaged ten images per class and showed no uncertainty; with ten images a curve's
    wiggles may be noise, which this band makes visible. Images are resampled with replacement,
    the *same* resample for every value of a family, so that a band describes whole curves of a
    resampled image set. Returns columns (``model``), ``class``, ``family``, ``value``, ``mean``,
    ``low``, ``high``, ``n_images``. With one image the band collapses onto the mean.
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci={ci} must lie strictly between 0 and 1")
    if n_boot < 1:
        raise ValueError(f"n_boot={n_boot} must be >= 1")
    df = with_model(curves)
    _check_curves(df, {"image", "class", "family", "value", column})
    keys = (["model"] if "model" in df.columns else []) + ["class", "family"]
    rng = np.random.default_rng(seed)
    alpha = (1 - ci) / 2
    parts = []
    for key, group in df.groupby(keys, sort=False):
        wide = group.pivot_table(index="image", columns="value", values=column, aggfunc="mean")
        m = wide.to_numpy(dtype=float)
        n = m.shape[0]
        idx = rng.integers(0, n, size=(n_boot, n))
        boot = np.nanmean(m[idx], axis=1)  # (n_boot, n_values)
        part = pd.DataFrame({
            "value": wide.columns.to_numpy(dtype=float),
            "mean": np.nanmean(m, axis=0),
            "low": np.quantile(boot, alpha, axis=0),
            "high": np.quantile(boot, 1 - alpha, axis=0),
            "n_images": np.sum(~np.isnan(m), axis=0),
        })
        for k, v in zip(keys, key if isinstance(key, tuple) else (key,)):
            part[k] = v
        parts.append(part[keys + ["value", "mean", "low", "high", "n_images"]])
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------------------------
# representation-level invariance
# --------------------------------------------------------------------------------------------
def pooled_features(model: nn.Module, images: torch.Tensor, batch_size: int = 64
                    ) -> torch.Tensor:
    """(N, C) spatial means of ``layer4``'s output: the representation a ResNet's head reads."""
    store: list[torch.Tensor] = []
    handle = blocks(model)["layer4"].register_forward_hook(
        lambda m, i, o: store.append(o.detach().mean((-2, -1)).cpu()))
    device = model_device(model)
    try:
        with eval_mode(model), torch.no_grad():
            for s in range(0, len(images), batch_size):
                model(images[s:s + batch_size].to(device))
    finally:
        handle.remove()
    return torch.cat(store).double()


def _whitener(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and inverse square root of the Ledoit-Wolf shrunk covariance (a few dozen images
    cannot estimate a full covariance of a hundred channels; shrinkage keeps it invertible)."""
    lw = LedoitWolf().fit(feats)
    vals, vecs = np.linalg.eigh(lw.covariance_)
    return lw.location_, vecs @ np.diag(1 / np.sqrt(np.clip(vals, 1e-12, None))) @ vecs.T


def representation_invariance(model: nn.Module, images: torch.Tensor, labels, families=None, *,
                              fill: str = "zeros", batch_size: int = 64,
                              model_name: str | None = None) -> pd.DataFrame:
    """Invariance of the representation, per transformation family and value.

    Ericsson, Gouk & Hospedales ("Why do self-supervised models transfer? Investigating the impact
    of invariance on downstream tasks", CVPR 2022) measure invariance as the cosine similarity of
    the features of an image and of its transformed copy after *whitening* with the mean and
    covariance of the features over the dataset (a Mahalanobis cosine similarity), so that a
    direction shared by all images (post-ReLU features are all positive) does not make every pair
    look similar. We use :func:`pooled_features` (what the classifier reads), the untransformed
    images' mean and Ledoit-Wolf covariance, and add the baseline the raw number needs to be read:
    ``other_class``, the same similarity between an image and the transformed copies of every
    image of another class (all pairs, so independent of order). ``relative`` =
    (similarity - other_class) / (1 - other_class): 1 = the representation does not move at all,
    0 = the transformed image is no closer than another class's.

    Returns one row per (family, value) without identity values: ``family``, ``value``,
    ``similarity`` (mean over images), ``similarity_std``, ``other_class``, ``relative``,
    ``n_images``, plus ``model``. ``families`` as in :func:`invariance_curves`.
    """
    check_images(images)
    labels = np.asarray(torch.as_tensor(labels).reshape(-1).cpu(), dtype=np.int64)
    if len(labels) != len(images):
        raise ValueError(f"labels has {len(labels)} entries for {len(images)} images")
    if len(np.unique(labels)) < 2:
        raise ValueError("labels: the other-class baseline needs images of >= 2 classes")
    fams = _families_arg(families)
    base = pooled_features(model, images, batch_size).numpy()
    mu, w = _whitener(base)

    def unit(f):
        z = (f - mu) @ w
        return z / np.linalg.norm(z, axis=1, keepdims=True).clip(1e-12)

    z0 = unit(base)
    other = labels[:, None] != labels[None, :]
    rows = []
    for fam, vals in fams.items():
        for v in vals:
            if is_identity(fam, v):
                continue
            moved = apply_transform(images, fam, v, fill=fill)
            z1 = unit(pooled_features(model, moved, batch_size).numpy())
            sim = z0 @ z1.T  # (i, j): image i against transformed image j
            diag = np.diag(sim)
            oc = float(sim[other].mean())
            rows.append({"family": fam, "value": float(check_value(fam, v)),
                         "similarity": float(diag.mean()),
                         "similarity_std": float(diag.std(ddof=1)) if len(diag) > 1
                         else float("nan"),
                         "other_class": oc,
                         "relative": (float(diag.mean()) - oc) / (1 - oc) if oc < 1
                         else float("nan"),
                         "n_images": len(diag)})
    df = pd.DataFrame(rows)
    if model_name is not None:
        df.insert(0, "model", model_name)
    return df
