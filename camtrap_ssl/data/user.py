"""Your own camera traps as a fine-tuning target: a COCO Camera Traps file, a Camtrap DP package or
a folder of class folders, given by its path.

:func:`load_user_target` returns the same :class:`~camtrap_ssl.data.datasets.Target` as the named
targets. What is different from the study's datasets, and why:

* **No study selection.** Classes come from the file (an ``empty``/``blank`` class included); the
  only selection is what the caller asks for and what is recorded: ``classes`` (a list to keep,
  or a mapping ``old -> new`` that renames and merges; ``None`` as a new name drops a class; a
  class the mapping does not name stays as it is) and ``min_images`` (drop classes with fewer
  samples). ``multi_label`` (``single`` by default, as the COCO Camera Traps reader) is applied
  after the mapping, to the file's classes, so two species merged into one are one class, and an
  image showing a dropped class beside a kept one is still a several-species image.
* **Splits we can trust** (:func:`camtrap_ssl.data.splits.split_user`): by location with at least
  five sites and every class on both sides, else by sequence/event with a warning, frames only
  when asked for; refused with the counts when nothing honest exists. A folder of class folders
  knows no sequences, so it needs ``split="frame"``, chosen knowingly.
* **No strip cut by default**: a user's camera may stamp none. ``strip`` cuts a fraction (< 1 of
  the height, < 0.5 in practice) or a number of rows (an int >= 1; all frames must then have one
  height, read from the file headers).
* **Checked before decoding.** Every option is checked where it enters; the file is validated
  (:mod:`camtrap_ssl.data.cct`, :mod:`camtrap_ssl.data.camtrapdp`) before any image is read; a
  broken or missing image is skipped and listed in ``identity["bad_files"]``.
* **Decoded once** into ``<cache>/user_targets/<target key>/<size>px/`` by
  :func:`camtrap_ssl.data.prepare.prepare` (the paper targets' resize, keyed by data and samples).
  The validation (and training) dataset carries ``image_ids``, ``sequence_ids``, ``locations`` and
  ``boxes`` (per sample, relative ``[x, y, w, h]`` boxes of its class) for the analyses that
  need them.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from PIL import Image

from camtrap_ssl.core import fileio
from camtrap_ssl.core import paths as core_paths
from camtrap_ssl.core.profiles import DEFAULT_PROFILE, get_profile
from camtrap_ssl.data import camtrapdp, cct, splits
from camtrap_ssl.data.datasets import Target
from camtrap_ssl.data.images import EXTENSIONS
from camtrap_ssl.data.prepare import cache_key, prepare

__all__ = ["KINDS", "VAL_FRACTION", "is_target_path", "target_kind", "user_target_identity",
           "target_key", "load_user_target", "check_options"]

KINDS = ("cct", "camtrapdp", "imagefolder")
VAL_FRACTION = 0.2
DEFAULT_MULTI_LABEL = cct.MULTI_LABEL_POLICIES[0]


def _images_under(folder: Path):
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS)


def target_kind(path) -> str:
    """``"cct"`` (a COCO Camera Traps ``.json``), ``"camtrapdp"`` (``datapackage.json`` or a folder
    holding one) or ``"imagefolder"`` (a folder whose sub-folders, the classes, hold images)."""
    p = Path(path)
    if p.is_file():
        if p.name == "datapackage.json":
            return "camtrapdp"
        if p.suffix.lower() == ".json":
            with open(p, "rb") as f:
                head = f.read(4096).lstrip()
            if head.startswith(b"{"):
                return "cct"
            raise ValueError(f"{p}: not a JSON object, so not a COCO Camera Traps file")
        raise ValueError(f"{p}: neither a COCO Camera Traps .json nor a datapackage.json")
    if p.is_dir():
        if (p / "datapackage.json").is_file():
            return "camtrapdp"
        classes = [d for d in p.iterdir() if d.is_dir() and not d.name.startswith(".")]
        if any(_images_under(d) for d in classes):
            return "imagefolder"
        raise ValueError(f"{p}: an empty folder for a target: no datapackage.json and no class "
                         f"sub-folder holding images ({', '.join(EXTENSIONS)}); expected "
                         "<folder>/<class>/<image files>")
    raise FileNotFoundError(f"target path {str(p)!r} does not exist")


def is_target_path(value) -> bool:
    """Whether ``value`` names a target by path (see :func:`target_kind`); never raises."""
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        return False
    try:
        target_kind(value)
        return True
    except (ValueError, OSError):
        return False


def _fingerprint(path, kind: str) -> dict:
    p = Path(path)
    if kind == "cct":
        return {"json": str(p.resolve()), "sha256": fileio.sha256_file(p)}
    if kind == "camtrapdp":
        pj, files, _ = camtrapdp.package_files(p)
        return {"datapackage": str(pj.resolve()), "sha256": camtrapdp.package_sha256(pj, files)}
    h = hashlib.sha256()
    classes = set()
    for f in _images_under(p):
        rel = f.relative_to(p).as_posix()
        if "/" in rel:
            classes.add(rel.split("/")[0])
        h.update(f"{rel}\t{f.stat().st_size}\n".encode())
    h.update(json.dumps(sorted(classes)).encode())
    return {"folder": str(p.resolve()), "sha256": h.hexdigest(), "classes": sorted(classes)}


def check_options(options: dict | None = None, kind: str | None = None) -> dict:
    """The data options, checked and normalised: ``images``, ``classes``, ``min_images``,
    ``split``, ``multi_label``, ``strip``, ``val_fraction``. A bad one raises ValueError naming the
    parameter, the value and what is allowed."""
    o = dict(options or {})
    allowed = {"images", "classes", "min_images", "split", "multi_label", "strip", "val_fraction"}
    unknown = sorted(set(o) - allowed)
    if unknown:
        raise ValueError(f"options: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    images = o.get("images")
    if images is not None:
        if kind == "imagefolder":
            raise ValueError(f"images={str(images)!r}: a folder of class folders holds its own "
                             "images; allowed: None")
        if not Path(images).is_dir():
            raise ValueError(f"images={str(images)!r} is not an existing folder; allowed: None "
                             "(images beside the file) or the folder the file's paths start from")
        images = str(Path(images).resolve())
    classes = o.get("classes")
    if classes is not None:
        if isinstance(classes, dict):
            bad = [(k, v) for k, v in classes.items()
                   if not isinstance(k, str) or not (v is None or (isinstance(v, str) and v.strip()))]
            if bad or not classes:
                raise ValueError(f"classes={classes!r}: a mapping needs class-name keys and new "
                                 f"names (or None to drop) as values; bad entry: {bad[:1]}")
            classes = dict(sorted(classes.items()))
        elif isinstance(classes, (list, tuple)) and not isinstance(classes, str):
            if not classes or not all(isinstance(c, str) and c.strip() for c in classes) \
                    or len(set(classes)) != len(classes):
                raise ValueError(f"classes={classes!r}: allowed: None, a non-empty list of distinct "
                                 "class names, or a mapping old -> new name")
            classes = list(classes)
        else:
            raise ValueError(f"classes={classes!r}: allowed: None, a list of class names to keep, "
                             "or a mapping old -> new name (None drops)")
    min_images = o.get("min_images")
    if min_images is not None and (not isinstance(min_images, int) or isinstance(min_images, bool)
                                   or min_images < 1):
        raise ValueError(f"min_images={min_images!r}: allowed: None or an int >= 1")
    split = o.get("split", "auto")
    if split not in splits.USER_SPLITS:
        raise ValueError(f"split={split!r}; allowed: {list(splits.USER_SPLITS)}")
    multi = o.get("multi_label", DEFAULT_MULTI_LABEL)
    if multi not in cct.MULTI_LABEL_POLICIES:
        raise ValueError(f"multi_label={multi!r}; allowed: {list(cct.MULTI_LABEL_POLICIES)}")
    cut = o.get("strip", 0)
    if isinstance(cut, bool) or not isinstance(cut, (int, float)) or cut < 0 \
            or (isinstance(cut, float) and not (cut == 0 or cut < 0.5)):
        raise ValueError(f"strip={cut!r}: allowed: 0 (no cut), a fraction of the height in "
                         "(0, 0.5) or a number of rows (an int >= 1)")
    vf = o.get("val_fraction", VAL_FRACTION)
    if isinstance(vf, bool) or not isinstance(vf, (int, float)) or not 0 < vf < 1:
        raise ValueError(f"val_fraction={vf!r}: allowed: a number strictly between 0 and 1")
    return {"images": images, "classes": classes, "min_images": min_images, "split": split,
            "multi_label": multi, "strip": cut, "val_fraction": float(vf)}


def user_target_identity(path, options: dict | None = None) -> dict:
    """What a user target is made from, cheaply (no image decoded): its kind, the sha256 of its
    file(s) (the COCO JSON; datapackage.json and the three CSVs; an image folder's sorted
    relative paths, file sizes and class names) and the data options (:func:`check_options`)."""
    kind = target_kind(path)
    return {"kind": kind, **_fingerprint(path, kind), "options": check_options(options, kind)}


def target_key(path) -> str:
    """A short file-system-safe name for run folders: ``<stem>-<6 hex of the data's hash>``."""
    p = Path(path)
    kind = target_kind(p)
    stem = p.stem if kind == "cct" else (p.parent.name if p.is_file() else p.name)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or kind
    return f"{stem[:40]}-{_fingerprint(p, kind)['sha256'][:6]}"


