"""Camera-trap worlds written exactly as LILA publishes them: JPEGs plus a COCO Camera Traps JSON.

Two stand-ins, named after the datasets they imitate (SPEC section 2):

* ``serengeti``: Snapshot Serengeti class names, seasons / sites / rolls in the file paths,
  capture sequences of three frames labelled at sequence level, a long-tailed class frequency
  dominated by wildebeest, zebra and Thomson's gazelle.
* ``ena24``: eight North-American species at near-uniform frequency, forest sites, single frames.

Every difficulty of SPEC section 1 is built in: small and off-centre animals, animals cut by the
frame edge or behind foreground grass, fixed per-site backgrounds, infrared night frames, empty
frames, sequence labels on frames the animal has already left, and the timestamp strip.
Annotations carry the exact bbox and a ``mask_file`` PNG of every visible animal.

Everything is planned from the seed first (:func:`plan_sequences`, cheap, no pixels) and then
rendered, so class counts can be checked without drawing.

**The domain-distance family** (:func:`family_spec`, RQ1): the Serengeti stand-in with its
difficulties switched off, so that distance 0 is source-like (large centred still animals on the
source world's colourful backgrounds, daylight) and each step switches one on again
(:data:`FAMILY_STEPS`): small animals (perspective sizes), off-centre and moving animals (cut by
the frame edge, and sequence labels on frames the animal has left), the fixed camera sites with
their foreground grass, night infrared. Distance 4 has the Serengeti stand-in's settings exactly.
Every step keeps the same plan (labels, sequences, sites, times): a switched-off difficulty
transforms the same random draws (a centred animal is the drawn position pulled to the middle),
or draws from a stream of its own, so the family differs in what the steps say and nothing else,
and its location split is the same at every distance.

**The unlabelled in-domain pool** (``stream`` and ``sites`` of :func:`plan_sequences`): frames of
the same world's camera sites with other sequences (another random stream), for self-supervised
pretraining on camera-trap frames (:func:`camtrap_ssl.data.embedded.camtrap_pool`). Stream 2
draws the extra validation frames at a target's own validation sites
(:func:`camtrap_ssl.data.embedded.load_target`); from stream 2 on the names carry
:func:`stream_tag`, so that they never collide with the world's own.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from camtrap_ssl.core.fileio import atomic_write_bytes
from camtrap_ssl.core.profiles import Profile, get_profile
from camtrap_ssl.core.progress import progress_bar

from .render import Canvas
from .scenes import Individual, Site, make_site, render_frame, stamp, strip_height
from .worlds import (
    GENERATOR_VERSION,
    cache_key,
    colourful_background,
    default_cache_dir,
    stable_id,
)


@dataclass(frozen=True)
class CamtrapSpec:
    """Everything that distinguishes one camera-trap dataset stand-in from another."""

    name: str
    description: str
    frequencies: dict  # species -> relative frequency among non-empty sequences
    empty_share: float  # share of sequences with no animal
    frames_per_seq: int
    habitat: str
    seasons: tuple  # (code, first day, last day); () when the dataset has none
    site_names: tuple
    sites_per_seq: int  # one site per this many sequences (clamped to the names available)
    min_sites: int
    night_share: float
    herd: frozenset = frozenset()
    second_species_share: float = 0.04
    sequence_level: bool = False
    year: int = 2016
    # the difficulties of SPEC section 1 that the domain-distance family switches (family_spec)
    small_animals: bool = True  # perspective sizes; off: the source's 0.5-0.85 of the frame height
    off_centre: bool = True  # anywhere, cut by edges, moving; off: centred (+-0.1) and still
    site_backgrounds: bool = True  # fixed camera sites with foreground grass; off: a fresh
    # colourful source-world background per sequence, nothing in front of the animal

    def difficulty(self) -> dict:
        """The switchable difficulties, as recorded in a world's cache key and identity."""
        return {"small_animals": self.small_animals, "off_centre": self.off_centre,
                "site_backgrounds": self.site_backgrounds, "night_share": self.night_share}


