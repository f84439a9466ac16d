"""Animal painters: the Snapshot Serengeti and ENA24 species, each carrying its identifying cues.

The cues are the ones the study's analysis talks about (SPEC section 5): zebra stripes, the
guinea fowl's white spots on a dark round body, the male lion's dark mane, the ostrich's long neck
and legs, the giraffe's patches and neck, the elephant's trunk, and so on. A classifier that gets
these right has to look at the animal, which is what the saliency studies measure. Each painter is
``painter(pen, rng)`` in the local frame of :mod:`.pen`; function names are the datasets' class names.
"""
from __future__ import annotations

import math

import numpy as np

from .pen import dk, quadruped
from .render import jitter_color, random_color


# ------------------------------------------------------------------------------------------------
# African savanna species (Snapshot Serengeti names)
# ------------------------------------------------------------------------------------------------
def zebra(pen, rng):
    col = jitter_color(rng, (0.95, 0.95, 0.92), 0.03)
    black = (0.06, 0.06, 0.07)
    k = quadruped(pen, rng, col, a=0.45, b=0.2, by=0.55, leg_w=0.05, neck_ang=1.0, neck_len=0.3,
                  neck_w=0.1, head_len=0.32, head_h=0.13, head_ang=-1.05,
                  tail=(0.32, 0.025, -1.35, col), ears=(0.1, 0.03, col))
    ph = rng.uniform(0, 6.3)
    pen.pattern(lambda x, y: np.where(
        y > 0.36, np.sin(30 * x + 4 * np.sin(5 * y) + ph) > 0.1, np.sin(45 * y) > 0.2), black)
    nx0, ny0 = k["neck_base"]
    nx1, ny1 = k["neck_top"]
    pen.capsule(nx0 - 0.06, ny0 + 0.08, nx1 - 0.05, ny1 + 0.06, 0.03, 0.025, black)  # mane
    x, y = k["nose"]
    pen.ellipse(x, y + 0.02, 0.06, 0.05, black)  # dark muzzle


def wildebeest(pen, rng):
    col = jitter_color(rng, (0.32, 0.3, 0.3), 0.06)
    dark = dk(col, 0.45)
    k = quadruped(pen, rng, col, a=0.45, b=0.22, by=0.6, leg_w=0.045, neck_ang=0.75,
                  neck_len=0.22, neck_w=0.14, head_len=0.36, head_h=0.14, head_ang=-1.25,
                  tilt=0.12, tail=(0.35, 0.03, -1.4, dark), leg_col=dk(col, 0.8))
    pen.ellipse(0.3, 0.72, 0.2, 0.14, col, angle=0.3)  # high shoulders
    pen.pattern(lambda x, y: (np.sin(40 * x) > 0.8) & (y > 0.6) & (x > -0.2), dk(col, 0.85))  # brindles
    nx1, ny1 = k["neck_top"]
    nx0, ny0 = k["neck_base"]
    pen.capsule(nx0, ny0 - 0.1, nx1 + 0.02, ny1 - 0.15, 0.05, 0.03, dark)  # beard
    pen.capsule(nx0 - 0.05, ny0 + 0.12, nx1, ny1 + 0.06, 0.035, color=dark)  # mane
    horn = (0.55, 0.52, 0.48)
    pen.capsule(nx1, ny1 + 0.05, nx1 - 0.12, ny1 + 0.1, 0.022, 0.02, horn)
    pen.capsule(nx1 - 0.12, ny1 + 0.1, nx1 - 0.1, ny1 + 0.2, 0.02, 0.01, horn)
    pen.capsule(nx1 + 0.02, ny1 + 0.05, nx1 + 0.1, ny1 + 0.12, 0.02, 0.01, horn)


