"""Labelled array worlds: the *source* world (ImageNet stand-in) and the *similar* world (CIFAR).

Both come from the same renderer: mostly centred, large objects on varied colourful backgrounds,
balanced classes. That is what makes them "ImageNet-like" and is the contrast the camera-trap
worlds (:mod:`camtrap_ssl.data.synthetic.camtrap`) are built against (SPEC sections 1 and 6).

Every image is drawn from its own random generator seeded by (seed, world, split, class, index),
so a world is a pure function of its arguments and any image can be re-drawn on its own.
Worlds are cached as ``.npz`` under :func:`default_cache_dir`, keyed by everything that changes the
pixels, and written atomically.
"""
from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from camtrap_ssl.core import paths
from camtrap_ssl.core.fileio import atomic_write_bytes
from camtrap_ssl.core.profiles import Profile, get_profile
from camtrap_ssl.core.progress import progress_bar

from .render import Canvas, jitter_color, random_color, smooth_noise
from .species import extent, paint

# Bump whenever a change to the drawing code changes pixels, so stale caches are not reused.
GENERATOR_VERSION = 1

SOURCE_CLASSES = [
    # animals (a subset of the camera-trap species, as ImageNet holds some of them)
    "zebra", "ostrich", "lionMale", "elephant", "giraffe", "warthog", "impala",
    "White_Tailed_Deer", "Red_Fox", "American_Black_Bear",
    # things
    "car", "house", "tree", "ball", "flower", "boat", "chair", "cup", "bicycle", "mountain",
]
# ImageNet-style names shown to readers; the painter behind each is the key above
SOURCE_NAMES = {"lionMale": "lion", "White_Tailed_Deer": "deer", "Red_Fox": "fox",
                "American_Black_Bear": "bear"}

# CIFAR-10 stand-in: 10 classes, 8 shared with the source world and 2 it has never seen,
# as CIFAR-10 overlaps ImageNet only partly.
SIMILAR_CLASSES = ["airplane", "car", "ostrich", "lionMale", "White_Tailed_Deer", "Red_Fox",
                   "zebra", "boat", "truck", "American_Black_Bear"]
SIMILAR_NAMES = {"ostrich": "bird", "lionMale": "cat", "White_Tailed_Deer": "deer",
                 "Red_Fox": "dog", "zebra": "horse", "boat": "ship",
                 "American_Black_Bear": "bear"}


def default_cache_dir() -> Path:
    """Where generated worlds live (:func:`camtrap_ssl.core.paths.cache_dir`)."""
    return paths.cache_dir()


def stable_id(text: str) -> int:
    """A platform-independent integer for a string (Python's hash() is salted per process)."""
    return zlib.crc32(text.encode())


