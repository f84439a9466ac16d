"""``camtrap-ssl predict``: a finished run's classifier on every image of your cameras, written in the
formats the field's tools read (SPEC section 6, "scored as practice decides").

Input: a COCO Camera Traps file, a Camtrap DP package, or a plain folder of images (searched
recursively). Output, in ``out``:

* ``megadetector.json``: a MegaDetector batch output file (format 1.5), one detection per
  classified box (the whole image ``[0, 0, 1, 1]`` where no detector box was given) with its
  ``classifications``; with ``detections`` (a MegaDetector results file) the classifications are
  merged into that file's detections, so Timelapse and AddaxAI read one file. Predictions of an
  empty/blank class write no detection; human and vehicle classes are MegaDetector's person and
  vehicle (:func:`camtrap_ssl.data.megadetector.write_batch_output`).
* ``camtrapdp/`` (a Camtrap DP target only): a copy of the package with one machine observation
  per prediction (``classificationMethod`` machine, ``classifiedBy`` the run and its backbone,
  ``classificationProbability``; ``scientificName`` the class name unless a class -> taxon table
  is given), validated as every package written here is.
* ``predict.json``: what was done (run, preprocessing, counts, where names came from).

**The images are preprocessed exactly as the run's evaluation was** (:func:`run_preprocessing`,
:func:`load_inputs`): the information strip cut (the run's protocol), squashed to the stored size
with the same decoder as training, then the evaluation's centre crop; a run trained on the crop
view (``spec.view == "box"``) sees square crops of each box cut from the original frame with the
run's margin (:mod:`camtrap_ssl.data.crops`), and needs boxes (the target's annotations or a
detector file). Evaluation precision is the run's. Every input is checked before the model loads.
"""
from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from camtrap_ssl.core.fileio import atomic_write_json, read_json
from camtrap_ssl.core.progress import progress_bar
from camtrap_ssl.data import camtrapdp, cct, crops, megadetector
from camtrap_ssl.data.camtrapdp_write import add_observations
from camtrap_ssl.data.images import EXTENSIONS, list_images
from camtrap_ssl.experiments.backbones import create_backbone
from camtrap_ssl.models.utils import autocast, resolve_precision
from camtrap_ssl.train import rundir
from camtrap_ssl.train.augment import center_crop
from camtrap_ssl.train.finetune import memory_format

__all__ = ["predict", "run_preprocessing", "load_inputs", "classify", "Item", "read_taxa",
           "MD_FILE", "DP_DIR", "REPORT_FILE"]

MD_FILE, DP_DIR, REPORT_FILE = "megadetector.json", "camtrapdp", "predict.json"
DP_TYPES = {"empty": "blank", "person": "human", "vehicle": "vehicle", "animal": "animal"}


def run_preprocessing(params: dict) -> dict:
    """How the run's evaluation saw an image, from its ``params.json``: ``stored_size``, ``crop``
    (the centre crop), ``strip`` (share of rows cut), ``precision``, ``view`` (``frame``/``box``)
    and ``margin`` (crop view)."""
    pre, spec = params.get("preprocessing", {}), params.get("spec", {})
    proto = (params.get("identity") or {}).get("protocol", {})
    stored = int(pre.get("stored_size") or params.get("data", {}).get("size"))
    crop = int(proto.get("crop") or params.get("finetune", {}).get("crop") or stored)
    data = params.get("data") or {}
    strip = proto.get("strip")
    if strip is None:
        strip = data.get("strip_fraction", 0.0)
    margin = data.get("margin", spec.get("box_margin", crops.DEFAULT_MARGIN))
    return {"stored_size": stored, "crop": min(crop, stored), "strip": float(strip or 0.0),
            "precision": params.get("finetune", {}).get("precision", "auto"),
            "view": spec.get("view", "frame"), "margin": float(margin)}


