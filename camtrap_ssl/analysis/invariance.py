"""Study 3 (RQ3): how a classifier's prediction holds up when the input is translated, rotated,
flipped or zoomed, measured the study's way.

The study fine-tuned one SSL and one SL ResNet-50 on Snapshot Serengeti, picked four classes by
per-class precision and recall, took ten images per class, transformed every image along five
families of transformations and plotted the predicted probability of the true class, averaged over
the ten images, against the size of the transformation (SPEC section 5, Study 3). This module holds
those exact grids and the tested functions a notebook needs to redo it on any model:

* :data:`TRANSFORM_FAMILIES` and :func:`apply_transform` / :func:`transformed_batch`, batched
  tensor implementations of the five families;
* :func:`select_classes`, the study's four selection criteria made explicit;
* :func:`invariance_curves` (one row per image x transformation), :func:`invariance_summary` and
  :func:`bootstrap_band` (confidence band over images, which the study did not show);
* :func:`plot_invariance` and :func:`plot_invariance_grid`, in the style of the study's figures 5.1
  to 5.5.

Conventions, fixed here once so that every number means the same thing:

* Transformation values are always in the study's units: translation in pixels *of the study's
  224-px input*, rotation in degrees counter-clockwise, flip 0 = none / 1 = left-right, zoom as the
  magnification factor with 1 = no zoom (the study wrote "0x" for it).
* Translations are scaled to the actual input by ``size / 224`` per axis, so that the content moves
  by the same *fraction of the frame* as in the study. Positive horizontal moves content right,
  positive vertical moves content down (image rows grow downwards).
* Uncovered borders are filled by ``fill`` (``"zeros"``, the default, ``"border"`` or
  ``"reflection"``; the names are :func:`torch.nn.functional.grid_sample` padding modes).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

STUDY_INPUT_SIZE = 224
"""Input side in pixels to which the study's translation distances refer."""

TRANSLATION_PX: tuple[int, ...] = tuple(range(-100, 101, 25))
ROTATION_DEG: tuple[int, ...] = tuple(range(0, 351, 50))
FLIP: tuple[int, ...] = (0, 1)
"""0 = untouched, 1 = mirrored left/right (the study's only flip)."""
ZOOM: tuple[int, ...] = (1, 2, 4, 6, 8, 10)
"""Magnification factors; 1 = no zoom, the study's "0x"."""

TRANSFORM_FAMILIES: dict[str, tuple[int, ...]] = {
    "translate_x": TRANSLATION_PX,
    "translate_y": TRANSLATION_PX,
    "rotation": ROTATION_DEG,
    "flip": FLIP,
    "zoom": ZOOM,
}
"""The study's five families and their exact grids (SPEC section 5, Study 3)."""

IDENTITY_VALUE: dict[str, int] = {
    "translate_x": 0, "translate_y": 0, "rotation": 0, "flip": 0, "zoom": 1,
}
"""The value of each family that leaves an image untouched."""

FAMILY_TITLES: dict[str, str] = {
    "translate_x": "horizontal translation (px at 224-px input)",
    "translate_y": "vertical translation (px at 224-px input)",
    "rotation": "rotation (degrees, counter-clockwise)",
    "flip": "flip",
    "zoom": "zoom (magnification; 1x = none, the study's 0x)",
}

FILL_MODES = ("zeros", "border", "reflection")

CRITERIA: dict[str, str] = {
    "both_high": "high precision and recall for both models",
    "ssl_only": "high for the SSL model only",
    "sl_only": "high for the SL model only",
    "both_low": "low precision and recall for both models",
}
"""The study's four class-selection criteria, in the order of its preferred classes."""

STUDY_CLASSES: tuple[str, ...] = ("zebra", "guineaFowl", "ostrich", "lionMale")
"""The classes the study chose, one per criterion of :data:`CRITERIA`."""


# --------------------------------------------------------------------------------------------
# transformations
# --------------------------------------------------------------------------------------------
def _check_family(family: str) -> None:
    if family not in TRANSFORM_FAMILIES:
        raise ValueError(f"family={family!r} is not a transformation family; "
                         f"allowed: {sorted(TRANSFORM_FAMILIES)}")


def _flip_value(value) -> int:
    if isinstance(value, str):
        names = {"none": 0, "no": 0, "lr": 1, "left-right": 1, "left_right": 1, "horizontal": 1}
        if value.lower() not in names:
            raise ValueError(f"flip value={value!r}; allowed: 0/1, False/True or {sorted(names)}")
        return names[value.lower()]
    if value not in (0, 1):  # True/False compare equal to 1/0
        raise ValueError(f"flip value={value!r}; allowed: 0 (none) or 1 (left-right)")
    return int(value)


