"""COCO Camera Traps: read and validate a LILA metadata file, build the label table, split
without leakage, and serve the images as a torch ``Dataset``.

LILA BC publishes every camera-trap set of the study (Snapshot Serengeti, NACTI, ENA24) as one
COCO Camera Traps JSON: ``images`` (id, file_name, width, height, location, datetime, seq_id,
seq_num_frames, frame_num, Serengeti adds ``season``), ``categories`` (id, name) and
``annotations`` (id, image_id, category_id, optional ``bbox`` and ``sequence_level_annotation``;
the synthetic world adds ``mask_file``). Unknown keys are kept and ignored, so one reader serves
the real sets and the embedded world alike.

Design decisions, and why:

* **Validation happens at load time**, before any image is touched: a broken reference in a
  7-million-image file should fail in seconds with the file and the offending id, not hours into
  training.
* **Label table.** One image may carry several annotations (several boxes of one species, or
  several species). ``multi_label`` chooses the policy:
  ``"single"`` (default) keeps an image only if all its annotations name one category, which is
  Norouzzadeh et al.'s choice for species identification and gives one sample per image;
  ``"per_category"`` keeps every image and yields one sample per distinct (image, category).
  Repeated boxes of the same category always collapse into one sample. Images without any
  annotation have no label and are left out of the table (counted in ``index.n_unlabelled``).
* **Classes** are the categories with at least one sample, in category-id order; labels are
  their positions ``0..K-1``. Filtering recomputes both, so labels stay contiguous.
* **Splits** (:mod:`camtrap_ssl.data.splits`) and the per-dataset **selections** of the study
  (:mod:`camtrap_ssl.data.selection`) live beside this reader and work on its index.
* **Bad images.** Real releases contain a small share of truncated or corrupt JPEGs.
  ``CCTDataset`` pre-scans cheaply at construction (file exists, header parses, a JPEG ends in its
  end-of-image marker) and leaves out what fails, listing it in ``dataset.bad_files``. A file that
  passes the scan but fails to decode later (or disappears) is recorded and replaced by the next
  good sample, so an epoch never dies. The end-marker test is independent of
  ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``: a truncated file is bad even where someone has set
  that flag to accept them.
* **Resizing** squashes the whole frame to ``size x size`` without keeping the aspect ratio, as
  Norouzzadeh et al. resized Serengeti frames to 256 x 256: the animal is often at the frame's
  edge, and a centre crop would cut it off. JPEG decoding uses libjpeg's DCT scaling
  (``Image.draft``) to the smallest scale still at least ``size`` on each side, which makes
  multi-megapixel frames several times cheaper to decode and changes pixels only marginally.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from PIL import Image

from camtrap_ssl.core.progress import progress_bar
from camtrap_ssl.data.images import to_rgb
from camtrap_ssl.data.strip import strip_rows

__all__ = [
    "CCTFormatError", "CCTIndex", "CCTDataset", "load_cct", "sample_list", "decode_image",
    "attach_provenance", "check_image_file", "EMPTY_NAMES", "PathIndex", "MULTI_LABEL_POLICIES", "BadImageError", "bad_image_reason",
]

MULTI_LABEL_POLICIES = ("single", "per_category")
EMPTY_NAMES = frozenset({"empty", "blank", "nothing"})
_JPEG_TAIL = 4096  # bytes at the end of a JPEG searched for the end-of-image marker


class CCTFormatError(ValueError):
    """A COCO Camera Traps file breaks the format; the message names the file and the id/key."""


def _is_id(value) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def _check_relative(path_str: str, json_path: Path, image_id) -> None:
    """Refuse file names that would escape the image root (absolute or with '..')."""
    p = path_str.replace("\\", "/")
    if p.startswith("/") or re.match(r"^[A-Za-z]:", p) or ".." in p.split("/"):
        raise CCTFormatError(
            f"{json_path}: image id={image_id!r} has file_name={path_str!r}; COCO Camera Traps "
            "file names must be relative paths inside the image root (no '..', not absolute)")


class CCTIndex:
    """A validated COCO Camera Traps file plus its label table.

    Attributes: ``json_path``, ``image_root``, ``info``, ``images`` (id -> image dict),
    ``categories`` (category id -> name, every category of the file), ``annotations_by_image``
    (id -> list of annotation dicts), ``samples`` (list of ``(image_id, category_id)``, the label
    table), ``class_names`` / ``category_ids`` (the classes with samples, in category-id order) and
    ``multi_label`` (the policy used). Build it with :func:`load_cct`; the filters return new
    indexes that share the (read-only) image and annotation dicts.
    """

    def __init__(self, json_path: Path, image_root: Path, info: dict, images: dict,
                 categories: dict, annotations_by_image: dict, samples: list, multi_label: str,
                 n_unlabelled: int = 0, n_multi_dropped: int = 0, sha256: str | None = None):
        self.json_path = Path(json_path)
        self.image_root = Path(image_root)
        self.info = info
        self.images = images
        self.categories = categories
        self.annotations_by_image = annotations_by_image
        self.samples = list(samples)
        self.multi_label = multi_label
        self.n_unlabelled = n_unlabelled
        self.n_multi_dropped = n_multi_dropped
        self._sha256 = sha256
        used = {c for _, c in self.samples}
        self.category_ids = [c for c in sorted(categories, key=_sort_key) if c in used]
        self.class_names = [categories[c] for c in self.category_ids]
        self.label_of = {c: i for i, c in enumerate(self.category_ids)}

    # -- derived views -------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_ids(self) -> list:
        """Labelled image ids (those with at least one sample), in sample order, unique."""
        return list(dict.fromkeys(i for i, _ in self.samples))

    @property
    def json_sha256(self) -> str:
        """sha256 of the source JSON (computed once, on demand: it identifies the data)."""
        if self._sha256 is None:
            h = hashlib.sha256()
            with open(self.json_path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            self._sha256 = h.hexdigest()
        return self._sha256

    def class_counts(self) -> dict[str, int]:
        counts = {name: 0 for name in self.class_names}
        for _, c in self.samples:
            counts[self.categories[c]] += 1
        return counts

    def labels(self) -> np.ndarray:
        return np.array([self.label_of[c] for _, c in self.samples], dtype=np.int64)

    def path_of(self, image_id) -> Path:
        return self.image_root / self.images[image_id]["file_name"].replace("\\", "/")

    def with_samples(self, samples: list) -> "CCTIndex":
        """A new index over the same file with another label table (classes recomputed)."""
        return CCTIndex(self.json_path, self.image_root, self.info, self.images, self.categories,
                        self.annotations_by_image, samples, self.multi_label, self.n_unlabelled,
                        self.n_multi_dropped, self._sha256)

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return (f"CCTIndex({self.json_path.name}: {len(self.images)} images, "
                f"{len(self.samples)} samples, {self.num_classes} classes, "
                f"multi_label={self.multi_label!r})")


class PathIndex(CCTIndex):
    """A :class:`CCTIndex` whose images live at explicit paths (``paths``: id -> Path) rather
    than under one image root: a Camtrap DP package (local files and fetched URLs side by side)
    or a folder of class folders. ``json_path`` names the source and ``sha256`` identifies it."""

    def __init__(self, *args, paths: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.paths = paths

    def path_of(self, image_id) -> Path:
        return Path(self.paths[image_id])

    def with_samples(self, samples: list) -> "PathIndex":
        return PathIndex(self.json_path, self.image_root, self.info, self.images, self.categories,
                         self.annotations_by_image, samples, self.multi_label, self.n_unlabelled,
                         self.n_multi_dropped, self._sha256, paths=self.paths)


def _sort_key(x):
    return (0, x, "") if isinstance(x, int) else (1, 0, str(x))


BBOX_TOLERANCE = 1.0  # pixels a box may overhang the frame (rounding in published boxes)


def _bbox_problem(bbox, image: dict) -> str | None:
    """Why ``bbox`` is not a box inside ``image`` (``None`` if it is).

    Four finite numbers, ``x, y >= 0``, ``width, height > 0``, and, where the image records its
    ``width``/``height``, ending inside it. A box may overhang by ``BBOX_TOLERANCE`` pixels,
    since published boxes are rounded; anything beyond that is a wrong box (or a box in another
    coordinate system, such as normalized [0, 1]), which would silently mislead every analysis
    that uses boxes.
    """
    if not isinstance(bbox, list) or len(bbox) != 4:
        return "not a list of four numbers"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
        return "not all numbers"
    if not all(np.isfinite(v) for v in bbox):
        return "not finite (NaN or infinity)"
    x, y, w, h = bbox
    if x < -BBOX_TOLERANCE or y < -BBOX_TOLERANCE:
        return "negative position"
    if w <= 0 or h <= 0:
        return "width and height must be > 0"
    for extent, start, size in (("width", x, w), ("height", y, h)):
        limit = image.get(extent)
        if isinstance(limit, (int, float)) and not isinstance(limit, bool) and \
                start + size > limit + BBOX_TOLERANCE:
            return f"ends at {start + size:g}, outside the image's {extent} {limit:g}"
    return None


def load_cct(json_path, image_root=None, multi_label: str = "single") -> CCTIndex:
    """Read and validate a COCO Camera Traps JSON and build its label table.

    ``image_root`` defaults to the JSON's folder (LILA's layout once downloaded, and the synthetic
    world's). ``multi_label`` is ``"single"`` or ``"per_category"`` (see the module docstring).
    Raises :class:`CCTFormatError` naming the file and the offending id or key.
    """
    if multi_label not in MULTI_LABEL_POLICIES:
        raise ValueError(f"multi_label={multi_label!r}; allowed: {list(MULTI_LABEL_POLICIES)}")
    json_path = Path(json_path)
    if not json_path.is_file():
        raise FileNotFoundError(f"COCO Camera Traps file {json_path} does not exist")
    image_root = Path(image_root) if image_root is not None else json_path.parent
    try:
        with open(json_path, "rb") as f:
            data = json.load(f)
    except UnicodeDecodeError as e:
        raise CCTFormatError(f"{json_path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at "
                             f"offset {e.start}); COCO Camera Traps files are UTF-8 JSON") from None
    except json.JSONDecodeError as e:
        raise CCTFormatError(f"{json_path}: not valid JSON ({e}); a truncated download? "
                             "fetch it again") from None
    if not isinstance(data, dict):
        raise CCTFormatError(f"{json_path}: top level must be an object with keys "
                             "'images', 'categories', 'annotations'")
    for key in ("images", "categories", "annotations"):
        if key not in data:
            raise CCTFormatError(f"{json_path}: missing required key {key!r}")
        if not isinstance(data[key], list):
            raise CCTFormatError(f"{json_path}: {key!r} must be a list")

    images: dict = {}
    for k, im in enumerate(data["images"]):
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise CCTFormatError(f"{json_path}: images[{k}] lacks required key 'id' or "
                                 "'file_name'")
        iid = im["id"]
        if not _is_id(iid):
            raise CCTFormatError(f"{json_path}: images[{k}] has id={iid!r}; ids are str or int")
        if iid in images:
            raise CCTFormatError(f"{json_path}: duplicate image id={iid!r}")
        if not isinstance(im["file_name"], str) or not im["file_name"]:
            raise CCTFormatError(f"{json_path}: image id={iid!r} has file_name="
                                 f"{im['file_name']!r}; it must be a non-empty string (a path)")
        _check_relative(im["file_name"], json_path, iid)
        images[iid] = im

    categories: dict = {}
    for k, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise CCTFormatError(f"{json_path}: categories[{k}] lacks required key 'id' or "
                                 "'name'")
        cid = cat["id"]
        if not _is_id(cid):
            raise CCTFormatError(f"{json_path}: categories[{k}] has id={cid!r}")
        if cid in categories:
            raise CCTFormatError(f"{json_path}: duplicate category id={cid!r}")
        if not isinstance(cat["name"], str) or not cat["name"].strip():
            raise CCTFormatError(f"{json_path}: category id={cid!r} has name={cat['name']!r}; "
                                 "a category name must be a non-empty string")
        categories[cid] = cat["name"]

    if not data["annotations"]:
        raise CCTFormatError(f"{json_path}: 'annotations' is empty, so no image has a label; "
                             "a COCO Camera Traps file for training needs at least one "
                             "annotation (image_id, category_id)")

    by_image: dict = {}
    seen_ann: set = set()
    for k, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise CCTFormatError(f"{json_path}: annotations[{k}] is not an object")
        for key in ("id", "image_id", "category_id"):
            if key not in ann:
                raise CCTFormatError(f"{json_path}: annotation annotations[{k}] "
                                     f"(id={ann.get('id')!r}) lacks required key {key!r}")
        aid = ann["id"]
        for key in ("id", "image_id", "category_id"):
            if not _is_id(ann[key]):
                raise CCTFormatError(f"{json_path}: annotations[{k}] has {key}={ann[key]!r}; "
                                     "ids are str or int")
        if aid in seen_ann:
            raise CCTFormatError(f"{json_path}: duplicate annotation id={aid!r}")
        seen_ann.add(aid)
        if ann["image_id"] not in images:
            raise CCTFormatError(f"{json_path}: annotation id={aid!r} refers to "
                                 f"image_id={ann['image_id']!r}, which is not in 'images'")
        if ann["category_id"] not in categories:
            raise CCTFormatError(f"{json_path}: annotation id={aid!r} refers to "
                                 f"category_id={ann['category_id']!r}, which is not in "
                                 "'categories'")
        bbox = ann.get("bbox")
        if bbox is not None:
            problem = _bbox_problem(bbox, images[ann["image_id"]])
            if problem:
                raise CCTFormatError(f"{json_path}: annotation id={aid!r} has bbox={bbox!r}: "
                                     f"{problem}; expected [x, y, width, height] in pixels, "
                                     "inside the image")
        if "mask_file" in ann:
            _check_relative(str(ann["mask_file"]), json_path, ann["image_id"])
        by_image.setdefault(ann["image_id"], []).append(ann)

    samples, n_unlabelled, n_multi = [], 0, 0
    for iid in images:
        anns = by_image.get(iid)
        if not anns:
            n_unlabelled += 1
            continue
        cats = list(dict.fromkeys(a["category_id"] for a in anns))
        if len(cats) > 1 and multi_label == "single":
            n_multi += 1
            continue
        samples.extend((iid, c) for c in cats)
    if not samples:
        raise CCTFormatError(f"{json_path}: no image has a usable label ({n_unlabelled} without "
                             f"annotations, {n_multi} with several species, which "
                             f"multi_label={multi_label!r} leaves out)")
    return CCTIndex(json_path, image_root, data.get("info", {}), images, categories, by_image,
                    samples, multi_label, n_unlabelled, n_multi)


# -- images ------------------------------------------------------------------------------------
def check_image_file(path: Path) -> str | None:
    """Cheap validity test: ``None`` if plausible, else the reason. No pixel decoding.

    A JPEG must contain its end-of-image marker (FF D9) in its last 4 KiB: truncated files lose
    it, and entropy-coded data can never contain it, so the test does not depend on
    ``ImageFile.LOAD_TRUNCATED_IMAGES``. Cameras that pad after the marker still pass.
    """
    try:
        size = os.path.getsize(path)
    except OSError:
        return "missing"
    if size == 0:
        return "empty file"
    try:
        with Image.open(path) as im:
            fmt = im.format
    except Exception as e:  # PIL raises several types for garbage
        return f"unreadable header ({type(e).__name__})"
    if fmt == "JPEG":
        with open(path, "rb") as f:
            f.seek(max(0, size - _JPEG_TAIL))
            if b"\xff\xd9" not in f.read():
                return "truncated (no JPEG end marker)"
    return None


class BadImageError(OSError):
    """An image file that fails the quick check; ``reason`` says why without the path."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def bad_image_reason(exc: Exception) -> str:
    """Why decoding failed, without repeating the path (callers list ``path: reason``)."""
    if isinstance(exc, BadImageError):
        return exc.reason
    return f"decode failed ({type(exc).__name__}: {exc})"