def gazelleThomsons(pen, rng):
    col = jitter_color(rng, (0.78, 0.56, 0.32), 0.05)
    k = quadruped(pen, rng, col, a=0.33, b=0.14, by=0.58, leg_w=0.025, neck_ang=1.1,
                  neck_len=0.24, neck_w=0.05, head_len=0.2, head_h=0.08, head_ang=-0.35,
                  tail=(0.1, 0.025, -1.0, (0.08, 0.06, 0.05)), ears=(0.08, 0.018, col))
    body = k["body"]
    pen.pattern(lambda x, y: y < 0.53, (0.95, 0.93, 0.88), within=body)  # white belly
    pen.pattern(lambda x, y: np.abs(y - 0.56 - 0.05 * x) < 0.028, (0.08, 0.06, 0.05), within=body)
    hx, hy = k["neck_top"]
    horn = (0.15, 0.12, 0.1)
    pen.capsule(hx, hy + 0.03, hx - 0.07, hy + 0.2, 0.014, 0.006, horn)
    pen.capsule(hx + 0.02, hy + 0.03, hx - 0.03, hy + 0.2, 0.012, 0.006, horn)
    x, y = k["head_c"]
    pen.capsule(x - 0.05, y + 0.01, x + 0.08, y - 0.02, 0.01, color=(0.1, 0.08, 0.06))  # face stripe


def _lion(pen, rng, male):
    col = jitter_color(rng, (0.82, 0.62, 0.32), 0.05)
    if male:
        mane_col = jitter_color(rng, (0.3, 0.17, 0.08), 0.1)
        # mane drawn first so the face sits in front of it
        pen.ellipse(0.43, 0.72, 0.2, 0.27, mane_col, angle=-0.2, shade=0.3)
    k = quadruped(pen, rng, col, a=0.48, b=0.19, by=0.48, leg_w=0.065, neck_ang=0.6,
                  neck_len=0.14, neck_w=0.12, head_len=0.26, head_h=0.2, head_ang=-0.35,
                  tail=(0.45, 0.02, -0.9, col), ears=(0.06, 0.035, dk(col, 0.8)))
    tx, ty = k["tail_end"]
    pen.ellipse(tx, ty, 0.04, 0.05, (0.15, 0.09, 0.05))  # tail tuft
    if male:
        nx1, ny1 = k["neck_top"]
        pen.ellipse(nx1 - 0.06, ny1 - 0.02, 0.12, 0.2, mane_col, angle=-0.3, shade=0.3)
        x, y = k["head_c"]
        pen.ellipse(x + 0.04, y - 0.01, 0.1, 0.085, col, angle=-0.35)  # face in front of mane
    x, y = k["nose"]
    pen.ellipse(x - 0.01, y + 0.02, 0.03, 0.025, (0.25, 0.12, 0.1))


def lionMale(pen, rng):
    _lion(pen, rng, True)


def lionFemale(pen, rng):
    _lion(pen, rng, False)


def hyenaSpotted(pen, rng):
    col = jitter_color(rng, (0.72, 0.62, 0.45), 0.05)
    spot = (0.25, 0.18, 0.12)
    k = quadruped(pen, rng, col, a=0.4, b=0.18, by=0.5, leg_w=0.045, neck_ang=0.55,
                  neck_len=0.17, neck_w=0.1, head_len=0.26, head_h=0.15, head_ang=-0.5,
                  tilt=0.22, front_leg_extra=0.0, tail=(0.2, 0.035, -1.2, spot),
                  ears=(0.07, 0.04, dk(col, 0.7)))
    ph = rng.uniform(0, 6.3)
    pen.pattern(lambda x, y: (np.sin(32 * x + ph) * np.sin(32 * y) > 0.45) & (y > 0.2), spot)
    x, y = k["nose"]
    pen.ellipse(x - 0.03, y, 0.07, 0.05, (0.15, 0.12, 0.1), angle=-0.5)


def elephant(pen, rng):
    col = jitter_color(rng, (0.5, 0.48, 0.46), 0.05)
    far = dk(col, 0.75)
    sw = 0.05 * rng.uniform(-1, 1)
    for x in (0.3, -0.33):
        pen.capsule(x + 0.06, 0.45, x + 0.06 - sw, 0.07, 0.09, 0.08, far)
    pen.capsule(-0.55, 0.7, -0.62, 0.35, 0.015, color=far)  # tail
    pen.ellipse(0, 0.62, 0.55, 0.3, col, shade=0.3)
    pen.ellipse(0.5, 0.78, 0.2, 0.19, col, shade=0.2)  # head
    pen.capsule(0.62, 0.72, 0.72, 0.12, 0.075, 0.035, col, shade=0.1)  # trunk
    pen.capsule(0.72, 0.12, 0.78, 0.1, 0.035, 0.03, col)
    pen.capsule(0.6, 0.58, 0.76, 0.47, 0.028, 0.012, (0.95, 0.93, 0.85))  # tusk
    ear = pen.ellipse(0.38, 0.72, 0.15, 0.22, dk(col, 0.88), shade=0.3)
    pen.pattern(lambda x, y: np.abs(np.hypot(x - 0.38, (y - 0.72) * 0.7) - 0.13) < 0.012,
                dk(col, 0.6), within=ear)
    pen.ellipse(0.6, 0.83, 0.02, 0.02, (0.05, 0.05, 0.05))
    for x in (0.3, -0.33):
        pen.capsule(x, 0.45, x + sw, 0.07, 0.1, 0.09, col)


