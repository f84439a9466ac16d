"""MegaDetector batch output: read a detector's boxes, write a classifier's predictions.

The MegaDetector batch output format (https://lila.science/megadetector-output-format) is what
the field's review tools read (Timelapse, AddaxAI, the MegaDetector postprocessing scripts). One
JSON object:

* ``info``: ``format_version`` (a string-formatted float; 1.3 or later here) and optional
  ``detector``, ``detection_completion_time``, ``classifier``, ``classification_completion_time``,
  ``detector_metadata``, ``classifier_metadata``;
* ``detection_categories``: string-formatted integer ids -> names, MegaDetector's being
  ``{"1": "animal", "2": "person", "3": "vehicle"}``;
* optional ``classification_categories``: string-formatted integer ids -> class names;
* ``images``: one entry per file with ``file``, ``detections`` (a list, empty when nothing was
  found; ``null`` or absent only with a ``failure`` string) and each detection's ``category`` (a
  detection category id), ``conf`` (float), ``bbox`` ``[x_min, y_min, width, height]`` relative to
  the image size (origin top left) and optional ``classifications``, a list of
  ``[classification category id, confidence]`` in descending confidence.

:func:`read_batch_output` checks those rules (failing with the image and the field at fault) and
keeps per image the boxes at or above a detection threshold. :func:`write_batch_output` writes a
classifier's predictions in the format (version 1.5), on whole images or on a detector's boxes,
and can merge them into the detector's own results file. Video entries are read as files; their
``frame_number`` is not interpreted.
"""
from __future__ import annotations

import copy
import datetime as _dt
import math
import os
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from camtrap_ssl.core.fileio import atomic_write_json, read_json
from camtrap_ssl.data import cct

FORMAT_VERSION = "1.5"
MIN_FORMAT_VERSION = 1.3
DETECTION_CATEGORIES = {"1": "animal", "2": "person", "3": "vehicle"}
#: MegaDetector v5's recommended default (its ``typical_detection_threshold``); a file's own
#: ``detector_metadata.typical_detection_threshold`` is used where present
TYPICAL_DETECTION_THRESHOLD = 0.2
WHOLE_IMAGE = (0.0, 0.0, 1.0, 1.0)
#: class names that are not an animal: nothing in the frame, or MegaDetector's other categories
EMPTY_NAMES = tuple(sorted(cct.EMPTY_NAMES))  # one list of the empty class's names
PERSON_NAMES = ("human", "person", "people")
VEHICLE_NAMES = ("vehicle",)
# relative box coordinates may overshoot [0, 1] by rounding; boxes match within this
_TOLERANCE = 1e-3
_DIGITS = 4


class MegaDetectorFormatError(ValueError):
    """A batch output file breaks the format; the message names the image and the field."""


@dataclass(frozen=True)
class Detection:
    category: str  # the detection category's name ("animal", "person", "vehicle")
    conf: float
    bbox: tuple[float, float, float, float]  # relative [x_min, y_min, width, height]
    classifications: tuple[tuple[str, float], ...] = ()  # (class name, confidence), descending


@dataclass(frozen=True)
class ImageResult:
    file: str
    detections: tuple[Detection, ...]  # at or above the threshold, most confident first
    failure: str | None = None

    @property
    def empty(self) -> bool:
        """Processed, and no box at or above the threshold."""
        return self.failure is None and not self.detections


@dataclass(frozen=True)
class BatchOutput:
    format_version: str
    info: dict
    detection_categories: dict[str, str]
    classification_categories: dict[str, str]
    images: tuple[ImageResult, ...]
    threshold: float

    def by_file(self) -> dict[str, ImageResult]:
        return {im.file: im for im in self.images}


# --------------------------------------------------------------------------------------- reading

def _fail(where: str, message: str):
    raise MegaDetectorFormatError(f"{where}: {message}")


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _categories(d: dict, key: str, required: bool) -> dict[str, str]:
    if key not in d:
        if required:
            _fail(key, "missing")
        return {}
    cats = d[key]
    if not isinstance(cats, dict):
        _fail(key, f"must be an object of id -> name, got {type(cats).__name__}")
    for cid, name in cats.items():
        if not (isinstance(cid, str) and cid.isdigit()):
            _fail(f"{key}[{cid!r}]", "ids must be non-negative integers written as strings")
        if not isinstance(name, str) or not name.strip():
            _fail(f"{key}[{cid!r}]", f"the name must be a non-blank string, got {name!r}")
    return dict(cats)