def decode_image(path: Path, size: int, strip_fraction: float = 0.0) -> np.ndarray:
    """Decode to RGB, cut the bottom ``strip_fraction`` of the rows (the information strip, see
    :mod:`camtrap_ssl.data.strip`) and squash-resize to ``size x size``; uint8 HWC. Raises on bad
    files. The strip goes *before* resizing, as Norouzzadeh et al. did, so no strip row is
    blended into the frame."""
    reason = check_image_file(path)
    if reason is not None:
        raise BadImageError(path, reason)
    with Image.open(path) as im:
        if im.format == "JPEG":
            im.draft("RGB", (size, size))
        im = to_rgb(im)  # palette, alpha, CMYK, 16-bit grey: see images.to_rgb
        rows = strip_rows(im.height, strip_fraction)
        if rows:
            im = im.crop((0, 0, im.width, im.height - rows))
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        return np.array(im, dtype=np.uint8)  # a writable copy for torch.from_numpy


def _decode_mask(index: CCTIndex, iid, category_id, size: int, strip_fraction: float = 0.0) -> np.ndarray:
    anns = [a for a in index.annotations_by_image.get(iid, []) if a["category_id"] == category_id]
    mask = np.zeros((size, size), dtype=bool)
    for a in anns:
        if "mask_file" not in a:
            continue
        with Image.open(index.image_root / a["mask_file"]) as m:
            m = m.convert("L")
            m = m.crop((0, 0, m.width, m.height - strip_rows(m.height, strip_fraction)))
            m = m.resize((size, size), Image.Resampling.NEAREST)
            mask |= np.asarray(m) > 0
    return mask