def giraffe(pen, rng):
    col = jitter_color(rng, (0.9, 0.72, 0.42), 0.04)
    patch = jitter_color(rng, (0.55, 0.3, 0.12), 0.06)
    sw = 0.05 * rng.uniform(-1, 1)
    for x in (0.2, -0.2):
        pen.capsule(x + 0.05, 0.6, x + 0.05 - sw, 0.03, 0.03, 0.022, dk(col, 0.75))
    pen.capsule(-0.3, 0.7, -0.36, 0.35, 0.012, color=col)
    pen.ellipse(-0.36, 0.34, 0.02, 0.05, (0.1, 0.08, 0.06))  # tail tuft
    pen.ellipse(0, 0.72, 0.32, 0.15, col, angle=0.25, shade=0.25)
    pen.capsule(0.2, 0.8, 0.45, 1.35, 0.08, 0.045, col)  # long neck
    pen.capsule(0.3, 0.95, 0.44, 1.33, 0.018, color=patch)  # neck mane
    pen.ellipse(0.53, 1.35, 0.1, 0.05, col, angle=-0.45)
    for x in (0.2, -0.2):
        pen.capsule(x, 0.6, x + sw, 0.03, 0.032, 0.024, col)
    # reticulated patches: brown cells separated by light lines
    ph = rng.uniform(0, 6.3)
    pen.pattern(lambda x, y: (np.abs(np.sin(20 * x + 2 * np.sin(14 * y) + ph)) > 0.32)
                & (np.abs(np.sin(20 * y + 2 * np.sin(12 * x))) > 0.32) & (y > 0.35), patch)
    pen.capsule(0.47, 1.38, 0.46, 1.47, 0.012, color=(0.25, 0.15, 0.08))  # ossicones
    pen.capsule(0.51, 1.38, 0.52, 1.47, 0.012, color=(0.25, 0.15, 0.08))
    pen.ellipse(0.52, 1.37, 0.015, 0.015, (0.05, 0.05, 0.05))


def buffalo(pen, rng):
    col = jitter_color(rng, (0.16, 0.14, 0.13), 0.08)
    k = quadruped(pen, rng, col, a=0.5, b=0.26, by=0.52, leg_w=0.06, neck_ang=0.2, neck_len=0.14,
                  neck_w=0.16, head_len=0.3, head_h=0.17, head_ang=-0.9, tilt=0.05,
                  tail=(0.4, 0.025, -1.4, col), eye=False)
    horn = (0.42, 0.4, 0.36)
    nx, ny = k["neck_top"]
    pen.ellipse(nx, ny + 0.06, 0.09, 0.05, horn)  # boss
    pen.capsule(nx, ny + 0.06, nx - 0.18, ny - 0.02, 0.045, 0.03, horn)
    pen.capsule(nx - 0.18, ny - 0.02, nx - 0.2, ny + 0.12, 0.03, 0.012, horn)
    pen.capsule(nx + 0.04, ny + 0.06, nx + 0.16, ny + 0.0, 0.035, 0.02, dk(horn, 0.8))
    x, y = k["nose"]
    pen.ellipse(x, y, 0.05, 0.04, (0.08, 0.07, 0.07))