def _detection(det, where: str, det_cats: dict, cls_cats: dict) -> Detection:
    if not isinstance(det, dict):
        _fail(where, f"a detection must be an object, got {type(det).__name__}")
    for key in ("category", "conf", "bbox"):
        if key not in det:
            _fail(where, f"no `{key}` field")
    if det["category"] not in det_cats:
        _fail(f"{where}.category", f"{det['category']!r} is not in detection_categories "
                                   f"{sorted(det_cats)}")
    conf = det["conf"]
    if not _is_number(conf) or not 0 <= conf <= 1:
        _fail(f"{where}.conf", f"must be a number in [0, 1], got {conf!r}")
    box = det["bbox"]
    if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(map(_is_number, box))):
        _fail(f"{where}.bbox", f"must be 4 numbers [x_min, y_min, width, height], got {box!r}")
    x, y, w, h = box
    if min(x, y, w, h) < -_TOLERANCE or x + w > 1 + _TOLERANCE or y + h > 1 + _TOLERANCE:
        _fail(f"{where}.bbox", f"{box!r} is not a box relative to the image size (all in [0, 1], "
                               "x_min + width <= 1, y_min + height <= 1)")
    classes = []
    for j, c in enumerate(det.get("classifications") or []):
        cw = f"{where}.classifications[{j}]"
        if not (isinstance(c, (list, tuple)) and len(c) == 2):
            _fail(cw, f"must be [class id, confidence], got {c!r}")
        if c[0] not in cls_cats:
            _fail(cw, f"class id {c[0]!r} is not in classification_categories")
        if not _is_number(c[1]) or not 0 <= c[1] <= 1:
            _fail(cw, f"confidence must be a number in [0, 1], got {c[1]!r}")
        classes.append((cls_cats[c[0]], float(c[1])))
    if any(a[1] < b[1] for a, b in zip(classes, classes[1:])):
        _fail(f"{where}.classifications", "must be in descending order of confidence")
    return Detection(det_cats[det["category"]], float(conf), tuple(float(v) for v in box), tuple(classes))


def _version(d: dict) -> str:
    info = d.get("info")
    if not isinstance(info, dict):
        _fail("info", "missing, or not an object")
    if "format_version" not in info:
        _fail("info.format_version", "missing")
    try:
        version = float(info["format_version"])
    except (TypeError, ValueError):
        _fail("info.format_version", f"not a number: {info['format_version']!r}")
    if version < MIN_FORMAT_VERSION:
        _fail("info.format_version", f"{info['format_version']!r}: versions before "
                                     f"{MIN_FORMAT_VERSION} are not read")
    return str(info["format_version"])


def read_batch_output(source: str | os.PathLike | Mapping, threshold: float | None = None) -> BatchOutput:
    """Read a MegaDetector batch output file (a path, or the loaded object), checking the format.

    Keeps per image the detections with ``conf >= threshold`` (all categories), most confident
    first; an image with none is empty. ``threshold=None`` takes the file's
    ``info.detector_metadata.typical_detection_threshold``, else
    :data:`TYPICAL_DETECTION_THRESHOLD`. Raises :class:`MegaDetectorFormatError` naming the
    image (index and file) and the field at fault.
    """
    d = read_json(source) if isinstance(source, (str, os.PathLike)) else source
    if not isinstance(d, Mapping):
        _fail("file", f"must hold a JSON object, got {type(d).__name__}")
    version = _version(d)
    det_cats = _categories(d, "detection_categories", required=True)
    cls_cats = _categories(d, "classification_categories", required=False)
    if threshold is None:
        meta = d["info"].get("detector_metadata") or {}
        threshold = meta.get("typical_detection_threshold", TYPICAL_DETECTION_THRESHOLD)
    images = d.get("images")
    if not isinstance(images, list):
        _fail("images", "missing, or not a list")
    out = []
    for i, im in enumerate(images):
        if not isinstance(im, dict) or not isinstance(im.get("file"), str):
            _fail(f"images[{i}]", "must be an object with a `file` string")
        where = f"images[{i}] ({im['file']!r})"
        failure = im.get("failure")
        dets = im.get("detections")
        if failure is not None:
            if not isinstance(failure, str):
                _fail(f"{where}.failure", f"must be a string or null, got {failure!r}")
            if dets is not None:
                _fail(f"{where}.detections", "must be null or absent for a failed image")
            out.append(ImageResult(im["file"], (), failure))
            continue
        if not isinstance(dets, list):
            _fail(f"{where}.detections", "must be a list (empty when nothing was found) for an "
                                         f"image without a failure, got {dets!r}")
        parsed = [_detection(det, f"{where}.detections[{j}]", det_cats, cls_cats)
                  for j, det in enumerate(dets)]
        kept = sorted((x for x in parsed if x.conf >= threshold), key=lambda x: -x.conf)
        out.append(ImageResult(im["file"], tuple(kept)))
    return BatchOutput(version, dict(d["info"]), det_cats, cls_cats, tuple(out), float(threshold))


