"""The information strip at the bottom of camera-trap frames, and how it is cut off.

Camera traps stamp date, time, temperature and camera name into a band along the bottom of every
frame. A network can read it (a camera name identifies a site, a time of day the light), so it is
a shortcut feature that saliency maps will find. Norouzzadeh et al. (PNAS 2018) cut the bottom 100
rows of each 2048 x 1536 Snapshot Serengeti frame before resizing (``img[0:-100, :]`` in
``resize.py`` of GitHub Evolving-AI-Lab/deep_learning_for_camera_trap_images); here the strip is
a *fraction* of the frame's height (:data:`camtrap_ssl.core.profiles.SERENGETI_STRIP_FRACTION`,
100/1536), so the same cut applies to a frame decoded at any scale (libjpeg's draft decoding
halves the height, and the strip with it) and to smaller releases of the same images.

The embedded world draws its own strip (:func:`camtrap_ssl.data.synthetic.scenes.strip_height`
rows, more than 100/1536 of its small frames so that its digits stay legible); its loader cuts
exactly those rows, as a fraction of the frame height too.
"""
from __future__ import annotations

import math


def strip_rows(height: int, fraction: float) -> int:
    """Rows to cut from the bottom of a ``height``-row frame: ``fraction`` of it, rounded up.

    Rounding up leaves no row of the band behind; the small tolerance keeps an exact fraction
    (``100 / 1536`` of 1536 rows) from becoming 101 through floating-point error.
    """
    if not 0.0 <= fraction < 0.5:
        raise ValueError(f"strip_fraction={fraction!r} must lie in [0, 0.5)")
    return min(height - 1, max(0, math.ceil(fraction * height - 1e-6)))


def describe(fraction: float, height: int) -> str:
    """The cut as it goes into a target's identity: which rows of which frame height."""
    return f"bottom {strip_rows(height, fraction)} of {height} rows (fraction {fraction:.6g})"