def cache_key(world: str, fields: dict, seed: int) -> str:
    blob = json.dumps({"world": world, "fields": fields, "seed": int(seed),
                       "version": GENERATOR_VERSION}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


@dataclass
class World:
    """A labelled image world held in memory.

    Images are uint8 NHWC (what is cheap to store and to show); :meth:`tensors` gives what the
    pipelines consume (float32 NCHW in [0, 1], ARCHITECTURE.md). Masks mark the drawn object.
    """

    images_train: np.ndarray
    labels_train: np.ndarray
    images_val: np.ndarray
    labels_val: np.ndarray
    classes: list
    masks_train: np.ndarray
    masks_val: np.ndarray
    name: str = "world"

    def split(self, split: str):
        if split not in ("train", "val"):
            raise ValueError(f"split={split!r} is not a split; allowed: ['train', 'val']")
        return (getattr(self, f"images_{split}"), getattr(self, f"labels_{split}"),
                getattr(self, f"masks_{split}"))

    def tensors(self, split: str = "train"):
        """(float32 tensor N x 3 x H x W in [0, 1], int64 label tensor) for ``split``."""
        import torch

        images, labels, _ = self.split(split)
        x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float().div_(255)
        return x, torch.from_numpy(labels.astype(np.int64))

    def save(self, path: Path) -> None:
        """Write atomically as ``.npz`` (temp file in the same folder, then ``os.replace``)."""
        import io


        buf = io.BytesIO()
        np.savez(buf, images_train=self.images_train, labels_train=self.labels_train,
                 images_val=self.images_val, labels_val=self.labels_val,
                 masks_train=self.masks_train, masks_val=self.masks_val,
                 classes=np.array(self.classes, dtype=str), name=np.array(self.name))
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> "World":
        with np.load(path, allow_pickle=False) as z:
            return cls(images_train=z["images_train"], labels_train=z["labels_train"],
                       images_val=z["images_val"], labels_val=z["labels_val"],
                       masks_train=z["masks_train"], masks_val=z["masks_val"],
                       classes=[str(c) for c in z["classes"]], name=str(z["name"]))


# ------------------------------------------------------------------------------------------------
# drawing
# ------------------------------------------------------------------------------------------------
def colourful_background(cv: Canvas, rng: np.random.Generator) -> None:
    """Varied backgrounds so that the background alone does not give the class away."""
    H, W = cv.H, cv.W
    style = rng.integers(3)
    c1, c2 = random_color(rng, (0.1, 0.8), (0.3, 1)), random_color(rng, (0.1, 0.8), (0.3, 1))
    if style == 0:  # two-colour gradient at a random angle
        a = rng.uniform(0, 2 * np.pi)
        ys = np.linspace(-1, 1, H, dtype=np.float32)[:, None]
        xs = np.linspace(-1, 1, W, dtype=np.float32)[None, :]
        t = np.clip(0.5 + 0.5 * (np.cos(a) * xs + np.sin(a) * ys), 0, 1)[..., None]
        cv.img[:] = c1 * (1 - t) + c2 * t
    elif style == 1:  # textured field
        t = (0.5 + 0.25 * smooth_noise(rng, H, W, 5, 5.0))[..., None]
        cv.img[:] = np.clip(c1 * (1 - t) + c2 * t, 0, 1)
    else:  # horizon: sky above, ground below
        h = int(H * rng.uniform(0.35, 0.7))
        sky = jitter_color(rng, (0.55, 0.72, 0.92), 0.15)
        ground = jitter_color(rng, rng.choice([(0.45, 0.6, 0.3), (0.75, 0.68, 0.45),
                                               (0.4, 0.4, 0.42)]), 0.15)
        cv.img[:h] = sky
        cv.img[h:] = ground
        cv.img[h:] *= (1 + 0.15 * smooth_noise(rng, H - h, W, 4, 8.0))[..., None]
    for _ in range(int(rng.integers(2, 7))):  # clutter
        reg = cv.ellipse(rng.uniform(0, W), rng.uniform(0, H), rng.uniform(0.03, 0.2) * W,
                         rng.uniform(0.03, 0.2) * H, rng.uniform(0, np.pi))
        cv.fill(reg, random_color(rng, (0.0, 0.6), (0.2, 0.9)))
    np.clip(cv.img, 0, 1, out=cv.img)


def object_image(name: str, rng: np.random.Generator, size: int, ss: int = 2):
    """One centred, large object on a colourful background: (uint8 HxWx3, bool HxW mask)."""
    cv = Canvas(size, size, ss)
    colourful_background(cv, rng)
    x0, x1, y0, y1 = extent(name)
    aspect = (x1 - x0) / (y1 - y0)
    frac = rng.uniform(0.5, 0.85)
    h = frac * cv.H
    if h * aspect > 0.92 * cv.W:
        h = 0.92 * cv.W / aspect
    w = h * aspect
    cx = cv.W / 2 + rng.uniform(-0.1, 0.1) * cv.W
    cy = cv.H / 2 + rng.uniform(-0.1, 0.1) * cv.H
    cx = float(np.clip(cx, w / 2, cv.W - w / 2)) if w < cv.W else cv.W / 2
    paint(cv, name, rng, cx=cx, ground=cy + h / 2, height=h, flip=bool(rng.uniform() < 0.5))
    img, ids = cv.result()
    noise = rng.normal(0, 3.0, img.shape)
    img = np.clip(img + noise, 0, 255).astype(np.uint8)
    return img, ids > 0


def _render_split(world: str, painters: list, per_class: int, size: int, seed: int, split: str,
                  ss: int):
    n = per_class * len(painters)
    images = np.zeros((n, size, size, 3), np.uint8)
    masks = np.zeros((n, size, size), bool)
    labels = np.zeros(n, np.int64)
    wid, sid = stable_id(world), stable_id(split)
    k = 0
    # class-interleaved order: every prefix of the split is (nearly) balanced
    for i in progress_bar(range(per_class), desc=f"{world} {split}", leave=False, show=n >= 2000):
        for c, name in enumerate(painters):
            rng = np.random.default_rng([int(seed), wid, sid, c, i])
            images[k], masks[k] = object_image(name, rng, size, ss)
            labels[k] = c
            k += 1
    return images, labels, masks


def _array_world(world: str, painters: list, names: list, size: int, n_train: int, n_val: int,
                 seed: int, cache_dir, profile_name: str, ss: int) -> World:
    if n_train < 1 or n_val < 1:
        raise ValueError(f"{world} world needs at least one image per class and split; profile "
                         f"{profile_name!r} asks for train={n_train}, val={n_val} "
                         "(the 'paper' profile uses the real datasets instead)")
    fields = {"size": size, "n_train": n_train, "n_val": n_val, "classes": painters, "ss": ss}
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    path = cache_dir / f"{world}-{profile_name}-{cache_key(world, fields, seed)}.npz"
    if path.exists():
        return World.load(path)
    tr = _render_split(world, painters, n_train, size, seed, "train", ss)
    va = _render_split(world, painters, n_val, size, seed, "val", ss)
    w = World(images_train=tr[0], labels_train=tr[1], masks_train=tr[2],
              images_val=va[0], labels_val=va[1], masks_val=va[2], classes=list(names), name=world)
    w.save(path)
    return w


def source_world(profile: Profile | str, seed: int = 0, cache_dir=None) -> World:
    """The labelled source world (ImageNet stand-in): 20 balanced classes, 10 animals, 10 things.

    Images are ``profile.input_size`` square; ``profile.source_per_class`` train and
    ``profile.source_val_per_class`` val images per class.
    """
    p = get_profile(profile)
    return _array_world("source", SOURCE_CLASSES, [SOURCE_NAMES.get(c, c) for c in SOURCE_CLASSES],
                        p.input_size, p.source_per_class, p.source_val_per_class, seed, cache_dir,
                        p.name, ss=2)


def similar_world(profile: Profile | str, seed: int = 0, cache_dir=None) -> World:
    """The CIFAR-10 stand-in: 32 x 32 images, 10 balanced classes overlapping the source world.

    ``profile.similar_per_class`` train and ``profile.similar_test_per_class`` images in the
    ``val`` split (CIFAR's test set).
    """
    p = get_profile(profile)
    return _array_world("similar", SIMILAR_CLASSES, [SIMILAR_NAMES.get(c, c) for c in SIMILAR_CLASSES],
                        32, p.similar_per_class, p.similar_test_per_class, seed, cache_dir,
                        p.name, ss=3)
