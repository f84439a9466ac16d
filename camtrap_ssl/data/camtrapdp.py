"""Camtrap DP 1.0: read and validate a camera-trap data package, and label its media.

Camtrap DP (TDWG, https://camtrap-dp.tdwg.org; table schemas of release 1.0.2 at
https://github.com/tdwg/camtrap-dp, shipped here as ``camtrapdp_schemas/*.json``) is a
Frictionless data package: ``datapackage.json`` names three CSV resources, ``deployments``
(``deploymentID``, ``locationID``, ``latitude``, ``longitude``, start and end), ``media`` (``mediaID``,
``deploymentID``, ``timestamp``, ``filePath``, ``filePublic``, ``fileMediatype``) and
``observations`` (``observationID``, ``deploymentID``, ``mediaID``, ``eventID``, ``eventStart``,
``eventEnd``, ``observationLevel`` media/event, ``observationType``, ``scientificName``, relative
``bboxX``/``bboxY``/``bboxWidth``/``bboxHeight`` in 0..1, ``classificationMethod`` human/machine,
``classifiedBy``, ``classificationProbability``).

How a medium gets its label (the two rules the standard leaves to its users):

* **Media-level observations win.** ``observationLevel = media`` rows label the medium of their
  ``mediaID``. A medium with at least one media-level observation other than ``unclassified``
  takes those and ignores every event-level observation; a medium whose media-level rows are all
  ``unclassified`` falls back to the event level.
* **Event-level observations label by time.** An ``observationLevel = event`` row (no ``mediaID``)
  labels every medium of its ``deploymentID`` whose ``timestamp`` lies in
  ``[eventStart, eventEnd]`` (both ends included). A medium inside several events takes the union
  of their classes; several classes on one medium (several species, or several events) are then
  resolved by the COCO Camera Traps reader's ``multi_label`` policy (``single`` drops the medium,
  ``per_category`` keeps one sample per class).

Classes: ``animal`` -> its ``scientificName`` (``"animal"`` where the name is blank), ``blank`` ->
``"blank"`` (the empty class), ``human``/``vehicle``/``unknown`` -> those names. ``unclassified``
means not yet classified: it is no class; such rows are dropped and counted. Only
``image/*`` media are read (videos and audio are counted and left out).

Sites and bursts: a medium's location is its deployment's ``locationID``, else its
``deploymentID``; its event is the ``eventID`` of the observation that labels it, else a burst
found by time: within a deployment, media less than :data:`EVENT_GAP_S` seconds apart belong to
one event.

Validation (before any image is read): the three resources and their files exist, each CSV is
readable UTF-8 with every required column, then Frictionless checks types, constraints, unique
ids and foreign keys against the shipped schemas (the package's own schema URLs are not fetched),
then our own checks cover what a schema cannot say: a box inside the frame (``bboxX + bboxWidth
<= 1``), all four box fields or none, ``mediaID`` on every media-level row, ``eventStart <=
eventEnd``. The first problem raises :class:`CamtrapDPError` naming the file, the line and the
field. Media given as URLs are fetched once into the data cache by :func:`fetch_media`.
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
import urllib.parse
from bisect import bisect_left, bisect_right
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from camtrap_ssl.core import download as dl
from camtrap_ssl.core.progress import progress_bar

__all__ = ["CamtrapDPError", "CamtrapPackage", "TABLES", "EVENT_GAP_S", "SCHEMA_DIR",
           "OBSERVATION_TYPES", "read_camtrapdp", "load_schema", "validate_tables",
           "media_labels", "fetch_media", "package_sha256", "is_url"]

SCHEMA_DIR = Path(__file__).with_name("camtrapdp_schemas")
SCHEMA_VERSION = "1.0.2"
TABLES = ("deployments", "media", "observations")
EVENT_GAP_S = 60.0  # media of one deployment closer than this (seconds) form one event
OBSERVATION_TYPES = ("animal", "human", "vehicle", "blank", "unknown", "unclassified")
BOX_FIELDS = ("bboxX", "bboxY", "bboxWidth", "bboxHeight")
BOX_TOLERANCE = 1e-6  # rounding allowed past the frame's edge (relative units)
FETCH_TIMEOUT = 120.0
FETCH_FAIL_FAST = 8


class CamtrapDPError(ValueError):
    """A Camtrap DP package breaks the standard; the message names the file, line and field."""


def load_schema(table: str) -> dict:
    """The shipped Table Schema of ``table`` (Camtrap DP 1.0.2)."""
    if table not in TABLES:
        raise ValueError(f"table={table!r}; allowed: {list(TABLES)}")
    return json.loads((SCHEMA_DIR / f"{table}-table-schema.json").read_text())


def is_url(value: str) -> bool:
    return urllib.parse.urlparse(str(value)).scheme.lower() in ("http", "https", "file")


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))


@dataclass
class CamtrapPackage:
    """A validated package: ``path`` (datapackage.json), ``root`` (its folder), ``files`` (table ->
    CSV path), the rows of each table (dicts of strings, blank cells removed), ``descriptor``."""
    path: Path
    root: Path
    files: dict
    deployments: dict
    media: dict
    observations: list
    descriptor: dict = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return package_sha256(self.path, self.files)


def package_sha256(package_json: Path, files: dict) -> str:
    """sha256 over datapackage.json and the three table CSVs (in table order)."""
    h = hashlib.sha256()
    for p in [Path(package_json)] + [Path(files[t]) for t in TABLES]:
        h.update(p.name.encode() + b"\0")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def package_files(path) -> tuple[Path, dict, dict]:
    """``(datapackage.json, {table: csv path}, descriptor)``; refuses a missing table or file."""
    path = Path(path)
    pj = path / "datapackage.json" if path.is_dir() else path
    if not pj.is_file():
        raise CamtrapDPError(f"{pj}: no datapackage.json (a Camtrap DP package is a folder holding "
                             "datapackage.json and its deployments, media and observations CSVs)")
    try:
        desc = json.loads(pj.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CamtrapDPError(f"{pj}: not a valid UTF-8 JSON file ({e})") from None
    resources = desc.get("resources") if isinstance(desc, dict) else None
    if not isinstance(resources, list):
        raise CamtrapDPError(f"{pj}: needs a 'resources' list (deployments, media, observations)")
    files = {}
    for table in TABLES:
        res = next((r for r in resources if isinstance(r, dict) and r.get("name") == table), None)
        if res is None:
            raise CamtrapDPError(f"{pj}: no resource named {table!r}; Camtrap DP needs the "
                                 f"resources {list(TABLES)}")
        rel = res.get("path")
        if isinstance(rel, list) and len(rel) == 1:
            rel = rel[0]
        if not isinstance(rel, str) or not rel or is_url(rel) or rel.startswith("/") \
                or ".." in rel.replace("\\", "/").split("/"):
            raise CamtrapDPError(f"{pj}: resource {table!r} has path={rel!r}; expected one CSV "
                                 "file inside the package (a relative path)")
        f = pj.parent / rel
        if not f.is_file():
            raise CamtrapDPError(f"{pj}: resource {table!r} names {rel!r}, which does not exist "
                                 f"({f})")
        files[table] = f
    return pj, files, desc


def _read_csv(path: Path, table: str) -> list[dict]:
    schema = load_schema(table)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            rows = []
            for row in reader:
                if None in row:
                    raise CamtrapDPError(f"{path}: line {reader.line_num}: more cells than the "
                                         f"header's {len(header)} columns; an unreadable CSV")
                rows.append({k: v for k, v in row.items() if v not in ("", None)})
    except UnicodeDecodeError as e:
        raise CamtrapDPError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                             f"{e.start}); an unreadable CSV") from None
    except csv.Error as e:
        raise CamtrapDPError(f"{path}: an unreadable CSV ({e})") from None
    if not header:
        raise CamtrapDPError(f"{path}: empty file; the {table} table needs a header row")
    for fld in schema["fields"]:
        if fld.get("constraints", {}).get("required") and fld["name"] not in header:
            raise CamtrapDPError(f"{path}: missing column {fld['name']!r}, required in the "
                                 f"Camtrap DP {table} table; the header has {header}")
    missing = set(schema.get("missingValues", [""]))
    return [{k: v for k, v in r.items() if v not in missing} for r in rows]


def validate_tables(package_json: Path, files: dict) -> None:
    """Frictionless validation of the three tables against the shipped schemas (types,
    constraints, unique ids, foreign keys); the first error raises :class:`CamtrapDPError`."""
    from frictionless import Package  # a light import, but only where a package is read

    resources = []
    for table in TABLES:
        resources.append({"name": table, "path": Path(files[table]).relative_to(package_json.parent).as_posix(),
                          "profile": "tabular-data-resource", "format": "csv",
                          "encoding": "utf-8",
                          "schema": {**load_schema(table), "fieldsMatch": "partial"}})
    pkg = Package({"name": "camtrap-dp", "resources": resources},
                  basepath=str(package_json.parent))
    report = pkg.validate()
    if report.valid:
        return
    for task in report.tasks:
        for err in task.errors:
            table = task.name
            fname = getattr(err, "field_name", None)
            if fname is None and err.type == "foreign-key":
                m = re.search(r'for "([^"]+)"', err.note or "")
                fname = m.group(1) if m else None
            line = getattr(err, "row_number", None)
            where = f"line {line}" if line else "header"
            raise CamtrapDPError(f"{files.get(table, package_json)}: {where}, field "
                                 f"{fname or '?'}: {err.note or err.message} ({err.type}; "
                                 f"Camtrap DP {SCHEMA_VERSION} {table} table)")
    raise CamtrapDPError(f"{package_json}: invalid ({report.errors[:1]})")


def _own_checks(files: dict, media: dict, observations: list) -> None:
    """What a Table Schema cannot say: boxes inside the frame, whole boxes, media-level rows
    with a mediaID, events that end after they start."""
    path = files["observations"]
    for k, row in enumerate(observations):
        line = k + 2
        oid = row.get("observationID")
        given = [f for f in BOX_FIELDS if f in row]
        if given and len(given) < 4:
            miss = next(f for f in BOX_FIELDS if f not in row)
            raise CamtrapDPError(f"{path}: line {line} (observationID={oid!r}), field {miss}: "
                                 f"blank while {given} are given; a box needs all of {BOX_FIELDS}")
        if given:
            x, y, w, h = (float(row[f]) for f in BOX_FIELDS)
            for start, size, fs, fz in ((x, w, "bboxX", "bboxWidth"), (y, h, "bboxY", "bboxHeight")):
                if start + size > 1 + BOX_TOLERANCE:
                    raise CamtrapDPError(
                        f"{path}: line {line} (observationID={oid!r}), field {fz}: {fs} + {fz} = "
                        f"{start + size:g} > 1, a box outside the image (boxes are relative, 0..1)")
        level = row.get("observationLevel")
        if level == "media" and "mediaID" not in row:
            raise CamtrapDPError(f"{path}: line {line} (observationID={oid!r}), field mediaID: "
                                 "blank on a media-level observation")
        if level == "media" and row["mediaID"] in media and \
                media[row["mediaID"]]["deploymentID"] != row["deploymentID"]:
            raise CamtrapDPError(f"{path}: line {line} (observationID={oid!r}), field "
                                 f"deploymentID: {row['deploymentID']!r}, but medium "
                                 f"{row['mediaID']!r} belongs to {media[row['mediaID']]['deploymentID']!r}")
        if _parse_time(row["eventStart"]) > _parse_time(row["eventEnd"]):
            raise CamtrapDPError(f"{path}: line {line} (observationID={oid!r}), field eventEnd: "
                                 f"{row['eventEnd']} is before eventStart {row['eventStart']}")


def read_camtrapdp(path) -> CamtrapPackage:
    """Read and validate a Camtrap DP package (its folder or its ``datapackage.json``)."""
    pj, files, desc = package_files(path)
    tables = {t: _read_csv(files[t], t) for t in TABLES}
    validate_tables(pj, files)
    deployments = {r["deploymentID"]: r for r in tables["deployments"]}
    media = {r["mediaID"]: r for r in tables["media"]}
    _own_checks(files, media, tables["observations"])
    return CamtrapPackage(pj, pj.parent, files, deployments, media, tables["observations"], desc)


def _class_of(row: dict) -> str | None:
    kind = row["observationType"]
    if kind == "unclassified":
        return None
    if kind == "animal":
        return row.get("scientificName", "").strip() or "animal"
    return kind


def _box(row: dict):
    return [float(row[f]) for f in BOX_FIELDS] if all(f in row for f in BOX_FIELDS) else None


def media_labels(pkg: CamtrapPackage) -> tuple[dict, dict]:
    """``({mediaID: {"classes": [...], "boxes": [(class, [x, y, w, h]), ...], "event": id|None}},
    counts)`` for the image media that carry a label, by the rules of the module docstring."""
    counts = {"unclassified_observations": 0, "non_image_media": 0, "unlabelled_media": 0,
              "labelled_by_event": 0}
    media_level: dict = {}
    events_by_dep: dict = {}
    for row in pkg.observations:
        if row["observationType"] == "unclassified":
            counts["unclassified_observations"] += 1
        if row.get("observationLevel") == "media":
            media_level.setdefault(row["mediaID"], []).append(row)
        elif _class_of(row) is not None:
            events_by_dep.setdefault(row["deploymentID"], []).append(row)
    by_dep: dict = {}
    for mid, m in pkg.media.items():
        by_dep.setdefault(m["deploymentID"], []).append((_parse_time(m["timestamp"]), mid))
    for lst in by_dep.values():
        lst.sort()
    from_events: dict = {}
    for dep, rows in events_by_dep.items():
        times = by_dep.get(dep, [])
        keys = [t for t, _ in times]
        for row in rows:
            lo = bisect_left(keys, _parse_time(row["eventStart"]))
            hi = bisect_right(keys, _parse_time(row["eventEnd"]))
            for _, mid in times[lo:hi]:
                from_events.setdefault(mid, []).append(row)
    out = {}
    for mid, m in pkg.media.items():
        if not str(m.get("fileMediatype", "")).startswith("image/"):
            counts["non_image_media"] += 1
            continue
        rows = [r for r in media_level.get(mid, []) if _class_of(r) is not None]
        if not rows:
            rows = from_events.get(mid, [])
            if rows:
                counts["labelled_by_event"] += 1
        if not rows:
            counts["unlabelled_media"] += 1
            continue
        classes = list(dict.fromkeys(_class_of(r) for r in rows))
        boxes = [(_class_of(r), _box(r)) for r in rows if _box(r) is not None]
        event = next((r["eventID"] for r in rows if r.get("eventID")), None)
        out[mid] = {"classes": classes, "boxes": boxes, "event": event}
    return out, counts


def gap_events(pkg: CamtrapPackage, gap: float = EVENT_GAP_S) -> dict:
    """mediaID -> a burst id: within a deployment, media less than ``gap`` s apart share one."""
    by_dep: dict = {}
    for mid, m in pkg.media.items():
        by_dep.setdefault(m["deploymentID"], []).append((_parse_time(m["timestamp"]), mid))
    out = {}
    for dep, lst in by_dep.items():
        lst.sort()
        k, last = 0, None
        for t, mid in lst:
            if last is not None and (t - last).total_seconds() >= gap:
                k += 1
            out[mid] = f"{dep}#burst{k}"
            last = t
    return out


def location_of(pkg: CamtrapPackage, mid: str) -> str:
    dep = pkg.media[mid]["deploymentID"]
    return pkg.deployments.get(dep, {}).get("locationID") or dep


_EXT = {"image/jpeg": ".jpg", "image/png": ".png", "image/tiff": ".tif", "image/gif": ".gif",
        "image/bmp": ".bmp", "image/webp": ".webp"}


def fetch_media(pkg: CamtrapPackage, media_ids, cache: Path, *, timeout: float = FETCH_TIMEOUT,
                workers: int = 8, progress: bool = False) -> tuple[dict, list]:
    """Local paths of ``media_ids``: relative ``filePath`` under the package root, URLs fetched
    once into ``cache`` (resumable, :func:`camtrap_ssl.core.download.fetch`). Returns
    ``(paths, failed)``, failed being ``(path or url, reason)`` for media that could not be had
    (a 404, ``filePublic = false``). When the first fetches all fail the same way (offline, a
    dead host) it raises :class:`CamtrapDPError` saying how many media are remote and naming the
    first."""
    paths, failed, remote = {}, [], []
    for mid in media_ids:
        fp = pkg.media[mid]["filePath"]
        if not is_url(fp):
            paths[mid] = pkg.root / fp
            continue
        if str(pkg.media[mid].get("filePublic", "true")).lower() == "false":
            failed.append((fp, "filePublic is false: not publicly accessible"))
            continue
        ext = _EXT.get(pkg.media[mid].get("fileMediatype", ""), Path(urllib.parse.urlparse(fp).path).suffix)
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", mid)
        remote.append((mid, fp, Path(cache) / f"{safe}{ext or '.img'}"))
    if not remote:
        return paths, failed
    fail_fast = dl.FailFast(min(FETCH_FAIL_FAST, len(remote)))

    def one(item):
        mid, url, dest = item
        dl.fetch(url, dest, timeout=timeout, stall=min(30.0, timeout))
        return dest

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [(item, pool.submit(one, item)) for item in remote]
        for (mid, url, dest), fut in progress_bar(futures, desc="fetching media", show=progress):
            try:
                paths[mid] = fut.result()
                fail_fast.record(None)
            except (*dl.NETWORK_ERRORS, ValueError) as e:
                failed.append((url, f"download failed ({e})"))
                if fail_fast.record(e):
                    for _, f2 in futures:
                        f2.cancel()
                    raise CamtrapDPError(
                        f"{pkg.path}: {len(remote)} of the media are remote URLs and the first "
                        f"{fail_fast.k} downloads all failed ({dl.failure_kind(e)}); first: "
                        f"mediaID={remote[0][0]!r} at {remote[0][1]}: {e}. This machine looks "
                        "offline: fetch the package's media on a machine with internet (they "
                        f"are kept in {cache}) or give the files locally") from None
    return paths, failed
