"""Painter primitives: the :class:`Pen` that draws in a painter's local frame, and a generic body.

Every painter (:mod:`.animals`, :mod:`.things`) draws in a *local* frame: x points the way the
animal faces, y points up, the ground is y = 0 and a typical animal is about one unit tall. A
:class:`Pen` maps that frame onto canvas pixels (scale, position, mirror) and tags every pixel with
the object's id, so masks are exact. Kept apart from the drawings so that the geometry can be read
(and changed, with a ``GENERATOR_VERSION`` bump) without wading through thirty species.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .render import Canvas, Region


def dk(c, f=0.7):
    """Darker (f < 1) or lighter (f > 1) version of a colour."""
    return np.clip(np.asarray(c, np.float32) * f, 0, 1)


class Pen:
    """Draws in a painter's local frame onto a :class:`Canvas` under object id ``obj``."""

    def __init__(self, canvas: Canvas, ox: float, oy: float, scale: float, flip: bool = False,
                 obj: int = 1):
        self.c, self.ox, self.oy, self.s, self.obj = canvas, ox, oy, scale, obj
        self.sx = -1.0 if flip else 1.0
        self.box = None  # union window of everything drawn, for patterns

    def P(self, x, y):
        return self.ox + self.sx * x * self.s, self.oy - y * self.s

    def _track(self, reg: Region) -> Region:
        if not reg.empty:
            b = (reg.y0, reg.y1, reg.x0, reg.x1)
            if self.box is None:
                self.box = b
            else:
                self.box = (min(self.box[0], b[0]), max(self.box[1], b[1]),
                            min(self.box[2], b[2]), max(self.box[3], b[3]))
        return reg

    def ellipse(self, x, y, rx, ry, color, angle=0.0, shade=0.0, obj=None) -> Region:
        px, py = self.P(x, y)
        reg = self.c.ellipse(px, py, rx * self.s, ry * self.s, angle * self.sx)
        self.c.fill(reg, color, self.obj if obj is None else obj, shade)
        return self._track(reg)

    def capsule(self, x0, y0, x1, y1, r0, r1=None, color=(0, 0, 0), shade=0.0) -> Region:
        a, b = self.P(x0, y0), self.P(x1, y1)
        reg = self.c.capsule(a[0], a[1], b[0], b[1], r0 * self.s, (r0 if r1 is None else r1) * self.s)
        self.c.fill(reg, color, self.obj, shade)
        return self._track(reg)

    def polygon(self, pts, color, shade=0.0) -> Region:
        reg = self.c.polygon([self.P(x, y) for x, y in pts])
        self.c.fill(reg, color, self.obj, shade)
        return self._track(reg)

    def ring(self, x, y, r_out, r_in, color) -> Region:
        px, py = self.P(x, y)
        reg = self.c.ring(px, py, r_out * self.s, r_in * self.s)
        self.c.fill(reg, color, self.obj)
        return self._track(reg)

    def pattern(self, cond: Callable, color, within: Region | None = None) -> None:
        """Recolour this object's pixels where ``cond(x_local, y_local)`` holds (stripes, spots).

        Restricted to ``within`` (one shape) when given, else to the whole object drawn so far.
        """
        if within is not None:
            if within.empty:
                return
            y0, y1, x0, x1 = within.y0, within.y1, within.x0, within.x1
            base = within.mask
        else:
            if self.box is None:
                return
            y0, y1, x0, x1 = self.box
            base = True
        ids = self.c.ids[y0:y1, x0:x1]
        ys = (np.arange(y0, y1, dtype=np.float32) + 0.5)[:, None]
        xs = (np.arange(x0, x1, dtype=np.float32) + 0.5)[None, :]
        xl = self.sx * (xs - self.ox) / self.s
        yl = (self.oy - ys) / self.s
        m = (ids == self.obj) & base & cond(xl, yl)
        self.c.img[y0:y1, x0:x1][m] = np.asarray(color, np.float32)


# ------------------------------------------------------------------------------------------------
# a generic four-legged body; species add their cues on top
# ------------------------------------------------------------------------------------------------
def quadruped(pen: Pen, rng, col, *, a, b, by, leg_w, neck_ang, neck_len, neck_w, head_len,
              head_h, head_ang, tilt=0.0, leg_col=None, front_leg_extra=0.0, tail=None,
              ears=None, eye=True):
    """Body ellipse, four legs (far pair darker), neck, head; returns key points for the cues."""
    swing = 0.15 * a * rng.uniform(-1, 1)
    legc = col if leg_col is None else leg_col
    hip = (-0.62 * a, by - 0.2 * b + math.sin(tilt) * -0.62 * a)
    sho = (0.62 * a, by - 0.2 * b + math.sin(tilt) * 0.62 * a + front_leg_extra)
    # tail behind the body
    if tail is not None:
        tlen, tw, tang, tcol = tail
        tx0, ty0 = -0.95 * a, by + 0.3 * b - math.sin(tilt) * a
        tx1, ty1 = tx0 + tlen * math.cos(tang), ty0 + tlen * math.sin(tang)
        pen.capsule(tx0, ty0, tx1, ty1, tw, tw * 0.6, tcol)
        tail_end = (tx1, ty1)
    else:
        tail_end = None
    for (lx, ly), sw in ((sho, -swing), (hip, swing)):
        pen.capsule(lx + 0.1 * a, ly, lx + 0.1 * a + sw, leg_w * 0.6, leg_w, leg_w * 0.7, dk(legc, 0.72))
    body = pen.ellipse(0, by, a, b, col, angle=tilt, shade=0.35)
    nx0, ny0 = 0.72 * a, by + 0.35 * b + math.sin(tilt) * 0.72 * a
    nx1, ny1 = nx0 + neck_len * math.cos(neck_ang), ny0 + neck_len * math.sin(neck_ang)
    neck = pen.capsule(nx0, ny0, nx1, ny1, neck_w, neck_w * 0.8, col, shade=0.2)
    if ears is not None:
        elen, ew, ecol = ears
        pen.capsule(nx1, ny1, nx1 - 0.3 * elen, ny1 + elen, ew, ew * 0.5, ecol)
    hx = nx1 + 0.45 * head_len * math.cos(head_ang)
    hy = ny1 + 0.45 * head_len * math.sin(head_ang)
    head = pen.ellipse(hx, hy, head_len / 2, head_h / 2, col, angle=head_ang, shade=0.15)
    for (lx, ly), sw in ((sho, swing), (hip, -swing)):
        pen.capsule(lx, ly, lx + sw, leg_w * 0.6, leg_w, leg_w * 0.7, legc)
    nose = (hx + 0.5 * head_len * math.cos(head_ang), hy + 0.5 * head_len * math.sin(head_ang))
    if eye:
        ex = nx1 + 0.2 * head_len * math.cos(head_ang) - 0.25 * head_h * math.sin(head_ang)
        ey = ny1 + 0.2 * head_len * math.sin(head_ang) + 0.25 * head_h * math.cos(head_ang)
        pen.ellipse(ex, ey, head_h * 0.12, head_h * 0.12, (0.05, 0.05, 0.05))
    return dict(body=body, neck=neck, head=head, head_c=(hx, hy), neck_top=(nx1, ny1),
                neck_base=(nx0, ny0), nose=nose, tail_end=tail_end, hip=hip, sho=sho)