def _check_value(family: str, value) -> float:
    if family == "flip":
        return float(_flip_value(value))
    number = (int, float, np.integer, np.floating)
    if isinstance(value, (bool, str)) or not isinstance(value, number):
        raise ValueError(f"{family} value={value!r} must be a number")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{family} value={value!r} must be finite")
    if family == "zoom" and value <= 0:
        raise ValueError(f"zoom value={value!r} must be > 0 (1 = no zoom)")
    return value


def is_identity(family: str, value) -> bool:
    """True when ``value`` of ``family`` leaves every image untouched."""
    _check_family(family)
    return _check_value(family, value) == IDENTITY_VALUE[family]


def value_label(family: str, value) -> str:
    """Human-readable tick label of one transformation value (e.g. ``"no zoom"``, ``"50°"``)."""
    _check_family(family)
    v = _check_value(family, value)
    if family == "flip":
        return "left-right" if v else "none"
    if family == "zoom":
        return "no zoom" if v == 1 else f"{v:g}x"
    if family == "rotation":
        return f"{v:g}°"
    return f"{v:+g} px" if v else "0 px"


def translation_pixels(value: float, size: int, reference_size: int = STUDY_INPUT_SIZE,
                       subpixel: bool = False) -> float:
    """Pixels actually shifted at an input side of ``size`` for a study distance ``value``.

    The study's distances are pixels of a 224-px input; scaling by ``size / reference_size`` keeps
    the shift the same fraction of the frame. By default the result is rounded to whole pixels
    (``subpixel=False``) because a whole-pixel shift moves the content and nothing else, whereas a
    sub-pixel shift needs interpolation, which also blurs the image and so mixes a second
    perturbation into the translation. Rounding moves each grid point by at most half a pixel (at
    64 px: 25 -> 7 instead of 7.14); ``subpixel=True`` keeps the exact distance with bilinear
    interpolation instead.
    """
    if size <= 0 or reference_size <= 0:
        raise ValueError(f"size={size} and reference_size={reference_size} must be positive")
    pixels = float(value) * size / reference_size
    return pixels if subpixel else float(round(pixels))