# -- indexes -------------------------------------------------------------------------------------
def _folder_index(folder: Path, sha: str):
    images, anns, samples, paths, loose = {}, {}, [], {}, 0
    for f in _images_under(folder):
        rel = f.relative_to(folder).as_posix()
        if "/" not in rel:
            loose += 1  # an image beside the class folders has no class
            continue
        name = rel.split("/")[0]
        images[rel] = {"id": rel, "file_name": rel}
        anns[rel] = [{"id": rel, "image_id": rel, "category_id": name}]
        samples.append((rel, name))
        paths[rel] = f
    cats = {n: n for _, n in samples}
    return cct.PathIndex(folder, folder, {}, images, cats, anns, samples, "per_category", loose, 0,
                         sha, paths=paths), {"images_outside_class_folders": loose}


def _camtrapdp_index(path, images_root, sha: str):
    pkg = camtrapdp.read_camtrapdp(path)
    labels, counts = camtrapdp.media_labels(pkg)
    if not labels:
        raise camtrapdp.CamtrapDPError(f"{pkg.files['observations']}: no image medium has a label "
                                       f"({counts})")
    bursts = camtrapdp.gap_events(pkg)
    root = Path(images_root) if images_root else pkg.root
    images, anns, samples, paths = {}, {}, [], {}
    for mid, lab in labels.items():
        m = pkg.media[mid]
        images[mid] = {"id": mid, "file_name": m["filePath"], "datetime": m["timestamp"],
                       "location": camtrapdp.location_of(pkg, mid),
                       "seq_id": lab["event"] or bursts[mid], "deploymentID": m["deploymentID"]}
        anns[mid] = [{"id": f"{mid}#{k}", "image_id": mid, "category_id": c}
                     for k, c in enumerate(lab["classes"])]
        anns[mid] += [{"id": f"{mid}#box{k}", "image_id": mid, "category_id": c, "bbox_rel": b}
                      for k, (c, b) in enumerate(lab["boxes"])]
        samples.extend((mid, c) for c in lab["classes"])
        paths[mid] = None if camtrapdp.is_url(m["filePath"]) else root / m["filePath"]
    cats = {c: c for _, c in samples}
    counts["unlabelled_media"] += len(pkg.media) - counts["non_image_media"] - len(labels) \
        - counts["unlabelled_media"]
    return cct.PathIndex(pkg.path, root, pkg.descriptor, images, cats, anns, samples,
                         "per_category", counts["unlabelled_media"], 0, sha, paths=paths), counts, pkg


