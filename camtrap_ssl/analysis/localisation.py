"""Does a saliency map look at the animal? The field's localisation metrics, per model and method.

The study claimed from pictures that SSL maps sit on the animal and SL maps spread onto sky and
grass. The embedded world's exact masks turn that into numbers; this module computes them with
Quantus (Hedström et al., JMLR 2023), the field's library of explanation metrics, so that they
mean what they mean elsewhere:

* ``relevance_mass`` - Quantus ``RelevanceMassAccuracy`` (Arras et al. 2022): share of the map's
  relevance inside the mask;
* ``relevance_rank`` - Quantus ``RelevanceRankAccuracy`` (Arras et al. 2022): share of the K
  most relevant pixels that lie in the mask, K = the mask's area;
* ``pointing_game`` - Quantus ``PointingGame`` (Zhang et al. 2018) on the mask dilated by the
  usual 15 px at 224 px scaled to our input (:func:`pointing_tolerance`); a hit when any maximal
  pixel lies in it.

Blank maps (all zero: Score-CAM's paper variant can produce them, and a map of a class the
model never saw can be flat) have no location. Quantus would score a constant map a pointing-game
*hit* and the old table dropped blanks as NaN, which biased comparisons toward the images where a
method worked. Here they are counted (``n_blank``) and scored 0 on every metric: a map that
points nowhere did not point at the animal. Scores are reported for all images and, given each
model's correctness per image, separately for correctly and incorrectly classified images,
because on a wrong image the true class's evidence is a different question from a right one's.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from camtrap_ssl.analysis.backgrounds import bootstrap_ci, dilate, maps_2d
from camtrap_ssl.models.utils import eval_mode, model_device

METRICS: tuple[str, ...] = ("relevance_mass", "relevance_rank", "pointing_game")
_EPS = 1e-12


def pointing_tolerance(size: int, at_224: int = 15) -> int:
    """The pointing game's tolerance in pixels at input side ``size`` (15 px at 224 px)."""
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive int (pixels), got {size!r}")
    return int(round(at_224 * size / 224))


def blank_maps(maps) -> np.ndarray:
    """Bool (N,): maps that are constant (all zero after normalisation), i.e. point nowhere."""
    m = maps_2d(maps).flatten(1)
    return ((m.max(1).values - m.min(1).values) <= _EPS).numpy()


def warn_blank(maps, what: str) -> int:
    """Warn (one line) when some of ``maps`` are blank; return how many are."""
    n = int(blank_maps(maps).sum())
    if n:
        warnings.warn(f"{what}: {n} of {len(blank_maps(maps))} maps are blank (constant); they "
                      f"are counted as blank and score 0, not dropped", stacklevel=2)
    return n