# --------------------------------------------------------------------------------------- writing

def class_kind(name: str) -> str:
    """What a class stands for in MegaDetector's terms: "empty", "person", "vehicle" or "animal"."""
    n = str(name).strip().lower()
    for kind, names in (("empty", EMPTY_NAMES), ("person", PERSON_NAMES), ("vehicle", VEHICLE_NAMES)):
        if n in names:
            return kind
    return "animal"


def _probs(p, n_classes: int, file: str) -> list[float]:
    p = [float(v) for v in p]
    if len(p) != n_classes:
        _fail(f"prediction for {file!r}", f"{len(p)} probabilities for {n_classes} classes")
    if not all(map(math.isfinite, p)) or min(p) < -_TOLERANCE or abs(sum(p) - 1) > _TOLERANCE:
        _fail(f"prediction for {file!r}", "probabilities must lie in [0, 1] and sum to 1")
    return p


def _box(box, file: str) -> tuple[tuple[float, ...], float | None]:
    """(relative bbox, the detector's conf or None)."""
    if box is None:
        return WHOLE_IMAGE, None
    if isinstance(box, Detection):
        return box.bbox, box.conf
    box = tuple(float(v) for v in box)
    if len(box) != 4 or min(box) < -_TOLERANCE or box[0] + box[2] > 1 + _TOLERANCE \
            or box[1] + box[3] > 1 + _TOLERANCE:
        _fail(f"prediction for {file!r}", f"box {box} is not a relative [x_min, y_min, width, height]")
    return box, None


def _category_ids(categories: dict[str, str]) -> dict[str, str]:
    """kind ("animal", "person", "vehicle") -> detection category id, adding missing kinds."""
    ids = {}
    for cid, name in sorted(categories.items(), key=lambda kv: int(kv[0])):
        ids.setdefault(name.strip().lower(), cid)
    for kind in ("animal", "person", "vehicle"):
        if kind not in ids:
            new = str(max([int(c) for c in categories] + [0]) + 1)
            categories[new] = kind
            ids[kind] = new
    return ids


def _same_box(a, b) -> bool:
    return all(abs(float(x) - float(y)) <= _TOLERANCE for x, y in zip(a, b))