def _pixel_affine(family: str, value: float, height: int, width: int, reference_size: int,
                  subpixel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Map from output to input pixel coordinates (centred, y down): ``p_in = A @ p_out + b``."""
    if family == "translate_x":
        dx = translation_pixels(value, width, reference_size, subpixel)
        return np.eye(2), np.array([-dx, 0.0])
    if family == "translate_y":
        dy = translation_pixels(value, height, reference_size, subpixel)
        return np.eye(2), np.array([0.0, -dy])
    if family == "rotation":
        # Content turns counter-clockwise as displayed (torchvision's sign); with y pointing
        # down the output-to-input map is [[c, -s], [s, c]].
        t = math.radians(value)
        c, s = math.cos(t), math.sin(t)
        return np.array([[c, -s], [s, c]]), np.zeros(2)
    if family == "zoom":
        # A centre crop of side size/k resized back to size: output pixel p samples the input at p/k
        # around the centre. Done as one affine map the crop may have a fractional side (64/6 px),
        # which a crop-then-resize on integer pixels could not honour, and the outermost output
        # pixels interpolate with the true neighbours just outside the crop instead of clamping
        # to the crop's edge.
        return np.eye(2) / value, np.zeros(2)
    raise AssertionError(family)


def _theta(a: np.ndarray, b: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixel-space affine map -> the normalized ``theta`` of ``affine_grid`` (align_corners=False).

    Normalized coordinates scale x by 2/W and y by 2/H, so off-diagonal terms pick up the aspect
    ratio; without this a rotation of a non-square image would shear it.
    """
    sx, sy = width / 2.0, height / 2.0
    return np.array([
        [a[0, 0], a[0, 1] * sy / sx, b[0] / sx],
        [a[1, 0] * sx / sy, a[1, 1], b[1] / sy],
    ])


def transformed_batch(image: torch.Tensor, family: str, values: Sequence | None = None, *,
                      fill: str = "zeros", reference_size: int = STUDY_INPUT_SIZE,
                      subpixel: bool = False) -> torch.Tensor:
    """All transformed copies of one image (C, H, W) along a family, as one (len(values), C, H, W)
    batch, so that they go through a network together.

    ``values`` defaults to the study's grid of the family. The identity value returns an exact copy
    (no resampling), so that the untransformed point of a curve is the original prediction.
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 3:
        raise ValueError(f"image must be a (C, H, W) tensor, got "
                         f"{getattr(image, 'shape', type(image))}")
    return _transform_copies(image, family, values, fill, reference_size, subpixel)


def _transform_copies(image, family, values, fill, reference_size, subpixel) -> torch.Tensor:
    _check_family(family)
    if fill not in FILL_MODES:
        raise ValueError(f"fill={fill!r}; allowed: {list(FILL_MODES)}")
    if not image.is_floating_point():
        raise ValueError(f"image must be a float tensor in [0, 1], got dtype {image.dtype}")
    values = list(TRANSFORM_FAMILIES[family] if values is None else values)
    if not values:
        raise ValueError("values must not be empty")
    vals = [_check_value(family, v) for v in values]
    n, (c, h, w) = len(vals), image.shape
    if family == "flip":
        out = image.unsqueeze(0).repeat(n, 1, 1, 1)
        mirrored = torch.tensor([v == 1 for v in vals], device=image.device)
        out[mirrored] = torch.flip(out[mirrored], dims=(-1,))
        return out
    thetas = []
    for v in vals:
        a, b = _pixel_affine(family, v, h, w, reference_size, subpixel)
        thetas.append(_theta(a, b, h, w))
    theta = torch.as_tensor(np.stack(thetas), dtype=image.dtype, device=image.device)
    # Whole-pixel translations sample exactly on pixel centres: nearest mode then copies pixels
    # bit-exactly, where bilinear would leave rounding noise of ~1e-7.
    whole = family.startswith("translate") and all(
        float(t).is_integer() for t in
        (translation_pixels(v, w if family == "translate_x" else h, reference_size, subpixel)
         for v in vals))
    grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
    out = F.grid_sample(image.unsqueeze(0).expand(n, c, h, w), grid,
                        mode="nearest" if whole else "bilinear",
                        padding_mode=fill, align_corners=False)
    identity = [v == IDENTITY_VALUE[family] for v in vals]
    if any(identity):
        out[torch.tensor(identity, device=image.device)] = image
    return out


def apply_transform(images: torch.Tensor, family: str, value, *, fill: str = "zeros",
                    reference_size: int = STUDY_INPUT_SIZE, subpixel: bool = False) -> torch.Tensor:
    """Apply one transformation value to every image of a batch (N, C, H, W) or one image (C, H, W).

    See the module docstring for units and signs, :func:`translation_pixels` for how distances scale
    and round, and ``fill`` for the uncovered border: zeros (black) by default, because it adds no
    image content (reflection would paint mirrored animals into the frame, border would smear edge
    pixels into stripes) and is torchvision's default fill for affine transforms.
    """
    if not isinstance(images, torch.Tensor) or images.ndim not in (3, 4):
        raise ValueError(f"images must be a (N, C, H, W) or (C, H, W) tensor, got "
                         f"{getattr(images, 'shape', type(images))}")
    single = images.ndim == 3
    batch = images.unsqueeze(0) if single else images
    out = torch.stack([_transform_copies(im, family, [value], fill, reference_size, subpixel)[0]
                       for im in batch]) if len(batch) else batch.clone()
    return out[0] if single else out


# --------------------------------------------------------------------------------------------
# class selection
# --------------------------------------------------------------------------------------------
def _metrics_frame(metrics, name: str) -> pd.DataFrame:
    """Accept a DataFrame (index or ``class`` column; ``precision``/``recall`` columns) or a dict
    class -> (precision, recall) / {"precision": .., "recall": ..}."""
    if isinstance(metrics, pd.DataFrame):
        frame = metrics.set_index("class") if "class" in metrics.columns else metrics
        missing = {"precision", "recall"} - set(frame.columns)
        if missing:
            raise ValueError(f"{name} lacks column(s) {sorted(missing)}; it needs 'precision' and "
                             f"'recall', one row per class")
        frame = frame[["precision", "recall"]]
    elif isinstance(metrics, Mapping):
        rows = {}
        for cls, val in metrics.items():
            if isinstance(val, Mapping):
                rows[cls] = (val["precision"], val["recall"])
            elif isinstance(val, Sequence) and len(val) == 2:
                rows[cls] = tuple(val)
            else:
                raise ValueError(f"{name}[{cls!r}]={val!r}; expected (precision, recall)")
        frame = pd.DataFrame.from_dict(rows, orient="index", columns=["precision", "recall"])
    else:
        raise ValueError(f"{name} must be a pandas DataFrame or a dict class -> (precision, "
                         f"recall), got {type(metrics).__name__}")
    frame = frame.astype(float)
    frame.index = frame.index.map(str)
    if frame.index.has_duplicates:
        raise ValueError(f"{name} lists a class more than once")
    bad = frame[(frame < 0).any(axis=1) | (frame > 1).any(axis=1)]
    if len(bad):
        raise ValueError(f"{name}: precision/recall must lie in [0, 1]; "
                         f"bad classes {list(bad.index)}")
    return frame


@dataclass
class ClassSelection:
    """Result of :func:`select_classes`.

    ``table``: one row per class, both models' precision and recall and one boolean column per
    criterion. ``choices``: one row per criterion with the qualifying classes, the chosen class (or
    None) and why. ``chosen``: criterion -> class or None.
    """
    table: pd.DataFrame
    choices: pd.DataFrame
    chosen: dict[str, str | None]
    high: float
    low: float
    notes: list[str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        """The chosen classes in criterion order, without the criteria that found none."""
        return [c for c in self.chosen.values() if c is not None]


def select_classes(metrics_ssl, metrics_sl, high: float | None = None, low: float | None = None,
                   prefer: Sequence[str | None] | None = STUDY_CLASSES, *,
                   high_quantile: float = 0.5, low_quantile: float = 0.5) -> ClassSelection:
    """Pick one class per criterion of :data:`CRITERIA` from both models' per-class precision and
    recall, the study's way, with the thresholds it left unstated made explicit.

    A class is *high* for a model when precision and recall are both >= ``high`` and *low* when both
    are < ``low``. Criteria: ``both_high`` (high for both models), ``ssl_only`` (high for SSL, not
    high for SL), ``sl_only`` (the reverse) and ``both_low`` (low for both). With ``low <= high``
    the four are mutually exclusive, so no class can be chosen twice.

    The study gives no thresholds, and absolute ones would not carry over from Serengeti's 48
    classes to the small embedded world, so by default both are quantiles of the pooled precision
    and recall values of both models (``high_quantile``/``low_quantile``, the median unless set):
    "high" means better than the typical class, "low" worse. Pass ``high``/``low`` as numbers to fix
    them.

    ``prefer`` holds one class per criterion (default: the study's zebra, guineaFowl, ostrich,
    lionMale). The preferred class is chosen when it qualifies; otherwise the qualifying class that
    fits the criterion best (largest min(P, R) over both models for ``both_high``; largest gap
    between the models' min(P, R) for the one-model criteria; smallest max(P, R) over both models
    for ``both_low``); otherwise None, with the reason in ``choices``. Classes missing from one
    table or with an undefined (NaN) value qualify for nothing.
    """
    ssl = _metrics_frame(metrics_ssl, "metrics_ssl")
    sl = _metrics_frame(metrics_sl, "metrics_sl")
    criteria = list(CRITERIA)
    if prefer is None:
        prefer = [None] * len(criteria)
    prefer = list(prefer)
    if len(prefer) != len(criteria):
        raise ValueError(f"prefer needs one class (or None) per criterion {criteria}, "
                         f"got {len(prefer)}")
    for q, name in ((high_quantile, "high_quantile"), (low_quantile, "low_quantile")):
        if not 0 <= q <= 1:
            raise ValueError(f"{name}={q} must lie in [0, 1]")
    table = ssl.add_prefix("ssl_").join(sl.add_prefix("sl_"), how="outer")
    if table.empty:
        raise ValueError("metrics_ssl and metrics_sl list no classes")
    pooled = table.to_numpy().ravel()
    pooled = pooled[~np.isnan(pooled)]
    if pooled.size == 0:
        raise ValueError("no finite precision/recall values in metrics_ssl and metrics_sl")
    high = float(np.quantile(pooled, high_quantile)) if high is None else float(high)
    low = float(np.quantile(pooled, low_quantile)) if low is None else float(low)
    if low > high:
        raise ValueError(f"low={low} must not exceed high={high}, or a class could be both")

    ssl_min = table[["ssl_precision", "ssl_recall"]].min(axis=1, skipna=False)
    sl_min = table[["sl_precision", "sl_recall"]].min(axis=1, skipna=False)
    ssl_max = table[["ssl_precision", "ssl_recall"]].max(axis=1, skipna=False)
    sl_max = table[["sl_precision", "sl_recall"]].max(axis=1, skipna=False)
    complete = table.notna().all(axis=1)
    ssl_high, sl_high = complete & (ssl_min >= high), complete & (sl_min >= high)
    table["both_high"] = ssl_high & sl_high
    table["ssl_only"] = ssl_high & ~sl_high
    table["sl_only"] = sl_high & ~ssl_high
    table["both_low"] = complete & (ssl_max < low) & (sl_max < low)
    score = {
        "both_high": pd.concat([ssl_min, sl_min], axis=1).min(axis=1),
        "ssl_only": ssl_min - sl_min,
        "sl_only": sl_min - ssl_min,
        "both_low": -pd.concat([ssl_max, sl_max], axis=1).max(axis=1),
    }
    rows, chosen, notes = [], {}, []
    for crit, pref in zip(criteria, prefer):
        qualifying = list(table.index[table[crit]])
        ranked = sorted(qualifying, key=lambda c: (-score[crit][c], c))
        if pref is not None and pref in qualifying:
            pick, reason = pref, "preferred class qualifies"
        elif ranked:
            pick = ranked[0]
            why = ("is not in the tables" if pref not in table.index
                   else "lacks a value for a model" if not complete[pref]
                   else "does not qualify")
            reason = ("best qualifying class" if pref is None
                      else f"preferred {pref!r} {why}; best qualifying class")
        else:
            pick, reason = None, (f"no class qualifies ({CRITERIA[crit]}; high={high:.3g}, "
                                  f"low={low:.3g})")
            notes.append(f"{crit}: {reason}")
        chosen[crit] = pick
        rows.append({"criterion": crit, "description": CRITERIA[crit], "qualifying": ranked,
                     "preferred": pref, "chosen": pick, "reason": reason})
    choices = pd.DataFrame(rows).set_index("criterion")
    return ClassSelection(table=table, choices=choices, chosen=chosen, high=high, low=low,
                          notes=notes)


# --------------------------------------------------------------------------------------------
# curves
# --------------------------------------------------------------------------------------------
def _families_arg(families) -> dict[str, list]:
    if families is None:
        return {k: list(v) for k, v in TRANSFORM_FAMILIES.items()}
    if isinstance(families, str):
        families = [families]
    if isinstance(families, Mapping):
        out = {}
        for fam, vals in families.items():
            _check_family(fam)
            out[fam] = list(TRANSFORM_FAMILIES[fam] if vals is None else vals)
    else:
        out = {}
        for fam in families:
            _check_family(fam)
            out[fam] = list(TRANSFORM_FAMILIES[fam])
    for fam, vals in out.items():
        if not vals:
            raise ValueError(f"family {fam!r} has no values")
        for v in vals:
            _check_value(fam, v)
    return out


def _check_images(images) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images must be a (N, C, H, W) float tensor in [0, 1], got "
                         f"{getattr(images, 'shape', type(images))}")
    if not images.is_floating_point():
        raise ValueError(f"images must be float in [0, 1], got dtype {images.dtype}")
    if len(images) and (images.min() < -1e-6 or images.max() > 1 + 1e-6):
        raise ValueError("images must lie in [0, 1] (models normalize inside forward)")


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


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
    _check_images(images)
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
                moved = [float(_check_value(fam, v)) for v in vals if not is_identity(fam, v)]
                if moved:
                    copies = _transform_copies(images[i], fam, moved, fill, reference_size,
                                               subpixel)
                    for v, x in zip(moved, copies):
                        yield (i, fam, v), x

    device = _model_device(model)
    was_training = model.training
    model.eval()
    probs: dict = {}
    n_batches = math.ceil(n_inputs / batch_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=n_batches, desc=f"invariance{f' {model_name}' if model_name else ''}",
                   unit="batch")
    try:
        with torch.no_grad():
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
        model.train(was_training)
        if bar is not None:
            bar.close()

    rows = []
    for i in range(len(images)):
        y = int(labels[i])
        p0 = probs[(i, None, None)]
        pred0 = int(p0.argmax())
        for fam, vals in fams.items():
            for v in vals:
                v = float(_check_value(fam, v))
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


def _with_model(df_or_dict) -> pd.DataFrame:
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
    df = _with_model(curves)
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
    df = _with_model(curves)
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
# plots
# --------------------------------------------------------------------------------------------
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
    df = _with_model(df_by_model)
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
    from matplotlib.figure import Figure

    _check_family(family)
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
    from matplotlib.figure import Figure

    bands, models = _band_frame(df_by_model, n_boot, ci, seed, column)
    present_f = [f for f in TRANSFORM_FAMILIES if f in set(bands["family"])]
    families = present_f if families is None else list(families)
    for f in families:
        _check_family(f)
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
