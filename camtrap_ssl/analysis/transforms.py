"""Study 3's transformations: the study's exact grids and batched tensor implementations.

The study transformed every image along five families (SPEC section 5, Study 3). This module fixes
their grids and one convention for units and signs, so that every number in Study 3 (the
prediction curves of :mod:`camtrap_ssl.analysis.invariance`, the per-block equivariance of
:mod:`camtrap_ssl.analysis.equivariance`) means the same thing:

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
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

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


def check_family(family: str) -> None:
    """Raise a one-line ValueError naming the allowed families unless ``family`` is one."""
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


def check_value(family: str, value) -> float:
    """One transformation value as a float in study units, or a one-line ValueError."""
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
    check_family(family)
    return check_value(family, value) == IDENTITY_VALUE[family]


def value_label(family: str, value) -> str:
    """Human-readable tick label of one transformation value (e.g. ``"no zoom"``, ``"50°"``)."""
    check_family(family)
    v = check_value(family, value)
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
    return transform_copies(image, family, values, fill, reference_size, subpixel)


def transform_copies(image, family, values, fill, reference_size, subpixel) -> torch.Tensor:
    """:func:`transformed_batch` without the shape check, for callers that stream copies."""
    check_family(family)
    if fill not in FILL_MODES:
        raise ValueError(f"fill={fill!r}; allowed: {list(FILL_MODES)}")
    if not image.is_floating_point():
        raise ValueError(f"image must be a float tensor in [0, 1], got dtype {image.dtype}")
    values = list(TRANSFORM_FAMILIES[family] if values is None else values)
    if not values:
        raise ValueError("values must not be empty")
    vals = [check_value(family, v) for v in values]
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
    out = torch.stack([transform_copies(im, family, [value], fill, reference_size, subpixel)[0]
                       for im in batch]) if len(batch) else batch.clone()
    return out[0] if single else out