def warthog(pen, rng):
    col = jitter_color(rng, (0.45, 0.4, 0.37), 0.06)
    k = quadruped(pen, rng, col, a=0.42, b=0.19, by=0.36, leg_w=0.04, neck_ang=0.3,
                  neck_len=0.1, neck_w=0.13, head_len=0.3, head_h=0.17, head_ang=-0.55,
                  tilt=0.05, tail=(0.25, 0.014, 1.25, col), ears=(0.07, 0.03, col))
    tx, ty = k["tail_end"]
    pen.ellipse(tx, ty, 0.02, 0.04, (0.1, 0.08, 0.07))  # upright tail tuft
    pen.capsule(-0.3, 0.5, 0.3, 0.53, 0.03, 0.04, color=(0.22, 0.18, 0.15))  # mane along the back
    x, y = k["nose"]
    tusk = (0.95, 0.92, 0.82)
    pen.capsule(x - 0.06, y + 0.03, x + 0.04, y + 0.1, 0.018, 0.008, tusk)
    pen.capsule(x - 0.06, y + 0.03, x + 0.0, y + 0.12, 0.015, 0.006, tusk)
    pen.ellipse(x - 0.15, y + 0.08, 0.035, 0.025, dk(col, 0.7))  # warts
    pen.ellipse(x, y - 0.01, 0.04, 0.04, (0.3, 0.24, 0.22))


def impala(pen, rng):
    col = jitter_color(rng, (0.72, 0.42, 0.2), 0.05)
    k = quadruped(pen, rng, col, a=0.38, b=0.16, by=0.6, leg_w=0.03, neck_ang=1.05,
                  neck_len=0.27, neck_w=0.06, head_len=0.22, head_h=0.09, head_ang=-0.5,
                  tail=(0.12, 0.025, -1.0, (0.95, 0.95, 0.92)), ears=(0.09, 0.02, col))
    body = k["body"]
    pen.pattern(lambda x, y: (y < 0.6) & (y > 0.5), (0.86, 0.66, 0.45), within=body)  # pale flank
    pen.pattern(lambda x, y: y < 0.5, (0.96, 0.94, 0.9), within=body)
    pen.pattern(lambda x, y: (np.abs(x + 0.3) < 0.02) & (y > 0.45), (0.1, 0.07, 0.05), within=body)
    if rng.uniform() < 0.6:  # males carry lyre-shaped horns
        hx, hy = k["neck_top"]
        h = (0.15, 0.12, 0.1)
        pen.capsule(hx, hy + 0.03, hx - 0.1, hy + 0.14, 0.015, 0.012, h)
        pen.capsule(hx - 0.1, hy + 0.14, hx - 0.06, hy + 0.26, 0.012, 0.009, h)
        pen.capsule(hx - 0.06, hy + 0.26, hx - 0.1, hy + 0.34, 0.009, 0.005, h)


def ostrich(pen, rng):
    male = rng.uniform() < 0.6
    body_c = (0.08, 0.08, 0.08) if male else jitter_color(rng, (0.45, 0.4, 0.35), 0.06)
    skin = jitter_color(rng, (0.85, 0.66, 0.6), 0.05)
    sw = 0.06 * rng.uniform(-1, 1)
    for s, c in ((-1, dk(skin, 0.75)), (1, skin)):
        kx = 0.08 + s * sw
        pen.capsule(0.0, 0.62, kx, 0.34, 0.045, 0.03, c)
        pen.capsule(kx, 0.34, kx - 0.06 * s, 0.02, 0.025, 0.02, c)
        pen.capsule(kx - 0.06 * s, 0.02, kx - 0.06 * s + 0.07, 0.01, 0.02, 0.015, c)
    pen.ellipse(-0.3, 0.72, 0.12, 0.09, (0.96, 0.95, 0.92) if male else dk(body_c, 1.2),
                angle=0.3)  # tail plumes
    pen.ellipse(0, 0.7, 0.3, 0.18, body_c, angle=0.08, shade=0.3)
    pen.ellipse(-0.08, 0.66, 0.13, 0.07, (0.95, 0.95, 0.93) if male else dk(body_c, 1.25))
    neck_ang = rng.uniform(1.2, 1.45)
    nx, ny = 0.2 + 0.62 * math.cos(neck_ang), 0.78 + 0.62 * math.sin(neck_ang)
    pen.capsule(0.2, 0.78, nx, ny, 0.05, 0.025, skin)  # long thin neck
    pen.ellipse(nx + 0.03, ny + 0.015, 0.06, 0.04, skin)
    pen.capsule(nx + 0.06, ny + 0.01, nx + 0.13, ny - 0.005, 0.015, 0.01, (0.6, 0.45, 0.35))
    pen.ellipse(nx + 0.03, ny + 0.03, 0.012, 0.012, (0.05, 0.05, 0.05))


