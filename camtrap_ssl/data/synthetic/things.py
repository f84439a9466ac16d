"""Thing painters: the source world's objects (car, house, cup, ...), the ImageNet-like non-animals.

Same contract as :mod:`.animals`: ``painter(pen, rng)`` in the local frame of :mod:`.pen`, with x
along the object's length, y up, ground at 0.
"""
from __future__ import annotations

import math

import numpy as np

from .pen import dk
from .render import jitter_color, random_color


# ------------------------------------------------------------------------------------------------
# things (source-world objects); x runs along the object's length, y up, ground at 0
# ------------------------------------------------------------------------------------------------
def car(pen, rng):
    c = random_color(rng, (0.5, 1), (0.5, 1))
    pen.polygon([(-0.7, 0.12), (0.7, 0.12), (0.72, 0.38), (0.35, 0.42), (-0.7, 0.42)], c, shade=0.3)
    pen.polygon([(-0.45, 0.42), (0.25, 0.42), (0.05, 0.7), (-0.38, 0.7)], c)
    pen.polygon([(-0.38, 0.45), (-0.12, 0.45), (-0.12, 0.66), (-0.33, 0.66)], (0.7, 0.85, 0.95))
    pen.polygon([(-0.06, 0.45), (0.18, 0.45), (0.03, 0.66), (-0.06, 0.66)], (0.7, 0.85, 0.95))
    for x in (-0.42, 0.42):
        pen.ellipse(x, 0.13, 0.14, 0.14, (0.08, 0.08, 0.08))
        pen.ellipse(x, 0.13, 0.06, 0.06, (0.75, 0.75, 0.75))
    pen.ellipse(0.68, 0.32, 0.04, 0.03, (1, 0.95, 0.6))


def truck(pen, rng):
    c = random_color(rng, (0.5, 1), (0.5, 1))
    box = random_color(rng, (0.0, 0.3), (0.6, 1))
    pen.polygon([(-0.8, 0.18), (0.3, 0.18), (0.3, 0.85), (-0.8, 0.85)], box, shade=0.2)
    pen.polygon([(0.34, 0.18), (0.8, 0.18), (0.8, 0.5), (0.65, 0.7), (0.34, 0.7)], c, shade=0.2)
    pen.polygon([(0.5, 0.48), (0.72, 0.48), (0.64, 0.64), (0.5, 0.64)], (0.7, 0.85, 0.95))
    for x in (-0.55, -0.25, 0.58):
        pen.ellipse(x, 0.14, 0.13, 0.13, (0.08, 0.08, 0.08))
        pen.ellipse(x, 0.14, 0.05, 0.05, (0.7, 0.7, 0.7))


def airplane(pen, rng):
    c = random_color(rng, (0.0, 0.4), (0.7, 1))
    acc = random_color(rng)
    pen.polygon([(-0.1, 0.5), (0.15, 0.5), (-0.25, 0.05), (-0.4, 0.05)], dk(c, 0.8))  # far wing
    pen.capsule(-0.8, 0.55, 0.8, 0.5, 0.1, 0.09, c, shade=0.2)
    pen.polygon([(-0.8, 0.55), (-0.62, 0.55), (-0.78, 0.92), (-0.9, 0.92)], acc)  # tail fin
    pen.polygon([(-0.05, 0.48), (0.2, 0.48), (-0.2, 0.95), (-0.35, 0.95)], c)
    for x in np.linspace(-0.5, 0.6, 8):
        pen.ellipse(x, 0.56, 0.02, 0.025, (0.2, 0.3, 0.45))
    pen.ellipse(0.78, 0.54, 0.05, 0.04, (0.2, 0.3, 0.45))


def house(pen, rng):
    wall = random_color(rng, (0.1, 0.5), (0.6, 1))
    roof = random_color(rng, (0.5, 1), (0.3, 0.7))
    pen.polygon([(-0.5, 0), (0.5, 0), (0.5, 0.6), (-0.5, 0.6)], wall, shade=0.2)
    pen.polygon([(-0.62, 0.58), (0.62, 0.58), (0, 1.0)], roof)
    pen.polygon([(-0.1, 0), (0.1, 0), (0.1, 0.32), (-0.1, 0.32)], dk(roof, 0.6))
    for x in (-0.32, 0.32):
        pen.polygon([(x - 0.1, 0.3), (x + 0.1, 0.3), (x + 0.1, 0.48), (x - 0.1, 0.48)], (0.65, 0.82, 0.95))


def tree(pen, rng):
    trunk = jitter_color(rng, (0.4, 0.26, 0.14), 0.1)
    leaf = jitter_color(rng, (0.2, 0.55, 0.2), 0.15)
    pen.capsule(0, 0, 0, 0.5, 0.08, 0.05, trunk)
    if rng.uniform() < 0.5:
        for i in range(3):
            y = 0.35 + 0.22 * i
            w = 0.45 - 0.12 * i
            pen.polygon([(-w, y), (w, y), (0, y + 0.4)], dk(leaf, 1 + 0.1 * i))
    else:
        for dx, dy, r in ((0, 0.75, 0.3), (-0.22, 0.6, 0.22), (0.22, 0.6, 0.22), (0, 0.98, 0.2)):
            pen.ellipse(dx, dy, r, r, leaf, shade=0.3)


