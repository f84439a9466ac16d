"""Background swaps and the numbers behind "SSL looks at the animal" (Study 4).

The study showed the same animals on white or blurred backgrounds and claimed, from pictures, that
SSL heat maps are tighter and on the animal while SL maps spread onto sky and grass. With the
embedded world's exact masks (or a bounding box on real photos) we measure it instead:

* :func:`mask_energy_share` - the share of a map's positive energy inside the animal's mask;
  a uniform map scores the mask's area share, so compare against that chance level;
* :func:`pointing_game` (Zhang et al. 2016) - does the map's maximum fall on the animal, within
  a tolerance;
* :func:`bootstrap_ci` and :func:`paired_difference` - means with percentile-bootstrap
  confidence intervals; :mod:`camtrap_ssl.analysis.localisation` tabulates the field's metrics
  (Quantus) per model and method with them, and these two hand-written metrics are checked
  against Quantus in the tests.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

MODES: tuple[str, ...] = ("white", "blur", "original")
_EPS = 1e-12


# ------------------------------------------------------------------------------------ masks
def bbox_to_mask(bboxes, size, original_size=None) -> Tensor:
    """A boolean mask (1, H, W) that is True inside any of ``bboxes``.

    ``bboxes``: one COCO box ``[x, y, width, height]`` or a list of them, in pixels of the
    original image of ``original_size=(width, height)`` (COCO Camera Traps convention); without
    ``original_size`` they are in pixels of the output. ``size``: output ``H`` (square) or
    ``(H, W)``. Scaling assumes the image was resized by squashing (the default of
    :func:`camtrap_ssl.data.images.load_image_folder`), not letterboxed.
    """
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    boxes = np.asarray(bboxes, dtype=float)
    if boxes.ndim == 1:
        boxes = boxes[None]
    if boxes.ndim != 2 or (boxes.size and boxes.shape[1] != 4):
        raise ValueError(f"bboxes must be [x, y, width, height] or a list of those, got {bboxes!r}")
    sx, sy = (1.0, 1.0) if original_size is None else (w / original_size[0], h / original_size[1])
    mask = torch.zeros(1, h, w, dtype=torch.bool)
    for x, y, bw, bh in boxes:
        if bw < 0 or bh < 0:
            raise ValueError(f"bbox width/height must be >= 0, got {[x, y, bw, bh]}")
        x0, y0 = max(0, math.floor(x * sx)), max(0, math.floor(y * sy))
        x1, y1 = min(w, math.ceil((x + bw) * sx)), min(h, math.ceil((y + bh) * sy))
        mask[0, y0:y1, x0:x1] = True
    return mask


def _masks_like(masks, images: Tensor) -> Tensor:
    """Masks as float (N, 1, H, W) in [0, 1] matching ``images`` (N, C, H, W)."""
    m = torch.as_tensor(masks)
    if m.dim() == 3:
        m = m[:, None]
    n, _, h, w = images.shape
    if m.dim() != 4 or m.shape[1] != 1 or m.shape[0] != n or tuple(m.shape[2:]) != (h, w):
        raise ValueError(f"masks must be (N, 1, H, W) or (N, H, W) matching the maps/images "
                         f"{(n, h, w)}, got {tuple(m.shape)}")
    m = m.to(images.device, torch.float32)
    if m.min() < 0 or m.max() > 1:
        raise ValueError("masks must be boolean or soft masks in [0, 1]")
    return m


# ------------------------------------------------------------------------------------ backgrounds
def _gaussian_kernel(sigma: float) -> Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (N, C, H, W) with replicate padding (any image size)."""
    k = _gaussian_kernel(sigma).to(x)
    c, r = x.shape[1], (k.numel() - 1) // 2
    y = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1),
                 groups=c)
    return F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"),
                    k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def replace_background(images: Tensor, masks=None, mode: str = "white", *, bboxes=None,
                       sigma: float = 4.0) -> Tensor:
    """Keep the animal (mask = 1) and replace everything else.

    ``mode``: ``"white"`` (background set to 1.0), ``"blur"`` (the image's own background under a
    Gaussian blur of ``sigma`` pixels) or ``"original"`` (unchanged copy, the control condition).
    The blur is *normalized by the background mask* (blur(x * bg) / blur(bg)), so the animal's
    colours do not bleed into the blurred background and the animal's outline is not smeared
    into a halo that a model could still use. Soft masks composite linearly. Give ``masks``
    (N, 1, H, W) / (N, H, W), or ``bboxes``: per image a COCO box or list of boxes in output
    pixels (see :func:`bbox_to_mask`).
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}; allowed: {list(MODES)}")
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError("images must be a tensor (N, C, H, W) in [0, 1]")
    if (masks is None) == (bboxes is None):
        raise ValueError("give exactly one of masks= or bboxes=")
    if bboxes is not None:
        if len(bboxes) != images.shape[0]:
            raise ValueError(f"bboxes has {len(bboxes)} entries for {images.shape[0]} images")
        masks = torch.stack([bbox_to_mask(b, tuple(images.shape[-2:])) for b in bboxes])
    m = _masks_like(masks, images)
    if mode == "original":
        return images.clone()
    if mode == "white":
        background = torch.ones_like(images)
    else:
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0 pixels, got {sigma!r}")
        bg = 1.0 - m
        num = gaussian_blur(images * bg, sigma)
        den = gaussian_blur(bg, sigma)
        # where the blur window saw no background at all, fall back to the plain blur
        background = torch.where(den > 1e-3, num / den.clamp(min=1e-3),
                                 gaussian_blur(images, sigma))
    return m * images + (1.0 - m) * background


# ------------------------------------------------------------------------------------ metrics
def maps_2d(maps) -> Tensor:
    m = torch.as_tensor(maps).detach().float().cpu()
    if m.dim() == 3:
        m = m[:, None]
    if m.dim() != 4 or m.shape[1] != 1:
        raise ValueError(f"maps must be (N, 1, H, W) or (N, H, W), got {tuple(m.shape)}; reduce "
                         "colour attributions first (camtrap_ssl.analysis.attribution.to_2d)")
    return m


def mask_energy_share(maps, masks) -> np.ndarray:
    """Per map, sum(relu(map) * mask) / sum(relu(map)): the share of the positive saliency
    energy that lies on the animal. NaN for a map with no positive energy."""
    m = maps_2d(maps).clamp(min=0)
    k = _masks_like(masks, m)
    total = m.sum(dim=(1, 2, 3))
    inside = (m * k).sum(dim=(1, 2, 3))
    share = torch.where(total > _EPS, inside / total.clamp(min=_EPS),
                        torch.full_like(total, float("nan")))
    return share.numpy().astype(float)


def dilate(masks, tolerance_px: int) -> Tensor:
    """Boolean masks grown by ``tolerance_px`` pixels (square neighbourhood, i.e. the maximum
    of |dx|, |dy| is at most the tolerance)."""
    if not isinstance(tolerance_px, (int, np.integer)) or tolerance_px < 0:
        raise ValueError(f"tolerance_px must be an int >= 0, got {tolerance_px!r}")
    m = torch.as_tensor(masks).float()
    if m.dim() == 3:
        m = m[:, None]
    if tolerance_px == 0:
        return m > 0.5
    t = int(tolerance_px)
    return F.max_pool2d(m, 2 * t + 1, stride=1, padding=t) > 0.5


def pointing_game(maps, masks, tolerance_px: int = 0) -> np.ndarray:
    """1.0 where a maximum of the map lies inside the mask dilated by ``tolerance_px`` (Zhang et
    al. used 15 px at 224 px; :func:`camtrap_ssl.analysis.localisation.pointing_tolerance`
    scales it), 0.0 where not, NaN for a constant map (it points nowhere).

    Ties: a hit when *any* maximal pixel lies in the mask, as Quantus's ``PointingGame`` counts
    it. Upsampled CAMs are constant over whole blocks, so taking the first maximum in row-major
    order (as this function once did) scored 0.010 where Quantus scored 0.895 on quantized maps.
    Unlike Quantus, a constant map is NaN here rather than a hit on every mask, so that blank
    maps are counted as such (:func:`camtrap_ssl.analysis.localisation.compare_models`)."""
    m = maps_2d(maps)
    k = dilate(_masks_like(masks, m) > 0.5, tolerance_px)
    flat = m.flatten(1)
    top = flat == flat.max(1, keepdim=True).values
    hit = (top & k.flatten(1)).any(1).float()
    constant = (flat.max(1).values - flat.min(1).values) <= _EPS
    hit[constant] = float("nan")
    return hit.numpy().astype(float)


def bootstrap_ci(values, n_boot: int = 2000, ci: float = 0.95, seed: int = 0):
    """(mean, low, high): the mean of ``values`` and its percentile-bootstrap interval.

    NaNs (undefined per-image scores) are dropped; an empty input gives NaNs.
    """
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive int, got {n_boot!r}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), e.g. 0.95, got {ci!r}")
    v = np.asarray(values, dtype=float).ravel()
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(1)
    alpha = (1 - ci) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(v.mean()), float(lo), float(hi)


def paired_difference(values_a: Sequence[float], values_b: Sequence[float], n_boot: int = 2000,
                      ci: float = 0.95, seed: int = 0):
    """(mean, low, high) of the per-image difference a - b (e.g. SSL minus SL energy share on the
    same images); pairing removes the image-to-image spread from the comparison."""
    a, b = np.asarray(values_a, dtype=float), np.asarray(values_b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired values need equal shapes, got {a.shape} and {b.shape}")
    return bootstrap_ci(a - b, n_boot, ci, seed)