def guineaFowl(pen, rng):
    col = jitter_color(rng, (0.22, 0.24, 0.28), 0.06)
    sw = 0.04 * rng.uniform(-1, 1)
    for s in (-1, 1):
        pen.capsule(0.02 * s, 0.2, 0.04 * s + sw * s, 0.01, 0.025, 0.02, (0.3, 0.3, 0.32))
    body = pen.ellipse(0, 0.42, 0.36, 0.26, col, angle=-0.15, shade=0.35)
    ph = rng.uniform(0, 6.3)
    pen.pattern(lambda x, y: np.sin(70 * x + ph) * np.sin(70 * y) > 0.6, (0.97, 0.97, 0.97),
                within=body)  # white spots
    pen.capsule(0.26, 0.56, 0.36, 0.72, 0.06, 0.04, (0.35, 0.45, 0.75))  # blue neck
    pen.ellipse(0.38, 0.74, 0.065, 0.05, (0.45, 0.55, 0.85))
    pen.polygon([(0.34, 0.77), (0.4, 0.77), (0.36, 0.86)], (0.8, 0.65, 0.35))  # casque
    pen.ellipse(0.43, 0.67, 0.025, 0.04, (0.85, 0.15, 0.12))  # red wattle
    pen.capsule(0.43, 0.74, 0.5, 0.72, 0.015, 0.008, (0.85, 0.78, 0.6))
    pen.ellipse(0.39, 0.75, 0.012, 0.012, (0.02, 0.02, 0.02))


def human(pen, rng):
    shirt = random_color(rng, (0.3, 0.9), (0.3, 0.9))
    pants = random_color(rng, (0.1, 0.6), (0.15, 0.5))
    skin = jitter_color(rng, rng.choice([(0.9, 0.72, 0.6), (0.55, 0.38, 0.26), (0.35, 0.22, 0.15)]), 0.05)
    sw = 0.06 * rng.uniform(-1, 1)
    pen.capsule(0.0, 0.5, -sw, 0.03, 0.05, 0.04, dk(pants, 0.8))
    pen.capsule(0.0, 0.5, sw, 0.03, 0.05, 0.04, pants)
    pen.capsule(-sw, 0.02, -sw + 0.07, 0.02, 0.03, color=(0.1, 0.1, 0.1))
    pen.capsule(sw, 0.02, sw + 0.07, 0.02, 0.03, color=(0.1, 0.1, 0.1))
    pen.capsule(0.0, 0.52, 0.0, 0.78, 0.1, 0.11, shirt, shade=0.2)
    pen.capsule(0.02, 0.8, 0.04 + sw, 0.5, 0.035, 0.03, dk(shirt, 0.85))
    pen.ellipse(0.03, 0.92, 0.07, 0.085, skin)
    if rng.uniform() < 0.5:
        pen.ellipse(0.03, 0.98, 0.09, 0.035, random_color(rng))  # hat


# ------------------------------------------------------------------------------------------------
# North-American species (ENA24 names)
# ------------------------------------------------------------------------------------------------
def White_Tailed_Deer(pen, rng):
    col = jitter_color(rng, (0.6, 0.45, 0.3), 0.05)
    white = (0.95, 0.94, 0.9)
    k = quadruped(pen, rng, col, a=0.4, b=0.17, by=0.6, leg_w=0.032, neck_ang=1.0, neck_len=0.26,
                  neck_w=0.07, head_len=0.22, head_h=0.1, head_ang=-0.6,
                  tail=(0.12, 0.05, 0.9 if rng.uniform() < 0.5 else -0.9, white),
                  ears=(0.1, 0.035, col))
    pen.pattern(lambda x, y: y < 0.5, white, within=k["body"])
    if rng.uniform() < 0.5:  # bucks carry antlers
        hx, hy = k["neck_top"]
        a = (0.75, 0.68, 0.55)
        pen.capsule(hx, hy + 0.04, hx + 0.02, hy + 0.2, 0.012, 0.01, a)
        pen.capsule(hx + 0.02, hy + 0.2, hx + 0.14, hy + 0.24, 0.01, 0.006, a)
        pen.capsule(hx + 0.04, hy + 0.17, hx + 0.06, hy + 0.3, 0.008, 0.005, a)
    x, y = k["nose"]
    pen.ellipse(x, y, 0.025, 0.025, (0.08, 0.06, 0.05))