SERENGETI = CamtrapSpec(
    name="serengeti",
    description="Synthetic stand-in for Snapshot Serengeti (camtrap_ssl embedded world)",
    # a few classes dominate, then a long tail (as in the real data)
    frequencies={"wildebeest": 0.30, "zebra": 0.18, "gazelleThomsons": 0.13, "buffalo": 0.055,
                 "impala": 0.05, "hyenaSpotted": 0.04, "elephant": 0.038, "giraffe": 0.033,
                 "warthog": 0.03, "human": 0.028, "lionFemale": 0.026, "guineaFowl": 0.024,
                 "ostrich": 0.022, "lionMale": 0.02},
    empty_share=0.15, frames_per_seq=3, habitat="savanna",
    seasons=(("S1", "2010-07-20", "2010-10-15"), ("S2", "2010-10-16", "2011-01-31"),
             ("S3", "2011-02-01", "2011-05-15")),
    site_names=("B04", "C08", "D10", "E03", "F11", "H06", "J08", "K05", "L10", "M04", "P07",
                "Q10"),
    sites_per_seq=25, min_sites=3, night_share=0.35,
    herd=frozenset({"wildebeest", "zebra", "gazelleThomsons", "buffalo", "impala", "elephant",
                    "guineaFowl"}),
    sequence_level=True, year=2010,
)

ENA24 = CamtrapSpec(
    name="ena24",
    description="Synthetic stand-in for ENA24-detection (camtrap_ssl embedded world)",
    frequencies={"White_Tailed_Deer": 0.14, "Bobcat": 0.12, "Coyote": 0.12,
                 "Virginia_Opossum": 0.13, "American_Black_Bear": 0.12, "Raccoon": 0.13,
                 "Wild_Turkey": 0.12, "Red_Fox": 0.12},
    empty_share=0.05, frames_per_seq=1, habitat="forest", seasons=(),
    site_names=("ENA01", "ENA02", "ENA03", "ENA04", "ENA05", "ENA06"),
    sites_per_seq=60, min_sites=2, night_share=0.45, second_species_share=0.02, year=2016,
)

SPECS = {"serengeti": SERENGETI, "ena24": ENA24}

# What each step of the domain-distance family switches on, from distance 0 (source-like) to
# distance 4 (the Serengeti stand-in)
FAMILY_STEPS = ("small animals (perspective sizes)",
                "off-centre, moving animals (cut by the edge; labels on frames they left)",
                "fixed camera sites with foreground grass (occlusion)",
                "night infrared (35 % of sequences)")
FAMILY_DISTANCES = tuple(range(len(FAMILY_STEPS) + 1))


def family_spec(distance: int) -> CamtrapSpec:
    """The Serengeti stand-in at ``distance`` from the source world (0-4; module docstring)."""
    if not isinstance(distance, int) or isinstance(distance, bool) or distance not in FAMILY_DISTANCES:
        raise ValueError(f"distance={distance!r}; allowed: {list(FAMILY_DISTANCES)}")
    return replace(SERENGETI, small_animals=distance >= 1, off_centre=distance >= 2,
                   site_backgrounds=distance >= 3,
                   night_share=SERENGETI.night_share if distance >= 4 else 0.0)


def _spec(name: str | CamtrapSpec) -> CamtrapSpec:
    if isinstance(name, CamtrapSpec):
        return name
    if name not in SPECS:
        raise ValueError(f"name={name!r} is not a camera-trap world; allowed: {sorted(SPECS)}")
    return SPECS[name]


def class_frequencies(name: str) -> dict:
    """Expected share of *sequences* per category (``empty`` included), summing to 1."""
    spec = _spec(name)
    tot = sum(spec.frequencies.values())
    out = {k: (1 - spec.empty_share) * v / tot for k, v in spec.frequencies.items()}
    out["empty"] = spec.empty_share
    return out