def _relabel(index, classes, min_images, multi_label):
    """Apply the class options and the multi-label policy; return ``(index, record, name_of)``."""
    names = sorted(set(index.categories.values()))
    lower = {n.lower(): n for n in names}

    def resolve(name, param):
        if name in index.categories.values():
            return name
        if name.lower() in lower:
            return lower[name.lower()]
        raise ValueError(f"{param}: {name!r} is not a class of {index.json_path}; allowed: {names}")

    mapping = {}
    if isinstance(classes, dict):
        mapping = {resolve(k, "classes"): v for k, v in classes.items()}
    keep = {resolve(c, "classes") for c in classes} if isinstance(classes, list) else None

    def name_of(cid):
        n = index.categories[cid]
        return mapping.get(n, n) if n in mapping else n

    per_image: dict = {}
    for iid, c in index.samples:
        per_image.setdefault(iid, []).append(c)
    samples, n_multi = [], 0
    for iid, cids in per_image.items():
        mapped = list(dict.fromkeys(name_of(c) if name_of(c) is not None else ("dropped", index.categories[c])
                                    for c in cids))
        if multi_label == "single" and len(mapped) > 1:
            n_multi += 1
            continue
        for c in dict.fromkeys(cids):
            new = name_of(c)
            if new is None or (keep is not None and index.categories[c] not in keep):
                continue
            samples.append((iid, new if mapping else c))
    samples = list(dict.fromkeys(samples))
    cats = {n: n for _, n in samples} if mapping else index.categories
    counts: dict = {}
    for _, c in samples:
        counts[cats[c]] = counts.get(cats[c], 0) + 1
    dropped = {}
    if min_images is not None:
        dropped = {n: k for n, k in counts.items() if k < min_images}
        samples = [(i, c) for i, c in samples if cats[c] not in dropped]
    record = {"classes": classes, "min_images": min_images, "multi_label": multi_label,
              "dropped_by_min_images": dropped, "multi_species_images_dropped": n_multi}
    kept = {cats[c] for _, c in samples}
    if len(kept) < 2:
        raise ValueError(f"{index.json_path}: {len(kept)} class(es) left ({sorted(kept)}) after "
                         f"classes={classes!r}, min_images={min_images!r}, multi_label="
                         f"{multi_label!r} (images per class before min_images: {counts}); a "
                         "classifier needs at least 2")
    cls = type(index)
    extra = {"paths": index.paths} if isinstance(index, cct.PathIndex) else {}
    out = cls(index.json_path, index.image_root, index.info, index.images, cats,
              index.annotations_by_image, samples, multi_label, index.n_unlabelled, n_multi,
              index._sha256, **extra)
    return out, record, (lambda cid: name_of(cid) if mapping else index.categories[cid])


