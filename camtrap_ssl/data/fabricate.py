"""Miniatures of the study's real datasets, in their published on-disk formats.

Why: the paper path (LILA's camera-trap sets, CIFAR, the gold standard) cannot be downloaded where
this project is built, yet its loaders must meet exactly what a researcher will download. These
functions write a few dozen files in each published format, so the tests and the rehearsal of
the paper path (:mod:`camtrap_ssl.studies.rehearsal`) run the real download and loading code on
them:

* :func:`publish_lila`: a LILA dataset as its mirror serves it: the COCO Camera Traps JSON zipped
  (or plain, as ENA24's) at the catalogue's metadata path, and every image at
  ``<image_base><file_name>``: full-size 2048 x 1536 JPEGs with the bottom information strip
  drawn (100 of 1536 rows, as Snapshot Serengeti's), Serengeti's nested
  ``S1/B04/B04_R1/S1_B04_R1_PICT0001.JPG`` names, sequences of frames, locations, seasons, one
  frame with two species, empty frames, a bounding box per animal and one truncated JPEG.
* :func:`write_gold_standard`: Swanson et al.'s expert labels (``gold_standard_data.csv``, the
  columns :func:`camtrap_ssl.data.splits.read_expert_labels` reads) with capture-event ids that are
  not LILA's, and the ``gold_standard_events.csv`` that maps them to LILA sequences.
* :func:`write_cifar`: CIFAR-10/100 batches in torchvision's pickled layout.

Pixel content is a coloured ellipse (the "animal", one colour per class) on textured ground: the
point is the format, not learnability.
"""
from __future__ import annotations

import csv
import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from torchvision.datasets import CIFAR10, CIFAR100

from camtrap_ssl.core.profiles import SERENGETI_STRIP_FRACTION
from camtrap_ssl.data.lila import CATALOGUE
from camtrap_ssl.data.strip import strip_rows

__all__ = ["FRAME", "SPECIES", "camtrap_frame", "publish_lila", "write_gold_standard", "write_cifar"]

FRAME = (2048, 1536)  # (width, height) of a Snapshot Serengeti original
# Species per dataset: Serengeti's include Study 3's four classes (named as on LILA)
SPECIES = {
    "serengeti": ["zebra", "guineaFowl", "ostrich", "lionMale", "gazelleThomsons"],
    "nacti": ["odocoileus virginianus", "sus scrofa", "canis latrans", "lynx rufus"],
    "ena24": ["American Black Bear", "White_Tailed_Deer", "Wild Turkey", "Raccoon"],
}