def Bobcat(pen, rng):
    col = jitter_color(rng, (0.68, 0.54, 0.4), 0.05)
    k = quadruped(pen, rng, col, a=0.36, b=0.17, by=0.42, leg_w=0.055, neck_ang=0.6, neck_len=0.1,
                  neck_w=0.1, head_len=0.2, head_h=0.17, head_ang=-0.2,
                  tail=(0.1, 0.04, 0.5, col), eye=True)
    tx, ty = k["tail_end"]
    pen.ellipse(tx, ty, 0.035, 0.03, (0.1, 0.08, 0.06))  # bobbed tail, black tip
    ph = rng.uniform(0, 6.3)
    pen.pattern(lambda x, y: (np.sin(45 * x + ph) * np.sin(45 * y) > 0.55) & (y > 0.15),
                dk(col, 0.55))
    hx, hy = k["neck_top"]
    for dx in (-0.04, 0.05):
        pen.polygon([(hx + dx - 0.04, hy + 0.06), (hx + dx + 0.03, hy + 0.06),
                     (hx + dx - 0.01, hy + 0.2)], dk(col, 0.8))  # tufted ears
    x, y = k["head_c"]
    pen.ellipse(x - 0.02, y - 0.04, 0.08, 0.05, (0.9, 0.86, 0.78))  # pale ruff


def Coyote(pen, rng):
    col = jitter_color(rng, (0.62, 0.54, 0.42), 0.05)
    k = quadruped(pen, rng, col, a=0.36, b=0.15, by=0.45, leg_w=0.035, neck_ang=0.75,
                  neck_len=0.15, neck_w=0.08, head_len=0.26, head_h=0.1, head_ang=-0.3,
                  ears=(0.1, 0.035, dk(col, 0.8)))
    pen.ellipse(-0.45, 0.33, 0.16, 0.06, col, angle=0.9)  # bushy drooping tail
    pen.ellipse(-0.53, 0.21, 0.05, 0.04, (0.1, 0.08, 0.07))
    pen.pattern(lambda x, y: (y > 0.55) & (x > -0.3) & (x < 0.2), dk(col, 0.65), within=k["body"])
    x, y = k["nose"]
    pen.ellipse(x, y, 0.02, 0.02, (0.05, 0.05, 0.05))


def Virginia_Opossum(pen, rng):
    col = jitter_color(rng, (0.72, 0.72, 0.7), 0.05)
    pink = (0.92, 0.7, 0.7)
    pen.capsule(-0.35, 0.3, -0.75, 0.12, 0.03, 0.01, pink)  # long naked tail
    k = quadruped(pen, rng, col, a=0.36, b=0.17, by=0.3, leg_w=0.04, neck_ang=0.2, neck_len=0.08,
                  neck_w=0.11, head_len=0.26, head_h=0.12, head_ang=-0.25,
                  leg_col=(0.12, 0.11, 0.1), ears=(0.06, 0.035, (0.08, 0.08, 0.08)))
    pen.pattern(lambda x, y: y > 0.3, dk(col, 0.7), within=k["body"])
    x, y = k["head_c"]
    pen.ellipse(x, y, 0.12, 0.055, (0.97, 0.96, 0.94), angle=-0.25)  # white face
    nx, ny = k["nose"]
    pen.ellipse(nx, ny, 0.025, 0.022, pink)
    pen.ellipse(x - 0.03, y + 0.02, 0.014, 0.014, (0.02, 0.02, 0.02))


def American_Black_Bear(pen, rng):
    col = jitter_color(rng, (0.09, 0.08, 0.08), 0.1)
    k = quadruped(pen, rng, col, a=0.45, b=0.24, by=0.45, leg_w=0.08, neck_ang=0.1, neck_len=0.12,
                  neck_w=0.16, head_len=0.26, head_h=0.18, head_ang=-0.3, tilt=0.05,
                  ears=(0.06, 0.045, col), eye=False)
    x, y = k["nose"]
    pen.ellipse(x - 0.04, y + 0.01, 0.07, 0.05, (0.55, 0.42, 0.28), angle=-0.3)  # brown muzzle
    pen.ellipse(x + 0.0, y + 0.02, 0.025, 0.02, (0.02, 0.02, 0.02))