def _strip_fraction(index, ids, cut) -> tuple[float, str]:
    if cut == 0:
        return 0.0, "none"
    if not isinstance(cut, int):
        return float(cut), f"bottom {cut:g} of each frame's height"
    heights: dict = {}
    for iid in ids:
        try:
            with Image.open(index.path_of(iid)) as im:
                heights.setdefault(im.height, index.path_of(iid))
        except (OSError, TypeError):
            continue  # missing or unreadable: listed as a bad file later
    if len(heights) > 1:
        (h1, p1), (h2, p2) = list(heights.items())[:2]
        raise ValueError(f"strip={cut}: a number of rows needs frames of one height, but {p1} has "
                         f"{h1} rows and {p2} {h2}; give strip as a fraction of the height instead")
    if not heights:
        return 0.0, "none (no readable frame)"
    h = next(iter(heights))
    if cut >= h / 2:
        raise ValueError(f"strip={cut}: at least half of the {h}-row frames; allowed: fewer than "
                         f"{h // 2 + (h % 2)} rows")
    return cut / h, f"bottom {cut} of {h} rows"


def _attach(ds, index, name_of) -> None:
    """Per-row ``image_ids``, ``sequence_ids``, ``locations``, ``boxes`` on a prepared dataset."""
    ids = [i if i in index.images else str(i) for i in ds.image_ids]
    ims = [index.images[i] for i in ids]
    cct.attach_provenance(ds, index, ids)  # ids, sequence_ids, locations: as every target has them
    boxes = []
    for k, im in enumerate(ims):
        cls = ds.class_names[int(ds.labels[k])]
        out = []
        for a in index.annotations_by_image.get(im.get("id"), []):
            if name_of(a["category_id"]) != cls:
                continue
            if "bbox_rel" in a:
                out.append([float(v) for v in a["bbox_rel"]])
            elif a.get("bbox") and im.get("width") and im.get("height"):
                x, y, w, h = a["bbox"]
                out.append([x / im["width"], y / im["height"], w / im["width"], h / im["height"]])
        boxes.append(out)
    ds.boxes = boxes