def sequence_counts(name: str, n_sequences: int) -> dict:
    """Exact number of sequences per category: largest-remainder rounding of
    :func:`class_frequencies`, with at least one sequence per class when there is room, so that
    even the tiny profile has every class and the tail keeps its shape."""
    freqs = class_frequencies(name)
    keys = list(freqs)
    want = np.array([freqs[k] * n_sequences for k in keys])
    counts = np.floor(want).astype(int)
    if n_sequences >= len(keys):
        counts = np.maximum(counts, 1)
    while counts.sum() < n_sequences:
        counts[np.argmax(want - counts)] += 1
    while counts.sum() > n_sequences:
        counts[np.argmax(np.where(counts > 1, counts - want, -np.inf))] -= 1
    return dict(zip(keys, counts.tolist()))


@dataclass
class Sequence:
    index: int
    label: str  # the sequence's main category ("empty" for none)
    individuals: list
    site: str
    season: str | None
    start: dt.datetime
    n_frames: int
    night: bool
    light: float
    tint: tuple
    roll: str = "R1"
    number: int = 0  # within (season, site, roll)
    first_pict: int = 0
    frame_names: list = field(default_factory=list)
    tag: str = ""  # in the names of stream >= 2 (:func:`stream_tag`)


def _n_sites(spec: CamtrapSpec, n_seq: int) -> int:
    return int(np.clip(n_seq // spec.sites_per_seq, spec.min_sites, len(spec.site_names)))


def _n_images(spec: CamtrapSpec, p: Profile) -> int:
    return p.serengeti_images if spec.name == "serengeti" else p.ena24_images


def plan_sequences(name: str | CamtrapSpec, profile: Profile | str, seed: int = 0,
                   n_images: int | None = None, stream: int = 0,
                   sites: tuple[str, ...] | None = None) -> list:
    """Decide every sequence (labels, animals, motion, site, time, light) without drawing.

    ``n_images``: frames in all (default: the profile's for this world). ``stream`` > 0 draws
    other sequences (another random stream) of the same world; ``sites`` restricts them to those
    camera sites (the in-domain pool). Stream 0 on all sites is the world itself.
    """
    spec = _spec(name)
    p = get_profile(profile)
    n_images = _n_images(spec, p) if n_images is None else n_images
    if n_images < 1:
        raise ValueError(f"profile {p.name!r} asks for {n_images} {spec.name} images; the embedded "
                         "world needs at least 1 (the 'paper' profile uses the real datasets)")
    F = spec.frames_per_seq
    lengths = [F] * (n_images // F) + ([n_images % F] if n_images % F else [])
    counts = sequence_counts(name, len(lengths))
    labels = [k for k, c in counts.items() for _ in range(c)]
    wid = stable_id(spec.name)
    extra = [int(stream)] if stream else []  # stream 0 keeps the world's own draws
    np.random.default_rng([int(seed), wid, 1, *extra]).shuffle(labels)
    if sites is None:
        sites = spec.site_names[:_n_sites(spec, len(lengths))]
    else:
        unknown = sorted(set(sites) - set(spec.site_names))
        if unknown or not sites:
            raise ValueError(f"sites={list(sites)!r}: must be some of {list(spec.site_names)}")
        sites = tuple(sites)
    n_sites = len(sites)
    species_names = list(spec.frequencies)
    probs = np.array([spec.frequencies[s] for s in species_names])
    probs = probs / probs.sum()
    seqs = []
    for i, (label, n_fr) in enumerate(zip(labels, lengths)):
        rng = np.random.default_rng([int(seed), wid, 2, i, *extra])
        inds = []
        if label != "empty":
            kinds = [label]
            if label in spec.herd and rng.uniform() < 0.3:
                kinds.append(label)
            if rng.uniform() < spec.second_species_share:
                other = species_names[rng.choice(len(species_names), p=probs)]
                if other != label:
                    kinds.append(other)
            flip = bool(rng.uniform() < 0.5)
            speed = float(rng.choice([0.0, rng.uniform(0.05, 0.15), rng.uniform(0.2, 0.45)],
                                     p=[0.25, 0.45, 0.3])) if n_fr > 1 else 0.0
            anchor = int(rng.integers(n_fr))
            d0, x0 = rng.uniform(0, 1), rng.uniform(0.0, 1.0)
            for j, sp in enumerate(kinds):
                same = sp == label
                ind = Individual(
                    species=sp,
                    depth=float(np.clip(d0 + rng.uniform(-0.2, 0.2), 0, 1)) if j else float(d0),
                    x_anchor=float(x0 + (rng.uniform(-0.35, 0.35) if j else 0.0)),
                    anchor=anchor, speed=speed if same else float(rng.uniform(0, 0.2)),
                    flip=flip if same else bool(rng.uniform() < 0.5),
                    seed=int(rng.integers(2**31)))
                inds.append(_ease(spec, ind))
        site = sites[int(rng.integers(n_sites))]
        if spec.seasons:
            code, d_a, d_b = spec.seasons[int(rng.integers(len(spec.seasons)))]
        else:
            code, d_a, d_b = None, f"{spec.year}-03-01", f"{spec.year + 1}-02-28"
        a, b = dt.date.fromisoformat(d_a), dt.date.fromisoformat(d_b)
        days = (b - a).days
        day = int(rng.integers(days + 1))
        night = bool(rng.uniform() < spec.night_share)
        hour = int(rng.choice([19, 20, 21, 22, 23, 0, 1, 2, 3, 4, 5])) if night else int(rng.integers(6, 19))
        start = dt.datetime.combine(a + dt.timedelta(days=day), dt.time(hour, int(rng.integers(60)),
                                                                         int(rng.integers(60))))
        warm = hour in (6, 7, 17, 18)
        tint = (1.08, 0.98, 0.85) if warm else tuple(float(t) for t in 1 + rng.normal(0, 0.03, 3))
        seqs.append(Sequence(index=i, label=label, individuals=inds, site=site, season=code,
                             start=start, n_frames=n_fr, night=night,
                             light=float(rng.uniform(0.8, 1.15)) * (0.85 if warm else 1.0),
                             tint=tint, roll="R1" if day < days / 2 else "R2"))
    _name_files(spec, seqs, stream_tag(stream))
    return seqs


def _ease(spec: CamtrapSpec, ind: Individual) -> Individual:
    """``ind`` with the difficulties ``spec`` switches off removed, from the same draws: a
    centred animal is the drawn position pulled to the middle (to 0.5 +- 0.1, as the source
    world's objects) and stands still; a large one takes 0.5-0.85 of the frame height (the
    source's range) from its drawn depth."""
    if not spec.off_centre:
        ind = replace(ind, x_anchor=0.5 + 0.2 * (min(max(ind.x_anchor, 0.0), 1.0) - 0.5), speed=0.0)
    if not spec.small_animals:
        ind = replace(ind, height=0.5 + 0.35 * ind.depth)
    return ind


def stream_tag(stream: int) -> str:
    """What the file names, image ids and sequence ids of random stream ``stream`` carry so that
    they cannot collide with the world's own (stream 0): ``x<stream>_`` on the roll (Serengeti)
    or the number (ENA24) from stream 2 on. Streams 0 and 1 carry nothing: the world and the
    in-domain pool keep the names their cached copies and the shipped checkpoints' pool identity
    were made with (the pool never meets the world's frames in one data set)."""
    return f"x{int(stream)}_" if stream >= 2 else ""


def _name_files(spec: CamtrapSpec, seqs: list, tag: str = "") -> None:
    """LILA-style relative paths; Serengeti numbers pictures per season/site/roll in time order.
    ``tag``: :func:`stream_tag`, before the roll (Serengeti) or the frame number (ENA24)."""
    for s in seqs:
        s.tag = tag
    if spec.name == "serengeti":
        groups: dict = {}
        for s in seqs:
            groups.setdefault((s.season, s.site, s.roll), []).append(s)
        for (season, site, roll), group in groups.items():
            group.sort(key=lambda s: (s.start, s.index))
            pict = 1
            for n, s in enumerate(group, 1):
                s.number = n
                r = f"{tag}{roll}"
                s.frame_names = [f"{season}/{site}/{site}_{r}/{season}_{site}_{r}_PICT{pict + f:04d}.JPG"
                                 for f in range(s.n_frames)]
                pict += s.n_frames
    else:
        k = 1
        for s in seqs:
            s.number = s.index + 1
            s.frame_names = [f"{tag}{k + f}.jpg" for f in range(s.n_frames)]
            k += s.n_frames


def _seq_id(spec: CamtrapSpec, s: Sequence) -> str:
    if spec.name == "serengeti":
        return f"SER_{s.season}#{s.site}#{s.tag}{s.roll[1:]}#{s.number}"
    return f"ENA24_{s.tag}{s.number:06d}"


def _uuid(*parts) -> str:
    h = hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _write(path: Path, data: bytes) -> None:
    """Plain write for frames and masks: the JSON, written last and atomically, is what marks a
    world complete (and :func:`camtrap_world` renames a whole finished folder into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _encode(arr: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


MIN_VISIBLE_PIXELS = 4  # below this an animal counts as not visible: no bbox, no mask


def _source_like_site(rng: np.random.Generator, height: int, width: int, ss: int) -> Site:
    """A background as the source world draws them (fresh per sequence), nothing in front."""
    cv = Canvas(height, width, ss)
    colourful_background(cv, rng)
    return Site(img=cv.img, horizon=0.3 * cv.H, ground_bottom=float(cv.H - strip_height(height) * ss),
                occ_mask=np.zeros((cv.H, cv.W), bool), occ_img=np.zeros_like(cv.img))


def write_camtrap_world(name: str | CamtrapSpec, root, profile: Profile | str, seed: int = 0,
                        n_images: int | None = None, stream: int = 0,
                        sites: tuple[str, ...] | None = None) -> Path:
    """Render the ``name`` world (``serengeti``, ``ena24`` or a :class:`CamtrapSpec`, such as a
    :func:`family_spec`) into ``root``; return the JSON path. ``n_images``, ``stream``, ``sites``:
    see :func:`plan_sequences`.

    Frames are ``profile.camtrap_size`` (width, height) JPEGs at quality 90 under LILA-style
    relative paths, masks are 0/255 PNGs under ``masks/``, and ``root/<name>.json`` is written
    last (atomically), so its presence means the world is complete.
    """
    spec = _spec(name)
    name = spec.name
    p = get_profile(profile)
    # validates the profile before any drawing
    seqs = plan_sequences(spec, p, seed, n_images=n_images, stream=stream, sites=sites)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    W, H = p.camtrap_size
    ss = 2 if max(W, H) <= 512 else 1
    categories = ["empty"] + list(spec.frequencies)
    cat_id = {c: i for i, c in enumerate(categories)}
    wid = stable_id(name)
    site_cache: dict = {}
    images, annotations = [], []
    total = sum(s.n_frames for s in seqs)
    bar = progress_bar(total=total, desc=f"{name} frames", leave=False, show=total >= 500)
    for s in seqs:
        season_idx = [c for c, _, _ in spec.seasons].index(s.season) if s.season else 0
        key = (s.site, season_idx)
        if not spec.site_backgrounds:
            site = _source_like_site(np.random.default_rng([int(seed), wid, 6, s.index, *(
                [int(stream)] if stream else [])]), H, W, ss)
        elif key not in site_cache:
            # seeded by the site alone: layout and viewpoint stay put, only the grass colour
            # follows the season
            site_rng = np.random.default_rng([int(seed), wid, 3, stable_id(s.site)])
            site_cache[key] = make_site(spec.habitat, site_rng, H, W, ss, season=season_idx)
        if spec.site_backgrounds:
            site = site_cache[key]
        seq_id = _seq_id(spec, s)
        for f in range(s.n_frames):
            img, ids = render_frame(site, s.individuals, f, height=H, width=W, ss=ss,
                                    night=s.night, light=s.light, tint=s.tint,
                                    # streams from 2 on draw their own sensor noise (0 and 1
                                    # keep theirs: cached worlds and the pool depend on it)
                                    seed_seq=[int(seed), wid, 4, s.index, f,
                                              *([int(stream)] if stream >= 2 else [])])
            when = s.start + dt.timedelta(seconds=f)
            stamp(img, when.strftime("%Y-%m-%d %H:%M:%S"))
            fname = s.frame_names[f]
            image_id = fname.rsplit(".", 1)[0]
            _write(root / fname, _encode(img, "JPEG", quality=90))
            rec = {"id": image_id, "file_name": fname, "width": W, "height": H,
                   "location": s.site, "datetime": when.strftime("%Y-%m-%d %H:%M:%S"),
                   "seq_id": seq_id, "seq_num_frames": s.n_frames, "frame_num": f}
            if spec.seasons:
                rec["season"] = s.season
            images.append(rec)
            anns = []
            if s.label == "empty":
                anns.append({"category_id": cat_id["empty"]})
            else:
                for sp in dict.fromkeys(ind.species for ind in s.individuals):
                    visible = []
                    for k, ind in enumerate(s.individuals):
                        if ind.species != sp:
                            continue
                        m = ids == k + 1
                        if m.sum() >= MIN_VISIBLE_PIXELS:
                            visible.append((k, m))
                    if not visible:  # the sequence's label stays on a frame the animal left
                        anns.append({"category_id": cat_id[sp]})
                    for k, m in visible:
                        ys, xs = np.nonzero(m)
                        x0, y0 = int(xs.min()), int(ys.min())
                        bw, bh = int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0
                        mfile = f"masks/{image_id}_{k}.png"
                        _write(root / mfile, _encode((m * 255).astype(np.uint8), "PNG"))
                        anns.append({"category_id": cat_id[sp], "bbox": [x0, y0, bw, bh],
                                     "mask_file": mfile})
            for j, a in enumerate(anns):
                out = {"id": _uuid(name, seed, image_id, j), "image_id": image_id, **a}
                if spec.sequence_level:
                    out["sequence_level_annotation"] = True
                annotations.append(out)
            bar.update(1)
    bar.close()
    doc = {
        "info": {"version": f"synthetic-{GENERATOR_VERSION}", "description": spec.description,
                 "date_created": f"{spec.year + 9}-01-01",
                 "contributor": "camtrap_ssl procedural generator (seed %d, profile %s)" % (seed, p.name)},
        "images": images,
        "categories": [{"id": i, "name": c} for i, c in enumerate(categories)],
        "annotations": annotations,
    }
    path = root / f"{name}.json"
    atomic_write_bytes(path, json.dumps(doc, indent=1).encode())
    return path


def camtrap_world(name: str | CamtrapSpec, profile: Profile | str, seed: int = 0, cache_dir=None,
                  n_images: int | None = None, stream: int = 0,
                  sites: tuple[str, ...] | None = None) -> Path:
    """The ``name`` world in the cache (written once, then reused); returns its JSON path.
    ``n_images``, ``stream``, ``sites``: see :func:`plan_sequences`.

    Written into a temporary folder that is renamed into place, so a half-written world is never
    mistaken for a finished one.
    """
    spec = _spec(name)
    name = spec.name
    p = get_profile(profile)
    fields = {"n": _n_images(spec, p) if n_images is None else int(n_images),
              "size": list(p.camtrap_size), "difficulty": spec.difficulty()}
    if stream or sites is not None:
        fields.update(stream=int(stream), sites=None if sites is None else list(sites))
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    final = cache_dir / f"{spec.name}-{p.name}-{cache_key(spec.name, fields, seed)}"
    path = final / f"{name}.json"
    if path.exists():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".tmp-{spec.name}-"))
    try:
        write_camtrap_world(spec, tmp, p, seed, n_images=n_images, stream=stream, sites=sites)
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished first: keep theirs
            if not path.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path