def write_batch_output(path: str | os.PathLike,
                       predictions: Iterable[tuple[str, Sequence[float] | Detection | None, Sequence[float]]],
                       class_names: Sequence[str], detector_file: str | None = None, *,
                       classifier: str = "camtrap_ssl", merge_into: str | os.PathLike | Mapping | None = None,
                       classifier_metadata: Mapping | None = None,
                       detector_metadata: Mapping | None = None, top_k: int | None = None,
                       completion_time: str | None = None, empty_files: Iterable[str] = ()) -> dict:
    """Write a classifier's predictions as a MegaDetector batch output file (format 1.5).

    ``predictions``: ``(file, box, probabilities)`` per classified image or box; ``box`` is
    ``None`` for the whole image (written as the box ``[0, 0, 1, 1]``), a relative
    ``[x_min, y_min, width, height]``, or a :class:`Detection` read from a detector's file.
    ``probabilities`` holds one value per ``class_names`` entry. Several predictions may name one
    file (several boxes).

    Each prediction becomes one detection whose ``classifications`` are ``[class id, confidence]``
    for every class (or the ``top_k`` most probable), in descending confidence, the class ids
    being the positions in ``class_names`` as strings (``classification_categories``). Its
    ``category`` follows the most probable class: a class named human/person/people maps to
    MegaDetector's "person", vehicle to "vehicle", any other to "animal"; a prediction whose
    most probable class is empty/blank writes no detection (an image with only such
    predictions has ``"detections": []``). Its ``conf`` is the detector's where a
    :class:`Detection` is given, else the classifier's probability of that category (the sum
    over the classes mapping to it: for "animal", one minus the empty, person and vehicle
    probabilities), so that a tool thresholding ``conf`` thresholds the chance that something is
    there.

    ``merge_into`` (a MegaDetector results file or its loaded object): its images, detections and
    info are kept, and each prediction's classifications are added to the detection with the
    same box (within 1e-3) in the same image; a prediction without a matching detection is
    added as a new detection (not for an empty prediction), a file not in it as a new image.
    ``empty_files``: files processed without anything to classify (no box at or above the
    detector's threshold), listed with ``"detections": []`` unless present already.
    Written atomically; returns the object written.
    """
    class_names = [str(c) for c in class_names]
    if not class_names or any(not c.strip() for c in class_names):
        raise ValueError(f"class names must be non-blank, got {class_names}")
    kinds = [class_kind(c) for c in class_names]
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    now = completion_time or _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")

    if merge_into is not None:
        base = read_json(merge_into) if isinstance(merge_into, (str, os.PathLike)) else merge_into
        read_batch_output(base, threshold=0.0)  # the file to merge into must be valid itself
        out = copy.deepcopy(dict(base))
        if out.get("classification_categories"):
            _fail("merge_into.classification_categories",
                  "the file already holds classifications; merge one classifier at a time")
        if float(out["info"]["format_version"]) < float(FORMAT_VERSION):
            out["info"]["format_version"] = FORMAT_VERSION
    else:
        out = {"info": {"format_version": FORMAT_VERSION}, "detection_categories": dict(DETECTION_CATEGORIES),
               "images": []}
        if detector_file is not None:
            out["info"]["detector"] = os.path.basename(str(detector_file))
    info = out["info"]
    if detector_file is not None and "detector" not in info:
        info["detector"] = os.path.basename(str(detector_file))
    if detector_metadata:
        info["detector_metadata"] = {**info.get("detector_metadata", {}), **dict(detector_metadata)}
    info["classifier"] = classifier
    info["classification_completion_time"] = now
    if classifier_metadata:
        info["classifier_metadata"] = dict(classifier_metadata)
    out["classification_categories"] = {str(i): c for i, c in enumerate(class_names)}
    cat_id = _category_ids(out["detection_categories"])

    images = {im["file"]: im for im in out["images"]}
    for file, box, probs in predictions:
        file = str(file)
        p = _probs(probs, len(class_names), file)
        bbox, det_conf = _box(box, file)
        im = images.get(file)
        if im is None:
            im = images[file] = {"file": file, "detections": []}
            out["images"].append(im)
        if im.get("failure") is not None:
            _fail(f"prediction for {file!r}", f"the image failed in the detector ({im['failure']!r})")
        ranked = sorted(range(len(p)), key=lambda i: (-p[i], i))[:top_k]
        classifications = [[str(i), round(p[i], _DIGITS)] for i in ranked]
        match = next((d for d in im["detections"] if _same_box(d["bbox"], bbox)), None) \
            if merge_into is not None else None
        if match is not None:
            match["classifications"] = classifications
            continue
        kind = kinds[ranked[0]]
        if kind == "empty":
            continue
        conf = det_conf if det_conf is not None else sum(q for q, k in zip(p, kinds) if k == kind)
        im["detections"].append({"category": cat_id[kind], "conf": round(float(conf), _DIGITS),
                                 "bbox": [round(float(v), _DIGITS) for v in bbox],
                                 "classifications": classifications})
    for file in empty_files:
        if str(file) not in images:
            images[str(file)] = {"file": str(file), "detections": []}
            out["images"].append(images[str(file)])
    for im in out["images"]:
        if im.get("detections"):
            im["detections"].sort(key=lambda d: -d["conf"])
    atomic_write_json(path, out)
    return out