def load_user_target(path, *, images=None, classes=None, min_images: int | None = None,
                     split: str = "auto", multi_label: str = DEFAULT_MULTI_LABEL, strip=0,
                     size: int | None = None, profile=DEFAULT_PROFILE, seed: int = 0,
                     val_fraction: float = VAL_FRACTION, progress: bool = True,
                     timeout: float = camtrapdp.FETCH_TIMEOUT) -> Target:
    """A COCO Camera Traps file, Camtrap DP package or folder of class folders as a
    :class:`~camtrap_ssl.data.datasets.Target` (see the module docstring for every option).

    ``size`` defaults to ``profile``'s stored size (``resize_size``); ``images`` is the folder
    the file's relative image paths start from (default: beside the file). ``timeout`` bounds
    each remote medium's download. The identity records the data's hash, every option, the
    split and why, the counts of what was left out and the bad files.
    """
    kind = target_kind(path)
    opts = check_options({"images": images, "classes": classes, "min_images": min_images,
                          "split": split, "multi_label": multi_label, "strip": strip,
                          "val_fraction": val_fraction}, kind)
    size = get_profile(profile).resize_size if size is None else size
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"size={size!r}: allowed: a positive int (pixels)")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed={seed!r}: allowed: an int")
    fp = _fingerprint(path, kind)
    pkg, counts = None, {}
    if kind == "cct":
        index = cct.load_cct(path, opts["images"], multi_label="per_category")
        counts = {"unlabelled_images": index.n_unlabelled}
    elif kind == "camtrapdp":
        index, counts, pkg = _camtrapdp_index(path, opts["images"], fp["sha256"])
    else:
        index, counts = _folder_index(Path(path), fp["sha256"])
    index, class_record, name_of = _relabel(index, opts["classes"], opts["min_images"],
                                            opts["multi_label"])
    parts, split_record = splits.split_user(index, opts["split"], opts["val_fraction"], seed)
    key = target_key(path)
    unfetched = []
    if pkg is not None:
        wanted = [i for i in index.image_ids if index.paths[i] is None]
        got, unfetched = camtrapdp.fetch_media(pkg, wanted, core_paths.cache_dir() / "camtrapdp"
                                               / fp["sha256"][:16], timeout=timeout,
                                               progress=progress)
        for i in wanted:  # a medium that could not be fetched is a missing file, listed below
            index.paths[i] = got.get(i, core_paths.cache_dir() / "camtrapdp" / "unfetched" / str(i))
    fraction, strip_text = _strip_fraction(index, parts.train + parts.val, opts["strip"])
    sides, bad = {}, []
    for side, ids in (("train", parts.train), ("val", parts.val)):
        ck = cache_key(index, cct.sample_list(index, ids), size, fraction)[:16]
        out = core_paths.cache_dir() / "user_targets" / key / f"{size}px" / f"{side}-{ck}"
        sides[side] = prepare(index, ids, size, out, progress=progress, strip_fraction=fraction)
        _attach(sides[side], index, name_of)
        bad.extend(sides[side].bad_files)
    identity = {
        "kind": kind, "source": str(Path(path).resolve()), **fp, "options": opts,
        "selection": class_record, "split": parts.by, "split_record": split_record,
        "strip_fraction": fraction, "strip": strip_text,
        "counts": counts, "seed": seed, "size": size, "n_train": len(sides["train"]),
        "n_val": len(sides["val"]), "bad_files": sorted(bad),
        "unfetched": [f"{u}: {r}" for u, r in unfetched], "stands_in_for": None,
    }
    return Target(key, sides["train"], sides["val"], list(index.class_names), identity)
