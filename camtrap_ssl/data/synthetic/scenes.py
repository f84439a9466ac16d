"""Camera-trap scenes: fixed camera sites, day and night-infrared frames, occlusion, the strip.

A *site* is a camera bolted to a post: its background (sky, grass, trees, bushes, rocks) and its
viewpoint (horizon height, foreground grass) never change, which is why real camera-trap models
learn backgrounds and why splits must be by location (SPEC section 2). Each frame re-uses the site
background, draws the animals of its sequence, puts the site's foreground grass over them, applies
daylight or an infrared flash, and stamps the timestamp strip at the bottom.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .pen import dk
from .render import Canvas, jitter_color, smooth_noise
from .species import SPECIES, extent, paint


@dataclass
class Site:
    """What stays fixed at one camera: background pixels, horizon, the occluding foreground."""

    img: np.ndarray  # (H*ss, W*ss, 3) float background
    horizon: float  # canvas rows
    ground_bottom: float  # canvas rows, top of the timestamp strip
    occ_mask: np.ndarray  # (H*ss, W*ss) bool, foreground grass / ferns
    occ_img: np.ndarray  # (H*ss, W*ss, 3) their colours


def strip_height(height: int) -> int:
    """Rows of the black timestamp band: enough for a 5-row digit font plus margins."""
    return max(7, int(round(0.075 * height)))


def _grass_texture(rng, H, W, base, amount=0.18):
    tex = smooth_noise(rng, H, W, 6, 6.0)
    xs = np.arange(W, dtype=np.float32)[None, :]
    ys = np.arange(H, dtype=np.float32)[:, None]
    streak = np.sin(xs * rng.uniform(1.2, 2.2) + 3 * np.sin(ys * 0.05) + 2 * tex)
    return np.clip(np.asarray(base, np.float32) * (1 + amount * tex + 0.08 * streak)[..., None], 0, 1)


def _blades(cv: Canvas, rng, n, x_lo, x_hi, y_base, h_lo, h_hi, col):
    for _ in range(n):
        x = rng.uniform(x_lo, x_hi)
        h = rng.uniform(h_lo, h_hi)
        w = rng.uniform(0.006, 0.014) * cv.W
        lean = rng.uniform(-0.4, 0.4) * h
        reg = cv.polygon([(x - w, y_base + 2), (x + w, y_base + 2), (x + lean, y_base - h)])
        cv.fill(reg, jitter_color(rng, col, 0.12), obj=1)


def make_site(habitat: str, rng: np.random.Generator, height: int, width: int, ss: int,
              season: int = 0) -> Site:
    """Draw a camera site's fixed background. ``season`` shifts grass from green to straw."""
    cv = Canvas(height, width, ss)
    H, W = cv.H, cv.W
    bottom = H - strip_height(height) * ss
    if habitat == "savanna":
        horizon = H * rng.uniform(0.18, 0.45)
        grass = np.asarray(
            [(0.42, 0.55, 0.22), (0.6, 0.6, 0.32), (0.78, 0.7, 0.45)][season % 3], np.float32)
        grass = jitter_color(rng, grass, 0.06)
        sky_top, sky_bot = jitter_color(rng, (0.42, 0.6, 0.88), 0.06), jitter_color(rng, (0.82, 0.86, 0.92), 0.04)
    elif habitat == "forest":
        horizon = H * rng.uniform(0.05, 0.25)
        grass = jitter_color(rng, (0.42, 0.33, 0.2), 0.08)  # leaf litter
        sky_top, sky_bot = jitter_color(rng, (0.55, 0.65, 0.6), 0.06), jitter_color(rng, (0.75, 0.8, 0.7), 0.05)
    else:
        raise ValueError(f"habitat={habitat!r}; allowed: ['forest', 'savanna']")
    t = np.clip(np.arange(H, dtype=np.float32) / max(horizon, 1), 0, 1)[:, None, None]
    cv.img[:] = sky_top * (1 - t) + sky_bot * t
    hor = int(horizon)
    cv.img[hor:] = _grass_texture(rng, H - hor, W, grass)
    # haze: the far ground is a little brighter than the near ground
    cv.img[hor:] *= np.linspace(1.05, 0.88, H - hor, dtype=np.float32)[:, None, None]
    if habitat == "savanna":
        for _ in range(int(rng.integers(0, 4))):  # clouds
            reg = cv.ellipse(rng.uniform(0, W), rng.uniform(0, horizon * 0.8), rng.uniform(0.05, 0.15) * W,
                             rng.uniform(0.02, 0.05) * H)
            cv.fill(reg, (0.95, 0.95, 0.97))
        # distant hills
        xs = np.arange(W, dtype=np.float32)
        prof = horizon - H * 0.04 * (1 + np.sin(xs / W * rng.uniform(2, 6) + rng.uniform(0, 6)))
        rows = np.arange(H, dtype=np.float32)[:, None]
        hill = (rows >= prof[None, :]) & (rows < horizon + 1)
        cv.img[hill] = jitter_color(rng, (0.45, 0.52, 0.5), 0.05)
        for _ in range(int(rng.integers(1, 4))):  # acacias: flat crown on a thin trunk
            x = rng.uniform(0, W)
            base = horizon + rng.uniform(0.0, 0.25) * (bottom - horizon)
            s = (base - horizon + 0.05 * H) / H * rng.uniform(0.8, 1.6)
            th = s * H * 1.2
            cv.fill(cv.capsule(x, base, x + 0.1 * th, base - th, 0.02 * th + 1), (0.25, 0.2, 0.15))
            cv.fill(cv.ellipse(x + 0.1 * th, base - th, 0.6 * th, 0.16 * th), jitter_color(rng, (0.22, 0.33, 0.15), 0.1))
        for _ in range(int(rng.integers(1, 5))):  # bushes
            x = rng.uniform(0, W)
            y = horizon + rng.uniform(0.02, 0.5) * (bottom - horizon)
            r = (y - horizon + 0.05 * H) * rng.uniform(0.15, 0.35)
            c = jitter_color(rng, (0.25, 0.35, 0.16), 0.12)
            for k in range(3):
                cv.fill(cv.ellipse(x + (k - 1) * r * 0.7, y - r * 0.3, r, r * 0.7), dk(c, 0.9 + 0.1 * k))
        if rng.uniform() < 0.4:  # a rock
            x, y = rng.uniform(0, W), horizon + rng.uniform(0.3, 0.9) * (bottom - horizon)
            r = rng.uniform(0.04, 0.1) * W
            cv.fill(cv.ellipse(x, y, r, 0.6 * r), jitter_color(rng, (0.55, 0.52, 0.5), 0.1), shade=0.4)
        blade_col = dk(grass, 0.85)
    else:
        for _ in range(int(rng.integers(5, 10))):  # trunks
            x = rng.uniform(0, W)
            base = horizon + rng.uniform(0.0, 0.5) * (bottom - horizon)
            w = (base - horizon + 0.1 * H) * rng.uniform(0.04, 0.12)
            c = jitter_color(rng, (0.35, 0.3, 0.25), 0.12)
            cv.fill(cv.capsule(x, base, x + rng.uniform(-0.05, 0.05) * W, -0.1 * H, w, w * 0.8), c, shade=0.2)
        for _ in range(int(rng.integers(4, 9))):  # foliage
            cv.fill(cv.ellipse(rng.uniform(0, W), rng.uniform(-0.1, 0.2) * H, rng.uniform(0.1, 0.3) * W,
                               rng.uniform(0.05, 0.15) * H), jitter_color(rng, (0.22, 0.38, 0.18), 0.15))
        if rng.uniform() < 0.6:  # a fallen log
            y = horizon + rng.uniform(0.3, 0.8) * (bottom - horizon)
            x = rng.uniform(0, W)
            cv.fill(cv.capsule(x - 0.3 * W, y, x + 0.3 * W, y + rng.uniform(-0.05, 0.05) * H, 0.03 * H),
                    jitter_color(rng, (0.38, 0.3, 0.22), 0.1))
        blade_col = jitter_color(rng, (0.3, 0.5, 0.2), 0.1)
    np.clip(cv.img, 0, 1, out=cv.img)
    # the site's foreground grass, drawn later over the animals
    occ = Canvas(height, width, ss)
    n_clumps = int(rng.integers(0, 4))
    for _ in range(n_clumps):
        x0 = rng.uniform(-0.1, 0.9) * W
        _blades(occ, rng, int(rng.integers(15, 40)), x0, x0 + rng.uniform(0.1, 0.4) * W, bottom,
                0.04 * H, rng.uniform(0.1, 0.3) * H, blade_col)
    return Site(img=cv.img, horizon=float(horizon), ground_bottom=float(bottom),
                occ_mask=occ.ids > 0, occ_img=occ.img)


