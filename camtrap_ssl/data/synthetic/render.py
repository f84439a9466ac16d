"""Vectorized numpy drawing primitives for the embedded world.

Why not PIL's ImageDraw: we need, for every shape, the exact set of pixels it covers, so that the
object mask (ground truth the real data lacks, SPEC section 6) comes for free and is exact. Every
primitive here computes a boolean coverage mask on the *crop* of the canvas its bounding box
touches (so cost scales with the shape, not the image) and writes colour plus an object id into
the canvas. Canvases are drawn at ``ss`` times the final resolution and box-downsampled, which is
cheap anti-aliasing.
"""
from __future__ import annotations

import numpy as np


class Region:
    """Pixels covered by one shape: a crop window ``(y0, y1, x0, x1)`` and a boolean mask on it."""

    __slots__ = ("y0", "y1", "x0", "x1", "mask")

    def __init__(self, y0: int, y1: int, x0: int, x1: int, mask: np.ndarray):
        self.y0, self.y1, self.x0, self.x1, self.mask = y0, y1, x0, x1, mask

    @property
    def empty(self) -> bool:
        return self.mask.size == 0 or not self.mask.any()


class Canvas:
    """An RGB float image in [0, 1] with an integer object-id map of the same size.

    Object id 0 is background; painters draw an animal or object under a positive id so that its
    mask is ``ids == k``. Occluders (foreground grass) are drawn with id 0 and so cut the mask.
    """

    def __init__(self, height: int, width: int, ss: int = 2):
        if height <= 0 or width <= 0 or ss <= 0:
            raise ValueError(f"canvas height/width/ss must be positive, got {height}, {width}, {ss}")
        self.ss = ss
        self.H, self.W = height * ss, width * ss
        self.img = np.zeros((self.H, self.W, 3), np.float32)
        self.ids = np.zeros((self.H, self.W), np.int16)

    # ---- geometry helpers -------------------------------------------------------------------
    def _window(self, xmin, xmax, ymin, ymax):
        x0 = max(int(np.floor(xmin)), 0)
        x1 = min(int(np.ceil(xmax)) + 1, self.W)
        y0 = max(int(np.floor(ymin)), 0)
        y1 = min(int(np.ceil(ymax)) + 1, self.H)
        if x1 <= x0 or y1 <= y0:
            return None
        ys = (np.arange(y0, y1, dtype=np.float32) + 0.5)[:, None]
        xs = (np.arange(x0, x1, dtype=np.float32) + 0.5)[None, :]
        return y0, y1, x0, x1, ys, xs

    @staticmethod
    def _none() -> Region:
        return Region(0, 0, 0, 0, np.zeros((0, 0), bool))

    def ellipse(self, cx, cy, rx, ry, angle=0.0) -> Region:
        """Filled ellipse in canvas pixels; ``angle`` in radians, counter-clockwise on screen."""
        rx, ry = max(abs(rx), 0.5), max(abs(ry), 0.5)
        r = max(rx, ry)
        win = self._window(cx - r, cx + r, cy - r, cy + r)
        if win is None:
            return self._none()
        y0, y1, x0, x1, ys, xs = win
        dx, dy = xs - cx, ys - cy
        c, s = np.cos(angle), np.sin(angle)
        u = dx * c - dy * s
        v = dx * s + dy * c
        return Region(y0, y1, x0, x1, (u / rx) ** 2 + (v / ry) ** 2 <= 1.0)

    def capsule(self, xa, ya, xb, yb, ra, rb=None) -> Region:
        """Segment with round ends whose radius goes linearly from ``ra`` to ``rb`` (legs, necks)."""
        rb = ra if rb is None else rb
        ra, rb = max(ra, 0.5), max(rb, 0.5)
        r = max(ra, rb)
        win = self._window(min(xa, xb) - r, max(xa, xb) + r, min(ya, yb) - r, max(ya, yb) + r)
        if win is None:
            return self._none()
        y0, y1, x0, x1, ys, xs = win
        vx, vy = xb - xa, yb - ya
        L2 = vx * vx + vy * vy + 1e-9
        t = np.clip(((xs - xa) * vx + (ys - ya) * vy) / L2, 0.0, 1.0)
        d2 = (xs - xa - t * vx) ** 2 + (ys - ya - t * vy) ** 2
        rad = ra + (rb - ra) * t
        return Region(y0, y1, x0, x1, d2 <= rad * rad)

    def polygon(self, pts) -> Region:
        """Filled polygon (even-odd rule), ``pts`` a sequence of (x, y) canvas pixels."""
        p = np.asarray(pts, np.float32)
        win = self._window(p[:, 0].min(), p[:, 0].max(), p[:, 1].min(), p[:, 1].max())
        if win is None:
            return self._none()
        y0, y1, x0, x1, ys, xs = win
        inside = np.zeros((y1 - y0, x1 - x0), bool)
        q = np.roll(p, -1, axis=0)
        for (xa, ya), (xb, yb) in zip(p, q):
            if ya == yb:
                continue
            crosses = (ya > ys) != (yb > ys)  # (ny, 1)
            xint = xa + (ys - ya) * (xb - xa) / (yb - ya)
            inside ^= crosses & (xs < xint)
        return Region(y0, y1, x0, x1, inside)

    def rect(self, xa, ya, xb, yb) -> Region:
        win = self._window(min(xa, xb), max(xa, xb), min(ya, yb), max(ya, yb))
        if win is None:
            return self._none()
        y0, y1, x0, x1, ys, xs = win
        m = (xs >= min(xa, xb)) & (xs < max(xa, xb)) & (ys >= min(ya, yb)) & (ys < max(ya, yb))
        return Region(y0, y1, x0, x1, m)

    def ring(self, cx, cy, r_out, r_in) -> Region:
        outer = self.ellipse(cx, cy, r_out, r_out)
        if outer.empty:
            return outer
        ys = (np.arange(outer.y0, outer.y1, dtype=np.float32) + 0.5)[:, None]
        xs = (np.arange(outer.x0, outer.x1, dtype=np.float32) + 0.5)[None, :]
        outer.mask &= (xs - cx) ** 2 + (ys - cy) ** 2 > r_in * r_in
        return outer

    # ---- painting ----------------------------------------------------------------------------
    def fill(self, reg: Region, color, obj: int | None = None, shade: float = 0.0) -> Region:
        """Paint ``reg`` with ``color``; ``shade`` darkens towards the bottom of the shape (volume).

        ``obj``: object id written into the id map (None leaves the id map alone, 0 occludes).
        """
        if reg.empty:
            return reg
        col = np.asarray(color, np.float32)
        view = self.img[reg.y0:reg.y1, reg.x0:reg.x1]
        if shade:
            ny = reg.y1 - reg.y0
            rows = reg.mask.any(axis=1)
            top, bot = np.argmax(rows), ny - np.argmax(rows[::-1])
            t = np.clip((np.arange(ny, dtype=np.float32) - top) / max(bot - top, 1), 0, 1)
            f = (1.0 + 0.5 * shade - shade * t)[:, None, None]
            view[:] = np.where(reg.mask[..., None], np.clip(col * f, 0, 1), view)
        else:
            view[reg.mask] = col
        if obj is not None:
            self.ids[reg.y0:reg.y1, reg.x0:reg.x1][reg.mask] = obj
        return reg

    def fill_where(self, reg: Region, cond: np.ndarray, color) -> None:
        """Paint the pixels of ``reg`` where ``cond`` (same crop shape) holds, ids unchanged."""
        if reg.empty:
            return
        m = reg.mask & cond
        self.img[reg.y0:reg.y1, reg.x0:reg.x1][m] = np.asarray(color, np.float32)

    def coords(self, reg: Region):
        ys = (np.arange(reg.y0, reg.y1, dtype=np.float32) + 0.5)[:, None]
        xs = (np.arange(reg.x0, reg.x1, dtype=np.float32) + 0.5)[None, :]
        return xs, ys

    # ---- output ------------------------------------------------------------------------------
    def result(self):
        """Downsample to the final size: (uint8 HxWx3 image, int16 HxW id map by majority).

        Sums strided sub-images instead of ``reshape(...).mean(axis=(1, 3))``: the same numbers
        (bit for bit) at a third of the cost, which matters for thousands of frames.
        """
        ss = self.ss
        if ss == 1:
            return (np.clip(self.img, 0, 1) * 255 + 0.5).astype(np.uint8), self.ids.copy()
        h, w = self.H // ss, self.W // ss
        acc = np.zeros((h, w, 3), np.float32)
        hits = np.zeros((h, w), np.int16)
        top = np.zeros((h, w), np.int16)
        for i in range(ss):
            for j in range(ss):
                acc += self.img[i::ss, j::ss]
                sub = self.ids[i::ss, j::ss]
                hits += sub > 0
                np.maximum(top, sub, out=top)
        img8 = (np.clip(acc / np.float32(ss * ss), 0, 1) * 255 + 0.5).astype(np.uint8)
        # a pixel belongs to an object when at least half its sub-pixels do
        ids = np.where(2 * hits >= ss * ss, top, 0).astype(np.int16)
        return img8, ids