def sample_list(index: CCTIndex, split_ids: Iterable | None) -> list:
    """The ``(image_id, label)`` pairs of the given image ids (all samples when ``None``)."""
    if split_ids is None:
        return [(i, index.label_of[c]) for i, c in index.samples]
    wanted = set(split_ids)
    unknown = [i for i in wanted if i not in index.images]
    if unknown:
        raise ValueError(f"split_ids: {len(unknown)} ids are not images of "
                         f"{index.json_path.name}, e.g. {unknown[0]!r}")
    return [(i, index.label_of[c]) for i, c in index.samples if i in wanted]


class CCTDataset(torch.utils.data.Dataset):
    """``(image float32 [0,1] 3 x size x size, label int)`` per sample of the given images.

    ``scan``: ``"quick"`` (default) pre-checks every file cheaply (see :func:`check_image_file`)
    and leaves out bad ones; ``"full"`` decodes each once (slow, exact); ``"none"`` trusts the
    files. Either way a file that fails later is recorded in ``bad_files`` and the next good
    sample is returned instead. With DataLoader workers, failures found inside a worker are
    recorded in that worker's copy; the pre-scan list is complete. ``return_mask=True`` adds a
    ``1 x size x size`` float mask, the union of the ``mask_file`` PNGs of the sample's
    annotations. An annotation without ``mask_file`` contributes nothing: in the synthetic worlds
    that marks an empty frame or a frame the sequence's animal has left, whose true mask is zero.
    So that a file without any masks (every real LILA set) is not silently read as "animal
    nowhere", ``return_mask=True`` refuses a selection in which no annotation has a mask.
    ``transform`` acts on the image tensor only (geometric transforms would misalign the mask).
    ``strip_fraction``: the bottom share of each frame cut off before resizing (mask alike).
    """

    def __init__(self, index: CCTIndex, split_ids: Iterable | None, size: int,
                 transform: Callable | None = None, return_mask: bool = False,
                 scan: str = "quick", progress: bool = False, strip_fraction: float = 0.0):
        if not isinstance(size, int) or size <= 0:
            raise ValueError(f"size={size!r} must be a positive int")
        if scan not in ("quick", "full", "none"):
            raise ValueError(f"scan={scan!r}; allowed: ['quick', 'full', 'none']")
        self.index, self.size, self.transform = index, size, transform
        self.strip_fraction = strip_fraction
        self.return_mask = return_mask
        self.class_names = list(index.class_names)
        candidates = sample_list(index, split_ids)
        if return_mask and not any("mask_file" in a for iid in dict.fromkeys(
                i for i, _ in candidates) for a in index.annotations_by_image[iid]):
            raise ValueError(f"return_mask=True but no annotation of the selected images in "
                             f"{index.json_path.name} has a 'mask_file' (real LILA sets carry "
                             "no masks; the synthetic worlds do)")
        self.bad_files: list[tuple[str, str]] = []
        verdict: dict = {}
        if scan != "none":
            for iid in progress_bar(dict.fromkeys(i for i, _ in candidates), desc="scanning images",
                                    show=progress):
                path = index.path_of(iid)
                if scan == "quick":
                    reason = check_image_file(path)
                else:
                    try:
                        decode_image(path, size, strip_fraction)
                        reason = None
                    except Exception as e:
                        reason = bad_image_reason(e)
                verdict[iid] = reason
                if reason is not None:
                    self.bad_files.append((str(path), reason))
        self.samples = [(i, l) for i, l in candidates if verdict.get(i) is None]
        self._failed: set = set()

    @property
    def labels(self) -> np.ndarray:
        return np.array([l for _, l in self.samples], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, k: int):
        iid, label = self.samples[k]
        img = torch.from_numpy(decode_image(self.index.path_of(iid), self.size, self.strip_fraction))
        img = img.permute(2, 0, 1).float().div_(255.0)
        if self.transform is not None:
            img = self.transform(img)
        if not self.return_mask:
            return img, label
        cid = self.index.category_ids[label]
        mask = _decode_mask(self.index, iid, cid, self.size, self.strip_fraction)
        return img, label, torch.from_numpy(mask).float().unsqueeze(0)

    def __getitem__(self, k: int):
        n = len(self.samples)
        if not -n <= k < n:
            raise IndexError(f"index {k} out of range for {n} samples")
        k %= n
        for step in range(n):
            j = (k + step) % n
            if j in self._failed:
                continue
            try:
                return self._load(j)
            except Exception as e:
                self._failed.add(j)
                path = str(self.index.path_of(self.samples[j][0]))
                self.bad_files.append((path, bad_image_reason(e)))
                warnings.warn(f"skipping bad image {path}: {e}", stacklevel=2)
        raise RuntimeError(f"no readable image among the {n} samples of this dataset "
                           f"(first bad: {self.bad_files[:1]})")


def attach_provenance(ds, index: CCTIndex, image_ids: list) -> None:
    """Give ``ds`` each row's image id, sequence id and camera location (``ids``,
    ``sequence_ids``, ``locations``: arrays of str, from the COCO Camera Traps JSON's ``id``,
    ``seq_id`` and ``location``), the names user data sets carry too, so that a run's saved
    predictions can be scored per sequence and resampled per sequence or site. A field that
    some image lacks leaves its attribute ``None`` (never one made-up sequence of them all)."""
    def column(key):
        values = [index.images[i].get(key) for i in image_ids]
        return None if any(v is None for v in values) else np.array([str(v) for v in values])

    ds.ids = np.array([str(i) for i in image_ids], dtype=str)
    ds.sequence_ids = column("seq_id")
    ds.locations = column("location")