def load_inputs(path, boxes, prep: dict) -> torch.Tensor:
    """The network's inputs for one image file: float (N, 3, crop, crop) in [0, 1], one per
    relative box of ``boxes`` (crop view), or the whole frame when ``boxes`` is None."""
    size = prep["stored_size"]
    if boxes is None:
        arrays = [cct.decode_image(Path(path), size, prep["strip"])]
    else:
        arrays = crops.crop_image(path, boxes, size, prep["margin"], prep["strip"])
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255)
    return center_crop(x, prep["crop"]) if prep["crop"] < size else x


@torch.no_grad()
def classify(model, x: torch.Tensor, prep: dict, device) -> np.ndarray:
    """Softmax probabilities (float64, N x C) of a batch, at the run's evaluation precision."""
    device = torch.device(device)
    precision = resolve_precision(prep["precision"], device)
    with autocast(device, precision):
        logits = model(x.to(device).contiguous(memory_format=memory_format(model, device))).float()
    return torch.softmax(logits.double(), 1).cpu().numpy()


@dataclass
class Item:
    """One image to predict: ``file`` (the name written in the MegaDetector file), ``path`` on
    disk, Camtrap DP ``media_id``, and its boxes (``None``: the whole frame; a list of
    :class:`~camtrap_ssl.data.megadetector.Detection` or relative boxes)."""
    file: str
    path: Path
    media_id: str | None = None
    boxes: list | None = None