def smooth_noise(rng: np.random.Generator, h: int, w: int, n_waves: int = 6,
                 max_freq: float = 6.0) -> np.ndarray:
    """Cheap low-frequency texture in about [-1, 1]: a sum of random plane waves."""
    ys = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    xs = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    out = np.zeros((h, w), np.float32)
    for _ in range(n_waves):
        fx, fy = rng.uniform(-max_freq, max_freq, 2) * 2 * np.pi
        out += np.sin(fx * xs + fy * ys + rng.uniform(0, 2 * np.pi)).astype(np.float32)
    return out / np.sqrt(n_waves / 2)


def jitter_color(rng: np.random.Generator, color, amount: float = 0.08):
    """Per-channel multiplicative jitter plus a shared brightness change, clipped to [0, 1]."""
    c = np.asarray(color, np.float32)
    c = c * (1 + rng.normal(0, amount, 3)) * (1 + rng.normal(0, amount))
    return np.clip(c, 0, 1).astype(np.float32)


def random_color(rng: np.random.Generator, sat=(0.4, 1.0), val=(0.4, 1.0)):
    """A random vivid colour from HSV, for backgrounds and man-made objects."""
    h = rng.uniform(0, 1)
    s = rng.uniform(*sat)
    v = rng.uniform(*val)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i],
                    np.float32)