# ------------------------------------------------------------------------------------------------
# frames
# ------------------------------------------------------------------------------------------------
@dataclass
class Individual:
    """One animal of a sequence: what it is and how it crosses the frame."""

    species: str
    depth: float  # 0 far (near the horizon) .. 1 near the camera
    x_anchor: float  # centre x as a fraction of the width in frame `anchor`
    anchor: int
    speed: float  # fraction of the width per frame, in the facing direction
    flip: bool  # facing left
    seed: int  # fixes its colours and pose across frames
    # source-like framing (the domain-distance family): this share of the frame height, centred
    # vertically, instead of the perspective size and ground line of ``depth``
    height: float | None = None


def animal_height(species: str, depth: float) -> float:
    """Height as a fraction of the frame: perspective times the animal's real size, kept in
    roughly [0.15, 0.6] so that animals stay recognisable after the squash to input size."""
    return float(np.clip((0.13 + 0.42 * depth) * SPECIES[species].real_size ** 0.6, 0.15, 0.6))


def render_frame(site: Site, individuals: list, frame: int, *, height: int, width: int, ss: int,
                 night: bool, light: float, tint, seed_seq, draw_animals: bool = True):
    """One frame: (uint8 HxWx3 image, int16 HxW id map with id k+1 for individuals[k])."""
    cv = Canvas(height, width, ss)
    np.copyto(cv.img, site.img)
    H, W = cv.H, cv.W
    span = site.ground_bottom - site.horizon
    if draw_animals:
        order = sorted(range(len(individuals)), key=lambda k: individuals[k].depth)  # far first
        for k in order:
            ind = individuals[k]
            x = (ind.x_anchor + (frame - ind.anchor) * ind.speed * (-1 if ind.flip else 1)) * W
            x0, x1, y0, y1 = extent(ind.species)
            if ind.height is None:
                foot = site.horizon + (0.1 + 0.88 * ind.depth) * span
                h = animal_height(ind.species, ind.depth) * H
            else:  # as the source world frames its objects: large, centred, inside the frame
                h = min(ind.height * H, 0.92 * W * (y1 - y0) / (x1 - x0), site.ground_bottom)
                foot = min(0.5 * H + h / 2, site.ground_bottom)
            if x + h * (x1 - x0) < -W or x - h * (x1 - x0) > 2 * W:
                continue  # far outside: skip the work
            paint(cv, ind.species, np.random.default_rng(ind.seed), cx=x, ground=foot, height=h,
                  flip=ind.flip, obj=k + 1)
    np.copyto(cv.img, site.occ_img, where=site.occ_mask[..., None])
    cv.ids[site.occ_mask] = 0
    img, ids = cv.result()
    img = img.astype(np.float32) / 255
    rng = np.random.default_rng(seed_seq)
    h, w = img.shape[:2]
    if night:
        img = infrared(img, site.horizon / ss, ids, rng)
    else:
        img = np.clip(img * light * np.asarray(tint, np.float32), 0, 1)
        img = np.clip(img + rng.normal(0, 0.012, img.shape).astype(np.float32), 0, 1)
    out = (img * 255 + 0.5).astype(np.uint8)
    sh = strip_height(h)
    out[h - sh:] = 0
    ids[h - sh:] = 0
    return out, ids