def read_taxa(path, class_names) -> dict[str, str]:
    """A class -> taxon table (CSV with columns ``class`` and ``scientificName``), checked
    against the run's classes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"taxa table {str(path)!r} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"class", "scientificName"} <= set(rows[0]):
        raise ValueError(f"{path}: a taxa table needs the columns class,scientificName")
    out = {}
    for k, r in enumerate(rows, start=2):
        c, name = (r["class"] or "").strip(), (r["scientificName"] or "").strip()
        if c not in class_names:
            raise ValueError(f"{path} line {k}: class {c!r} is not a class of the run; classes: "
                             f"{list(class_names)}")
        if c in out:
            raise ValueError(f"{path} line {k}: class {c!r} appears twice")
        out[c] = name or c
    return out


def _target_items(target: Path) -> tuple[str, list[Item], object, bool]:
    """(kind, items, package or index, whether the target carries boxes)."""
    if not target.exists():
        raise FileNotFoundError(f"target {str(target)!r} does not exist")
    if target.is_file() and target.name != "datapackage.json":
        if target.suffix.lower() != ".json":
            raise ValueError(f"target {str(target)!r}: expected a COCO Camera Traps .json, a "
                             "Camtrap DP package or a folder of images")
        index = cct.load_cct(target, multi_label="per_category")
        items, any_box = [], False
        for iid, im in index.images.items():
            rel = []
            for a in index.annotations_by_image.get(iid, []):
                if a.get("bbox") is None or str(index.categories[a["category_id"]]).lower() \
                        in cct.EMPTY_NAMES:
                    continue
                W, H = crops._frame_size(index, iid)
                x, y, w, h = a["bbox"]
                rel.append(crops._check_box((x / W, y / H, w / W, h / H), iid))
            any_box |= bool(rel)
            items.append(Item(im["file_name"].replace("\\", "/"), index.path_of(iid), None, rel))
        return "cct", items, index, any_box
    if target.name == "datapackage.json" or (target / "datapackage.json").is_file():
        pkg = camtrapdp.read_camtrapdp(target)
        rel: dict = {}
        for o in pkg.observations:
            if o.get("mediaID") and all(o.get(f) not in (None, "") for f in camtrapdp.BOX_FIELDS) \
                    and o.get("observationType") != "blank":
                rel.setdefault(o["mediaID"], []).append(crops._check_box(
                    [float(o[f]) for f in camtrapdp.BOX_FIELDS], o["mediaID"]))
        items = [Item(m["filePath"], pkg.root / m["filePath"], mid, rel.get(mid, []))
                 for mid, m in pkg.media.items()
                 if str(m.get("fileMediatype", "")).startswith("image/")
                 and not camtrapdp.is_url(m["filePath"])]
        if not items:
            raise ValueError(f"{pkg.path}: no local image medium to predict (URL media are not "
                             "fetched for prediction)")
        return "camtrapdp", items, pkg, bool(rel)
    files = list_images(target)
    if not files:
        raise ValueError(f"target folder {str(target)!r} holds no image files "
                         f"({', '.join(EXTENSIONS)})")
    return "folder", [Item(p.relative_to(target).as_posix(), p) for p in files], None, False


def _read_detections(path, threshold):
    try:
        return megadetector.read_batch_output(path, threshold), read_json(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"detections {str(path)!r}: not a readable MegaDetector batch output "
                         f"file ({e})") from None


def _dp_box(box) -> tuple[float, float, float, float]:
    """A relative box rounded to 4 digits and kept inside the frame (Camtrap DP checks it)."""
    x, y = (min(max(0.0, math.floor(float(v) * 1e4) / 1e4), 1.0) for v in box[:2])
    w, h = (math.floor(float(v) * 1e4) / 1e4 for v in box[2:])
    return x, y, max(1e-4, min(w, 1 - x)), max(1e-4, min(h, 1 - y))


def predict(run, target, out, *, detections=None, threshold: float | None = None, taxa=None,
            batch_size: int = 256, device: str | None = None, progress: bool = True) -> dict:
    """Apply the fine-tuned classifier of the finished ``run`` to every image of ``target`` and
    write the outputs into ``out`` (see the module docstring); return the report written to
    ``out/predict.json``. ``detections``: a MegaDetector results file on the same images (boxes at
    or above ``threshold``, None: the file's typical threshold), into which the classifications
    are merged; ``taxa``: a CSV class,scientificName. Refuses, before loading the model, an
    unfinished run, a missing target, an empty folder, an unreadable detector file, a taxa table
    naming unknown classes, outputs already in ``out``, and a crop-view run without boxes."""
    run = rundir.finished_run(run)
    params = run.params()
    prep = run_preprocessing(params)
    classes = list(params["classes"])
    kind, items, source, has_boxes = _target_items(Path(target))
    md = raw_md = None
    if detections is not None:
        md, raw_md = _read_detections(detections, threshold)
    names = read_taxa(taxa, classes) if taxa is not None else {}
    out = Path(out)
    for f in (MD_FILE, DP_DIR):
        if (out / f).exists():
            raise ValueError(f"{out / f} exists; give another --out (predict never overwrites)")
    if prep["view"] == "box" and md is None and not has_boxes:
        raise ValueError(f"run {run.path.name} was trained on the crop view (boxes): predicting "
                         f"needs boxes, and {target} has no annotated box; give a MegaDetector "
                         "file run on these images (--detections MD.json)")
    counts = {"images": len(items), "not_in_detector_file": 0, "no_box": 0}
    if md is not None:
        matched = crops.match_files([r.file for r in md.images], [it.file for it in items])
        by_key = {matched[r.file]: r for r in md.images if r.file in matched}
        for it in items:
            r = by_key.get(it.file)
            if r is None:
                counts["not_in_detector_file"] += 1
                it.boxes = [] if prep["view"] == "box" else None
                continue
            it.file = r.file  # the detector's name, so the merged file stays one file
            animals = [d for d in r.detections if d.category == "animal"] if r.failure is None else []
            it.boxes = animals if (animals or prep["view"] == "box") else None
    elif prep["view"] == "frame":
        for it in items:
            it.boxes = None
    inputs = [(it, b) for it in items for b in ([None] if it.boxes is None else it.boxes)]
    counts["no_box"] = sum(1 for it in items if it.boxes == [])
    counts["inputs"] = len(inputs)

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = create_backbone(run.path).to(device).eval()
    if list(model.class_names) != classes:
        raise RuntimeError(f"{run.path}: the model's classes differ from params.json's")
    t0 = time.time()  # the plan's estimate: one frame decoded, one batch of 8 classified
    cct.decode_image(items[0].path, prep["stored_size"], prep["strip"])
    t1 = time.time()
    n = prep["crop"]
    classify(model, torch.rand(8, 3, n, n), prep, device)
    per_input = (t1 - t0) + (time.time() - t1) / 8
    backbone = params.get("backbone", {}).get("backbone", "?")
    print(f"predicting {len(inputs)} {'boxes' if prep['view'] == 'box' else 'inputs'} of "
          f"{len(items)} images of {target} ({kind}) with run {run.path.name} ({backbone}, "
          f"view {prep['view']}, {len(classes)} classes) on {device}: about "
          f"{max(1, math.ceil(per_input * len(inputs)))} s", flush=True)

    results, failed, batch = [], [], []

    def flush():
        if batch:
            p = classify(model, torch.cat([x for x, _ in batch]), prep, device)
            k = 0
            for x, (it, bs) in batch:
                for b in bs:
                    results.append((it, b, p[k]))
                    k += 1
            batch.clear()

    bar = progress_bar(total=len(inputs), desc="predicting", show=progress)
    for it in items:
        bs = [None] if it.boxes is None else list(it.boxes)
        if not bs:
            continue
        try:
            x = load_inputs(it.path, None if it.boxes is None else [getattr(b, "bbox", b) for b in bs],
                            prep)
        except Exception as e:  # an unreadable image is reported as a failure, not fatal
            failed.append(f"{it.path}: {cct.bad_image_reason(e)}")
            bar.update(len(bs))
            continue
        batch.append((x, (it, bs)))
        if sum(len(v[1][1]) for v in batch) >= batch_size:
            flush()
        bar.update(len(bs))
    flush()
    bar.close()

    out.mkdir(parents=True, exist_ok=True)
    tagged = f"camtrap_ssl run {run.path.name} ({backbone})"
    preds = [(it.file, b if (b is None or isinstance(b, megadetector.Detection)) else list(b), p)
             for it, b, p in results]
    empties = [it.file for it in items if it.boxes == []]
    meta = {"run": str(run.path), "backbone": backbone, "view": prep["view"],
            "preprocessing": prep, "classes": classes}
    megadetector.write_batch_output(
        out / MD_FILE, preds, classes, classifier=tagged, classifier_metadata=meta,
        merge_into=raw_md, empty_files=empties)
    report = {"run": str(run.path), "backbone": backbone, "target": str(target), "kind": kind,
              "preprocessing": prep, "counts": {**counts, "predictions": len(results),
                                                "failed": len(failed)},
              "failed": failed, "megadetector": str(out / MD_FILE),
              "scientificName": f"taxa table {taxa}" if taxa is not None else "class names",
              "seconds": round(time.time() - t0, 1)}
    if md is not None:
        report["detections"] = {"file": str(detections), "threshold": md.threshold}
    if kind == "camtrapdp":
        rows = []
        for it, b, p in results:
            k = int(np.argmax(p))
            kind_k = megadetector.class_kind(classes[k])
            row = {"mediaID": it.media_id, "observationType": DP_TYPES[kind_k],
                   "classifiedBy": tagged, "classificationProbability": round(float(p[k]), 4)}
            if kind_k == "animal":
                row["scientificName"] = names.get(classes[k], classes[k])
            box = getattr(b, "bbox", b)
            if box is not None and kind_k != "empty":
                row.update(zip(camtrapdp.BOX_FIELDS, _dp_box(box)))
            rows.append(row)
        if rows:
            report["camtrapdp"] = str(add_observations(source.path, out / DP_DIR, rows))
        report["observations_added"] = len(rows)
    atomic_write_json(out / REPORT_FILE, report)
    return report