def ball(pen, rng):
    c1, c2 = random_color(rng), random_color(rng)
    reg = pen.ellipse(0, 0.45, 0.45, 0.45, c1, shade=0.3)
    k = rng.integers(3, 7)
    pen.pattern(lambda x, y: np.sin(k * np.arctan2(y - 0.45, x)) > 0, c2, within=reg)
    pen.ellipse(-0.15, 0.62, 0.08, 0.06, (1, 1, 1))


def flower(pen, rng):
    petal = random_color(rng, (0.5, 1), (0.7, 1))
    centre = random_color(rng, (0.6, 1), (0.5, 0.9))
    pen.capsule(0, 0, 0, 0.6, 0.03, 0.025, (0.2, 0.55, 0.2))
    pen.ellipse(0.12, 0.25, 0.14, 0.05, (0.2, 0.6, 0.2), angle=0.6)
    n = int(rng.integers(5, 9))
    for i in range(n):
        t = 2 * math.pi * i / n
        pen.ellipse(0.2 * math.cos(t), 0.75 + 0.2 * math.sin(t), 0.15, 0.07, petal, angle=t)
    pen.ellipse(0, 0.75, 0.1, 0.1, centre)


def boat(pen, rng):
    hull = random_color(rng, (0.4, 1), (0.3, 0.9))
    sail = random_color(rng, (0.0, 0.5), (0.8, 1))
    pen.polygon([(-0.7, 0.3), (0.75, 0.3), (0.5, 0.0), (-0.55, 0.0)], hull, shade=0.3)
    pen.capsule(0, 0.3, 0, 1.1, 0.02, color=(0.35, 0.25, 0.15))
    pen.polygon([(0.03, 0.38), (0.03, 1.08), (0.5, 0.38)], sail)
    pen.polygon([(-0.03, 0.42), (-0.03, 0.95), (-0.38, 0.42)], dk(sail, 0.9))


def chair(pen, rng):
    c = random_color(rng, (0.3, 0.9), (0.3, 0.8))
    for x in (-0.3, 0.3):
        pen.capsule(x, 0, x, 0.45, 0.035, color=dk(c, 0.8))
    pen.polygon([(-0.38, 0.42), (0.38, 0.42), (0.38, 0.5), (-0.38, 0.5)], c)
    pen.polygon([(-0.38, 0.5), (-0.28, 0.5), (-0.3, 1.0), (-0.4, 1.0)], c)
    for y in (0.65, 0.8, 0.95):
        pen.capsule(-0.35, y, -0.35, y, 0.045, color=dk(c, 0.9))


def cup(pen, rng):
    c = random_color(rng, (0.3, 1), (0.5, 1))
    pen.ring(0.35, 0.42, 0.17, 0.09, c)
    body = pen.polygon([(-0.3, 0.0), (0.3, 0.0), (0.36, 0.7), (-0.36, 0.7)], c, shade=0.25)
    pen.ellipse(0, 0.7, 0.36, 0.06, dk(c, 0.5))
    pen.pattern(lambda x, y: np.abs(y - 0.35) < 0.05, random_color(rng), within=body)


def bicycle(pen, rng):
    c = random_color(rng, (0.5, 1), (0.4, 0.9))
    for x in (-0.45, 0.45):
        pen.ring(x, 0.28, 0.28, 0.24, (0.1, 0.1, 0.1))
    pts = [(-0.45, 0.28), (-0.08, 0.28), (0.3, 0.6), (-0.15, 0.6), (-0.45, 0.28)]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        pen.capsule(x0, y0, x1, y1, 0.025, color=c)
    pen.capsule(-0.08, 0.28, -0.18, 0.68, 0.025, color=c)
    pen.capsule(0.45, 0.28, 0.32, 0.72, 0.025, color=c)
    pen.capsule(0.26, 0.74, 0.4, 0.74, 0.022, color=(0.1, 0.1, 0.1))
    pen.capsule(-0.26, 0.7, -0.1, 0.7, 0.03, color=(0.1, 0.1, 0.1))


def mountain(pen, rng):
    rock = jitter_color(rng, (0.45, 0.42, 0.45), 0.15)
    pen.polygon([(-0.9, 0), (0.3, 0), (-0.35, 0.7)], dk(rock, 0.8))
    peak = pen.polygon([(-0.6, 0), (0.9, 0), (0.15, 1.0)], rock, shade=0.3)
    pen.pattern(lambda x, y: y > 0.75 + 0.04 * np.sin(40 * x), (0.97, 0.97, 1.0), within=peak)