def infrared(img: np.ndarray, horizon: float, ids: np.ndarray, rng) -> np.ndarray:
    """Night shot: greyscale, a flash that lights the near ground and fades with distance and
    towards the corners, a black sky, sensor noise. R = G = B exactly."""
    h, w = img.shape[:2]
    lum = img @ np.asarray([0.3, 0.59, 0.11], np.float32)
    ys = np.arange(h, dtype=np.float32)[:, None]
    xs = np.arange(w, dtype=np.float32)[None, :]
    near = np.clip((ys - horizon) / max(h - horizon, 1), 0, 1)
    radial = np.exp(-((xs - w / 2) / (0.55 * w)) ** 2 - ((ys - 0.75 * h) / (0.7 * h)) ** 2)
    flash = (0.25 + 0.9 * near ** 0.7) * radial
    sky = (ys < horizon) & (ids == 0)
    g = lum * flash * rng.uniform(1.0, 1.4)
    g = np.where(sky, 0.04 + 0.02 * lum, g)
    g = np.clip(g + rng.normal(0, 0.025, g.shape).astype(np.float32), 0, 1)
    return np.repeat(g[..., None], 3, axis=2)


# 3x5 bitmap digits for the timestamp strip
_FONT = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111",
    "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001001001001", "8": "111101111101111",
    "9": "111101111001111", "-": "000000111000000", ":": "000010000010000",
    " ": "000000000000000", "C": "111100100100111",
}


_GLYPHS: dict = {}


def _glyph(ch: str, scale: int) -> np.ndarray:
    if (ch, scale) not in _GLYPHS:
        bits = np.array([int(b) for b in _FONT.get(ch, _FONT[" "])], bool).reshape(5, 3)
        _GLYPHS[ch, scale] = np.kron(bits, np.ones((scale, scale), bool))
    return _GLYPHS[ch, scale]


def stamp(img: np.ndarray, text: str) -> None:
    """Write ``text`` in white blocky digits into the strip at the bottom (in place)."""
    h, w = img.shape[:2]
    sh = strip_height(h)
    scale = max(1, (sh - 2) // 5)
    y0 = h - sh + (sh - 5 * scale) // 2
    x = 2
    for ch in text:
        glyph = _glyph(ch, scale)
        gw = glyph.shape[1]
        if x + gw > w:
            break
        region = img[y0:y0 + glyph.shape[0], x:x + gw]
        region[glyph] = 235
        x += gw + scale