def localisation_scores(maps, masks, tolerance_px: int = 0) -> dict[str, np.ndarray]:
    """Per-image scores of :data:`METRICS` (Quantus), blank maps scored 0.

    ``maps``: (N, 1, H, W) or (N, H, W), non-negative evidence (reduce colour maps first with
    :func:`camtrap_ssl.analysis.attribution.to_2d`); ``masks``: boolean (N, [1,] H, W).
    """
    import quantus

    a = maps_2d(maps)
    s = torch.as_tensor(masks)
    s = (s[:, None] if s.dim() == 3 else s).float()
    if s.shape != a.shape:
        raise ValueError(f"masks must match maps {tuple(a.shape)}, got {tuple(s.shape)}")
    if (a < 0).any():
        raise ValueError("maps must be non-negative evidence (e.g. to_2d(m, 'abs_max'))")
    blank = blank_maps(a)
    out = {k: np.zeros(len(a)) for k in METRICS}
    live = np.flatnonzero(~blank)
    if live.size:
        a_np = a[live].numpy().astype(np.float64)
        s_np = (s[live] > 0.5).numpy().astype(np.float64)
        s_dil = dilate(s[live], tolerance_px).numpy().astype(np.float64)
        x = np.zeros((live.size, 1, *a.shape[-2:]), dtype=np.float32)
        y = np.zeros(live.size, dtype=int)
        kw = dict(model=None, x_batch=x, y_batch=y, a_batch=a_np, channel_first=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name, metric, seg in (
                    ("relevance_mass", quantus.RelevanceMassAccuracy, s_np),
                    ("relevance_rank", quantus.RelevanceRankAccuracy, s_np),
                    ("pointing_game", quantus.PointingGame, s_dil)):
                out[name][live] = np.asarray(
                    metric(disable_warnings=True)(s_batch=seg, **kw), dtype=float)
    empty = (s.flatten(1).sum(1) == 0).numpy()
    for v in out.values():
        v[empty] = np.nan  # no animal: no localisation question
    return out


def _flat(maps_by_model_method: Mapping) -> dict[tuple[str, str], object]:
    flat: dict[tuple[str, str], object] = {}
    for key, value in maps_by_model_method.items():
        if isinstance(value, Mapping):
            for method, maps in value.items():
                flat[(str(key), str(method))] = maps
        elif isinstance(key, tuple) and len(key) == 2:
            flat[(str(key[0]), str(key[1]))] = value
        else:
            raise ValueError("maps_by_model_method must be {model: {method: maps}} or "
                             "{(model, method): maps}")
    return flat


def compare_models(maps_by_model_method: Mapping, masks, tolerance_px: int = 0,
                   correct: Mapping | None = None, n_boot: int = 2000, ci: float = 0.95,
                   seed: int = 0) -> pd.DataFrame:
    """Tidy table: one row per model, method, metric and subset, with bootstrap intervals.

    ``maps_by_model_method``: ``{model: {method: maps}}`` or ``{(model, method): maps}``, all
    over the same images as ``masks``. ``correct``: optional ``{model: bool per image}``; then
    ``subset`` is also ``"correct"`` and ``"incorrect"`` besides ``"all"``. Columns: ``model``,
    ``method``, ``metric``, ``subset``, ``n`` (images), ``n_blank`` (blank maps among them,
    scored 0), ``mean``, ``ci_low``, ``ci_high``, ``chance`` (a uniform map's relevance mass is
    the mask's area share; for the pointing game, the dilated mask's area: a random point's hit
    rate; for the rank metric, the mask's area share).
    """
    k = torch.as_tensor(masks).float()
    k = k[:, None] if k.dim() == 3 else k
    area = k.flatten(1).mean(1).numpy()
    area_dil = dilate(k, tolerance_px).float().flatten(1).mean(1).numpy()
    chance = {"relevance_mass": area, "relevance_rank": area, "pointing_game": area_dil}
    rows = []
    for (model, method), maps in _flat(maps_by_model_method).items():
        scores = localisation_scores(maps, k, tolerance_px)
        blank = blank_maps(maps)
        subsets = {"all": np.ones(len(blank), dtype=bool)}
        if correct is not None:
            if model not in correct:
                raise ValueError(f"correct lacks model {model!r}; has {list(correct)}")
            c = np.asarray(correct[model], dtype=bool)
            if c.shape != blank.shape:
                raise ValueError(f"correct[{model!r}] has {c.size} entries for {blank.size} maps")
            subsets.update(correct=c, incorrect=~c)
        for metric in METRICS:
            for subset, sel in subsets.items():
                mean, lo, hi = bootstrap_ci(scores[metric][sel], n_boot, ci, seed)
                rows.append({"model": model, "method": method, "metric": metric,
                             "subset": subset, "n": int(np.sum(~np.isnan(scores[metric][sel]))),
                             "n_blank": int(blank[sel].sum()), "mean": mean, "ci_low": lo,
                             "ci_high": hi,
                             "chance": float(chance[metric][sel].mean()) if sel.any()
                             else float("nan")})
    return pd.DataFrame(rows, columns=["model", "method", "metric", "subset", "n", "n_blank",
                                       "mean", "ci_low", "ci_high", "chance"])


def deletion_auc(model, images: torch.Tensor, targets, maps, steps: int = 16,
                 batch_size: int = 64) -> np.ndarray:
    """Per-image faithfulness: pixel flipping (Bach et al. 2015), the area under the true-class
    probability while the pixels a map ranks highest are set to black first.

    Lower is more faithful: a map that ranks the pixels the model relies on first makes the
    probability collapse early. Each of ``steps`` steps blackens the next 1/``steps`` of the
    pixels, all channels of a pixel at once, and the area is the mean of the ``steps``
    probabilities after each step (so it lies in [0, 1] like a probability), one forward pass per
    step and image batch. Blank maps have no order and get NaN.

    This is Quantus's ``PixelFlipping`` (Hedström et al., JMLR 2023) with
    ``perturb_baseline="black"`` - black is each image's minimum over channels and pixels, the
    area is the mean of the curve, the unperturbed prediction is not on it - except that Quantus
    flips the map broadcast over the channels, one channel of one pixel per feature, so that a
    1/16 step of the pixels takes 3 x 16 = 48 passes and removes a third of a pixel set per
    step. Here a pixel is flipped whole. On one-channel images the two are the same computation,
    and a test checks that they agree there.
    """
    a = maps_2d(maps)[:, 0].double()
    x = torch.as_tensor(images).detach().float().cpu()
    y = torch.as_tensor(targets).reshape(-1).long().cpu()
    if x.dim() != 4 or len(y) != len(x) or len(a) != len(x) or a.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"images {tuple(x.shape)} (N, C, H, W), targets ({len(y)}) and maps "
                         f"{tuple(a.shape)} (N, H, W) must match")
    n_pixels = a.shape[-1] * a.shape[-2]
    if not 1 <= int(steps) <= n_pixels:
        raise ValueError(f"steps={steps} must be between 1 and the {n_pixels} pixels of a map")
    steps = int(steps)
    out = np.full(len(x), np.nan)
    live = np.flatnonzero(~blank_maps(a[:, None].numpy()))
    if not live.size:
        return out
    # rank[i, p]: the place of pixel p in image i's order, most relevant first (ties: first pixel)
    order = torch.argsort(-a[live].reshape(len(live), -1), dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n_pixels).expand(len(live), -1).contiguous())
    rank = rank.reshape(len(live), 1, *a.shape[-2:])
    ends = [round(n_pixels * (k + 1) / steps) for k in range(steps)]
    device = model_device(model)
    curves = np.empty((len(live), steps))
    with eval_mode(model), torch.inference_mode():
        for lo in range(0, len(live), batch_size):
            idx = live[lo:lo + batch_size]
            xb, rb = x[idx].to(device), rank[lo:lo + batch_size].to(device)
            black = xb.amin(dim=(1, 2, 3), keepdim=True)
            for k, end in enumerate(ends):
                p = torch.softmax(model(torch.where(rb < end, black, xb)).float(), dim=1)
                curves[lo:lo + len(idx), k] = p.cpu()[torch.arange(len(idx)), y[idx]].numpy()
    out[live] = curves.mean(axis=1)
    return out