def Raccoon(pen, rng):
    col = jitter_color(rng, (0.52, 0.5, 0.47), 0.05)
    dark = (0.1, 0.09, 0.09)
    pen.capsule(-0.35, 0.4, -0.62, 0.22, 0.06, 0.045, col)
    pen.pattern(lambda x, y: (x < -0.36) & (np.sin(60 * (x - 0.5 * y)) > 0.1), dark)  # ringed tail
    k = quadruped(pen, rng, col, a=0.34, b=0.19, by=0.4, leg_w=0.04, neck_ang=0.0, neck_len=0.08,
                  neck_w=0.11, head_len=0.22, head_h=0.14, head_ang=-0.35, tilt=-0.15,
                  leg_col=dk(col, 0.6), ears=(0.06, 0.03, (0.85, 0.85, 0.85)), eye=False)
    x, y = k["head_c"]
    pen.ellipse(x, y + 0.02, 0.09, 0.03, dark, angle=-0.35)  # black mask
    pen.ellipse(x + 0.03, y - 0.03, 0.07, 0.03, (0.92, 0.9, 0.88), angle=-0.35)


def Wild_Turkey(pen, rng):
    col = jitter_color(rng, (0.32, 0.23, 0.15), 0.06)
    legs = (0.65, 0.5, 0.45)
    fan = rng.uniform() < 0.35
    if fan:  # displaying tom: the banded fan behind the body
        pts = [(-0.15 + 0.45 * math.cos(t), 0.55 + 0.45 * math.sin(t))
               for t in np.linspace(0.5, math.pi - 0.1, 9)] + [(-0.1, 0.5)]
        fr = pen.polygon(pts, dk(col, 0.9))
        pen.pattern(lambda x, y: np.abs(np.hypot(x + 0.15, y - 0.55) - 0.38) < 0.03,
                    (0.85, 0.8, 0.65), within=fr)
    sw = 0.04 * rng.uniform(-1, 1)
    for s in (-1, 1):
        pen.capsule(0.0, 0.35, 0.02 + s * sw, 0.01, 0.025, 0.02, legs)
    body = pen.ellipse(0, 0.5, 0.3, 0.2, col, angle=-0.25, shade=0.35)
    pen.pattern(lambda x, y: np.sin(50 * y + 10 * x) > 0.6, dk(col, 0.55), within=body)
    if not fan:
        pen.polygon([(-0.25, 0.55), (-0.48, 0.5), (-0.44, 0.36), (-0.22, 0.44)], dk(col, 0.8))
    pen.capsule(0.2, 0.62, 0.3, 0.85, 0.035, 0.022, (0.6, 0.7, 0.9))  # bare neck
    pen.ellipse(0.32, 0.86, 0.05, 0.04, (0.55, 0.68, 0.92))
    pen.ellipse(0.33, 0.78, 0.022, 0.05, (0.85, 0.12, 0.1))  # red wattle
    pen.capsule(0.36, 0.87, 0.41, 0.85, 0.012, 0.008, (0.75, 0.7, 0.55))
    pen.capsule(0.2, 0.58, 0.24, 0.42, 0.01, color=(0.08, 0.06, 0.05))  # beard


def Red_Fox(pen, rng):
    col = jitter_color(rng, (0.86, 0.45, 0.15), 0.05)
    black = (0.08, 0.06, 0.05)
    pen.ellipse(-0.5, 0.38, 0.22, 0.07, col, angle=0.25)  # bushy tail
    pen.ellipse(-0.7, 0.33, 0.06, 0.05, (0.97, 0.96, 0.94))  # white tip
    k = quadruped(pen, rng, col, a=0.33, b=0.14, by=0.42, leg_w=0.03, neck_ang=0.8, neck_len=0.13,
                  neck_w=0.07, head_len=0.24, head_h=0.1, head_ang=-0.2, leg_col=black,
                  ears=(0.1, 0.035, black))
    pen.pattern(lambda x, y: (y < 0.36) & (x > 0.1), (0.96, 0.94, 0.9), within=k["body"])
    x, y = k["nose"]
    pen.ellipse(x - 0.04, y - 0.02, 0.06, 0.025, (0.96, 0.94, 0.9), angle=-0.2)
    pen.ellipse(x, y, 0.018, 0.018, black)

