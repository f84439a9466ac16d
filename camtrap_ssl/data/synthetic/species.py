"""The species table: every painter by class name with its real size, and placement on a canvas.

The drawings live in :mod:`.animals` and :mod:`.things`, the pen and the generic body in
:mod:`.pen`; this module is what the scenes and worlds use: :data:`SPECIES`, :func:`extent`
(a painter's measured bounding box) and :func:`paint` (draw one at a given height and place).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import animals, things
from .pen import Pen
from .render import Canvas


@dataclass(frozen=True)
class Species:
    """A painter plus how large the thing is in the world (height relative to a zebra)."""

    name: str
    paint: Callable
    real_size: float = 1.0


SPECIES: dict[str, Species] = {s.name: s for s in [
    Species("zebra", animals.zebra, 1.0), Species("wildebeest", animals.wildebeest, 0.95),
    Species("gazelleThomsons", animals.gazelleThomsons, 0.55),
    Species("lionMale", animals.lionMale, 0.85), Species("lionFemale", animals.lionFemale, 0.75),
    Species("hyenaSpotted", animals.hyenaSpotted, 0.65), Species("elephant", animals.elephant, 1.6),
    Species("giraffe", animals.giraffe, 1.9), Species("buffalo", animals.buffalo, 1.0),
    Species("warthog", animals.warthog, 0.5), Species("impala", animals.impala, 0.75),
    Species("ostrich", animals.ostrich, 1.4), Species("guineaFowl", animals.guineaFowl, 0.3),
    Species("human", animals.human, 1.2),
    Species("White_Tailed_Deer", animals.White_Tailed_Deer, 1.0),
    Species("Bobcat", animals.Bobcat, 0.5), Species("Coyote", animals.Coyote, 0.6),
    Species("Virginia_Opossum", animals.Virginia_Opossum, 0.35),
    Species("American_Black_Bear", animals.American_Black_Bear, 1.0),
    Species("Raccoon", animals.Raccoon, 0.4), Species("Wild_Turkey", animals.Wild_Turkey, 0.7),
    Species("Red_Fox", animals.Red_Fox, 0.55), Species("car", things.car),
    Species("truck", things.truck), Species("airplane", things.airplane),
    Species("house", things.house), Species("tree", things.tree), Species("ball", things.ball),
    Species("flower", things.flower), Species("boat", things.boat), Species("chair", things.chair),
    Species("cup", things.cup), Species("bicycle", things.bicycle),
    Species("mountain", things.mountain),
]}

_EXTENTS: dict[str, tuple[float, float, float, float]] = {}


def extent(name: str) -> tuple[float, float, float, float]:
    """Local bounding box (xmin, xmax, ymin, ymax) of a painter, measured once by drawing it.

    Measuring rather than declaring keeps placement right whatever a painter draws.
    """
    if name not in SPECIES:
        raise ValueError(f"unknown species {name!r}; allowed: {sorted(SPECIES)}")
    if name not in _EXTENTS:
        scale, o = 100.0, 300.0
        boxes = []
        for k in range(4):
            cv = Canvas(600, 600, ss=1)
            SPECIES[name].paint(Pen(cv, o, o, scale), np.random.default_rng(k))
            ys, xs = np.nonzero(cv.ids)
            boxes.append(((xs.min() - o) / scale, (xs.max() + 1 - o) / scale,
                          (o - ys.max() - 1) / scale, (o - ys.min()) / scale))
        b = np.array(boxes)
        _EXTENTS[name] = (b[:, 0].min(), b[:, 1].max(), b[:, 2].min(), b[:, 3].max())
    return _EXTENTS[name]


def paint(canvas: Canvas, name: str, rng, *, cx: float, ground: float, height: float,
          flip: bool = False, obj: int = 1) -> Pen:
    """Draw species ``name`` so that its measured extent is ``height`` canvas pixels tall,
    horizontally centred at ``cx`` with its lowest point on the line y = ``ground``."""
    x0, x1, y0, y1 = extent(name)
    s = height / max(y1 - y0, 1e-6)
    xc = (x0 + x1) / 2
    ox = cx - (-xc if flip else xc) * s
    oy = ground + y0 * s
    pen = Pen(canvas, ox, oy, s, flip=flip, obj=obj)
    SPECIES[name].paint(pen, rng)
    return pen