def _colour(k: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(1000 + k)
    return tuple(int(v) for v in rng.integers(40, 230, 3))


def camtrap_frame(category: int | None, seed: int, size=FRAME, jpeg_quality: int = 80):
    """One JPEG camera-trap frame (bytes) and the animal's box ``[x, y, w, h]`` (None if empty).

    Textured ground, an ellipse of the category's colour somewhere in the upper part, and the
    information strip (black band, white text) over the bottom ``SERENGETI_STRIP_FRACTION``.
    """
    w, h = size
    rng = np.random.default_rng(seed)
    small = rng.integers(60, 140, (h // 64 + 1, w // 64 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    box = None
    strip = strip_rows(h, SERENGETI_STRIP_FRACTION)
    if category is not None:
        bw, bh = int(rng.integers(w // 6, w // 3)), int(rng.integers(h // 6, h // 3))
        x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - strip - bh))
        draw.ellipse([x0, y0, x0 + bw, y0 + bh], fill=_colour(category))
        box = [x0, y0, bw, bh]
    draw.rectangle([0, h - strip, w, h], fill=(0, 0, 0))
    draw.text((20, h - strip + strip // 3), f"2011-07-{seed % 28 + 1:02d} 14:3{seed % 10}:00  "
              f"24C  CAM{seed % 7:02d}", fill=(255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=jpeg_quality)
    return buf.getvalue(), box


def _file_name(name: str, loc: int, k: int, season: str) -> str:
    if name == "serengeti":
        site = f"B{loc:02d}"
        return f"{season}/{site}/{site}_R1/{season}_{site}_R1_PICT{k + 1:04d}.JPG"
    if name == "nacti":
        return f"part0/sub{loc:03d}/2016_Unit{loc:03d}_img{k:04d}.jpg"
    return f"{k + 1}.jpg"


def publish_lila(root, name: str, per_class: int = 6, n_locations: int = 3, frames_per_seq: int = 2,
                 size=FRAME, seed: int = 0) -> dict:
    """Write dataset ``name`` under ``root`` as a LILA mirror lays it out; return its JSON dict.

    Per location, ``per_class`` frames of each species in sequences of ``frames_per_seq``, and
    one empty sequence; Serengeti also gets a season-9 sequence (outside Norouzzadeh's S1-S6), a
    frame with two species, and ENA24 carries no locations (its split falls back to sequences).
    The last image of the file is truncated, as a small share of LILA's are.
    """
    if name not in SPECIES:
        raise ValueError(f"name={name!r}; allowed: {sorted(SPECIES)}")
    if per_class < frames_per_seq or per_class % frames_per_seq:
        raise ValueError(f"per_class={per_class} must be a positive multiple of frames_per_seq="
                         f"{frames_per_seq}")
    entry = CATALOGUE[name]
    root = Path(root)
    cats = [{"id": 0, "name": "empty"}] + [{"id": k + 1, "name": s} for k, s in enumerate(SPECIES[name])]
    images, anns, k = [], [], 0

    def add_sequence(loc, season, cat_ids, seq):
        nonlocal k
        for f in range(frames_per_seq):
            cat = cat_ids[0]
            fname = _file_name(name, loc, k, season)
            data, box = camtrap_frame(None if cat == 0 else cat, seed * 100003 + k, size)
            path = root / entry["image_base"] / fname
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            iid = fname.rsplit(".", 1)[0]
            im = {"id": iid, "file_name": fname, "width": size[0], "height": size[1],
                  "seq_id": seq, "seq_num_frames": frames_per_seq, "frame_num": f + 1,
                  "datetime": f"2011-07-{loc + 1:02d} 14:{k % 60:02d}:00"}
            if name != "ena24":
                im["location"] = f"B{loc:02d}" if name == "serengeti" else str(loc)
            if name == "serengeti":
                im["season"] = season
            images.append(im)
            for j, c in enumerate(cat_ids):
                ann = {"id": f"{iid}_{j}", "image_id": iid, "category_id": c,
                       "sequence_level_annotation": name == "serengeti"}
                if box is not None and j == 0:
                    ann["bbox"] = box
                anns.append(ann)
            k += 1

    for loc in range(n_locations):
        for c in range(1, len(cats)):
            for s in range(per_class // frames_per_seq):
                add_sequence(loc, "S1", [c], f"SER_S1#B{loc:02d}#1#{c * 100 + s}")
        add_sequence(loc, "S1", [0], f"SER_S1#B{loc:02d}#1#empty")
    if name == "serengeti":
        add_sequence(0, "S9", [1], "SER_S9#B00#1#1")
        add_sequence(1, "S1", [1, 2], "SER_S1#B01#1#multi")
    # truncated mid-scan (the loader must list them): the first frame of the last location (the
    # first species, season 1: every selection keeps it) and the file's last frame
    per_location = (len(cats) - 1) * per_class + frames_per_seq
    for im in (images[(n_locations - 1) * per_location], images[-1]):
        bad = root / entry["image_base"] / im["file_name"]
        bad.write_bytes(bad.read_bytes()[:2000])
    data = {"info": {"version": "fabricated", "description": f"camtrap_ssl miniature of {name}"},
            "images": images, "categories": cats, "annotations": anns}
    raw = json.dumps(data).encode()
    meta = root / entry["metadata"]
    meta.parent.mkdir(parents=True, exist_ok=True)
    if meta.suffix.lower() == ".zip":
        with zipfile.ZipFile(meta, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(entry["json_name"], raw)
    else:
        meta.write_bytes(raw)
    return data


def write_gold_standard(folder, data: dict, per_class: int = 1) -> tuple[Path, Path]:
    """Swanson et al.'s expert labels for ``per_class`` sequences of each species of ``data`` (a
    Serengeti file from :func:`publish_lila`), plus one "impossible" event, under Dryad's file name,
    with their own capture-event ids mapped to LILA sequences by ``gold_standard_events.csv``.

    Experts relabel one of the chosen sequences to another species (the volunteers erred), so a
    loader that keeps the volunteers' labels gives itself away.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cats = {c["id"]: c["name"] for c in data["categories"]}
    label = {a["image_id"]: a["category_id"] for a in data["annotations"]}
    seqs: dict[int, list[str]] = {}
    for im in data["images"]:
        if im.get("season") == "S1" and im["location"] == "B00":
            c = label[im["id"]]
            if c != 0 and im["seq_id"] not in seqs.setdefault(c, []):
                seqs[c].append(im["seq_id"])
    rows, events = [], []
    n = 0
    for c, ids in sorted(seqs.items()):
        for seq in ids[:per_class]:
            species = cats[c] if n else cats[c % (len(cats) - 1) + 1]  # the first one relabelled
            event = f"ASG{n:07d}"
            rows.append({"CaptureEventID": event, "NumSpecies": 1, "Species": species, "Count": 1})
            events.append({"CaptureEventID": event, "seq_id": seq})
            n += 1
    extra = next(s for c, ids in seqs.items() for s in ids[per_class:])
    rows.append({"CaptureEventID": f"ASG{n:07d}", "NumSpecies": 1, "Species": "impossible", "Count": 1})
    events.append({"CaptureEventID": f"ASG{n:07d}", "seq_id": extra})
    labels, mapping = folder / "gold_standard_data.csv", folder / "gold_standard_events.csv"
    for path, table in ((labels, rows), (mapping, events)):
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(table[0]))
            w.writeheader()
            w.writerows(table)
    return labels, mapping


def write_cifar(root, name: str, per_batch: int = 20, seed: int = 0) -> Path:
    """``root/<base folder>`` in torchvision's CIFAR layout (CIFAR-10's 5 training batches or
    CIFAR-100's one training file, the test file, the meta file), ``per_batch`` random 32 x 32
    images in each; returns that folder."""
    if name not in ("cifar10", "cifar100"):
        raise ValueError(f"name={name!r}; allowed: ['cifar10', 'cifar100']")
    cls = CIFAR10 if name == "cifar10" else CIFAR100
    folder = Path(root) / cls.base_folder
    folder.mkdir(parents=True, exist_ok=True)
    n_classes = 10 if name == "cifar10" else 100
    label_key = "labels" if name == "cifar10" else "fine_labels"
    rng = np.random.default_rng(seed)
    for fname, _ in cls.train_list + cls.test_list:
        with open(folder / fname, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                         label_key: (np.arange(per_batch) % n_classes).tolist()}, f)
    with open(folder / cls.meta["filename"], "wb") as f:
        pickle.dump({cls.meta["key"]: [f"class{k}" for k in range(n_classes)]}, f)
    return folder
