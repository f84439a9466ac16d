"""Write Camtrap DP 1.0 packages: from rows, from a COCO Camera Traps file, and with machine
observations added to a copy of a package.

Every package written here is validated with :func:`camtrap_ssl.data.camtrapdp.read_camtrapdp`
(the shipped schemas plus our own checks) before the function returns, so what goes out is what
the reader accepts. ``datapackage.json`` carries the metadata the Camtrap DP profile requires
(``resources``, ``profile``, ``created``, ``contributors``, ``project``, ``spatial``,
``temporal``, ``taxonomic``) and points each resource at the standard's published schema URL.
"""
from __future__ import annotations

import csv
import io
import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

from camtrap_ssl.core import fileio
from camtrap_ssl.core.fileio import atomic_write_json
from camtrap_ssl.data import camtrapdp
from camtrap_ssl.data.camtrapdp import TABLES, CamtrapDPError, load_schema
from camtrap_ssl.data.cct import EMPTY_NAMES, load_cct

__all__ = ["write_camtrapdp", "cct_to_camtrapdp", "add_observations", "SCHEMA_URL", "PROFILE_URL"]

SCHEMA_URL = "https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0.2/{table}-table-schema.json"
PROFILE_URL = "https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0.2/camtrap-dp-profile.json"


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.isoformat(timespec="seconds").replace("+00:00", "Z")
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _write_table(path: Path, table: str, rows: list[dict]) -> None:
    names = [f["name"] for f in load_schema(table)["fields"]]
    unknown = sorted({k for r in rows for k in r} - set(names))
    if unknown:
        raise ValueError(f"{table}: unknown column(s) {unknown}; Camtrap DP {table} columns: {names}")
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(names)
    for r in rows:
        w.writerow([_cell(r.get(n)) for n in names])
    fileio.atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def _times(rows, *keys):
    out = []
    for r in rows:
        for k in keys:
            if r.get(k):
                v = r[k]
                out.append(v if isinstance(v, datetime) else camtrapdp._parse_time(str(v)))
    return out


def write_camtrapdp(package_dir, deployments: list[dict], media: list[dict],
                    observations: list[dict], *, name: str = "camtrap-ssl-package",
                    title: str | None = None, contributor: str = "camtrap_ssl") -> Path:
    """Write a Camtrap DP package (three CSVs and ``datapackage.json``) into ``package_dir``;
    return the ``datapackage.json`` path. Rows are dicts of Camtrap DP columns (values may be
    str, numbers, bools or datetimes); media files are the caller's (``filePath`` relative to
    ``package_dir`` or a URL). The result is validated; a violation raises
    :class:`~camtrap_ssl.data.camtrapdp.CamtrapDPError`."""
    package_dir = Path(package_dir)
    package_dir.mkdir(parents=True, exist_ok=True)
    for table, rows in zip(TABLES, (deployments, media, observations)):
        _write_table(package_dir / f"{table}.csv", table, rows)
    lats = [float(d["latitude"]) for d in deployments] or [0.0]
    lons = [float(d["longitude"]) for d in deployments] or [0.0]
    times = _times(deployments, "deploymentStart", "deploymentEnd") or [datetime.now(timezone.utc)]
    names = sorted({o["scientificName"] for o in observations if o.get("scientificName")})
    desc = {
        "resources": [{"name": t, "path": f"{t}.csv", "profile": "tabular-data-resource",
                       "format": "csv", "mediatype": "text/csv", "encoding": "utf-8",
                       "schema": SCHEMA_URL.format(table=t)} for t in TABLES],
        "profile": PROFILE_URL, "name": name, "title": title or name,
        "created": _cell(datetime.now(timezone.utc)),
        "contributors": [{"title": contributor, "role": "contributor"}],
        "project": {"title": title or name, "samplingDesign": "opportunistic",
                    "captureMethod": ["activityDetection"], "individualAnimals": False,
                    "observationLevel": sorted({o.get("observationLevel", "media")
                                                for o in observations}) or ["media"]},
        "spatial": {"type": "Polygon", "coordinates": [[[min(lons), min(lats)], [max(lons), min(lats)],
                    [max(lons), max(lats)], [min(lons), max(lats)], [min(lons), min(lats)]]]},
        "temporal": {"start": min(times).date().isoformat(), "end": max(times).date().isoformat()},
        "taxonomic": [{"scientificName": n} for n in names],
    }
    atomic_write_json(package_dir / "datapackage.json", desc)
    camtrapdp.read_camtrapdp(package_dir)
    return package_dir / "datapackage.json"


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def cct_to_camtrapdp(json_path, package_dir, *, image_root=None, gap_s: float = 1.0,
                     name: str | None = None) -> Path:
    """A COCO Camera Traps file written as a Camtrap DP package (the embedded world, a LILA
    set): one deployment per location (a file without locations gets one), each image a medium
    (the file linked, else copied, under ``media/``), each annotation a media-level observation
    (an ``empty``/``blank``/``nothing`` category becomes ``blank``, any other its
    ``scientificName``; pixel boxes become relative ones where the image has width and height).
    Frames of a sequence share an ``eventID``; timestamps come from ``datetime`` where it parses,
    else are made up ``gap_s`` apart (the package then needs no clock to keep its sequences)."""
    index = load_cct(json_path, image_root, multi_label="per_category")
    package_dir = Path(package_dir)
    start = datetime(2020, 1, 1, tzinfo=timezone.utc)
    deployments, media, observations, dep_of = [], [], [], {}
    for k, (iid, im) in enumerate(index.images.items()):
        loc = str(im.get("location", "site"))
        if loc not in dep_of:
            dep_of[loc] = f"dep-{len(dep_of):03d}"
            deployments.append({"deploymentID": dep_of[loc], "locationID": loc, "locationName": loc,
                                "latitude": 0.0, "longitude": 0.0, "deploymentStart": start,
                                "deploymentEnd": start + timedelta(days=3650)})
        try:
            ts = camtrapdp._parse_time(str(im["datetime"]).replace(" ", "T"))
            ts = ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
        except (KeyError, ValueError):
            ts = start + timedelta(seconds=gap_s * k)
        ts = min(max(ts, start), start + timedelta(days=3650))
        rel = "media/" + im["file_name"].replace("\\", "/")
        dst = package_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            _link_or_copy(index.path_of(iid), dst)
        mid = str(iid)
        media.append({"mediaID": mid, "deploymentID": dep_of[loc], "timestamp": ts,
                      "filePath": rel, "filePublic": True, "fileName": Path(rel).name,
                      "fileMediatype": "image/png" if rel.lower().endswith(".png") else "image/jpeg"})
        event = str(im["seq_id"]) if im.get("seq_id") is not None else None
        for j, ann in enumerate(index.annotations_by_image.get(iid, [])):
            cname = index.categories[ann["category_id"]]
            row = {"observationID": f"{mid}-obs{j}", "deploymentID": dep_of[loc], "mediaID": mid,
                   "eventID": event, "eventStart": ts, "eventEnd": ts, "observationLevel": "media",
                   "classificationMethod": "human"}
            if cname.lower() in EMPTY_NAMES:
                row["observationType"] = "blank"
            else:
                row.update(observationType="animal", scientificName=cname, count=1)
            bbox, W, H = ann.get("bbox"), im.get("width"), im.get("height")
            if bbox and W and H:
                x, y, w, h = bbox
                x, y = max(0.0, x / W), max(0.0, y / H)
                row.update(bboxX=x, bboxY=y, bboxWidth=min(w / W, 1 - x), bboxHeight=min(h / H, 1 - y))
            observations.append(row)
    return write_camtrapdp(package_dir, deployments, media, observations,
                           name=name or Path(json_path).stem.lower().replace("_", "-"))


def add_observations(src_package, dst_dir, rows: list[dict]) -> Path:
    """A copy of ``src_package`` in ``dst_dir`` (which must not exist) with machine observations
    appended; returns the new ``datapackage.json``.

    Each row needs ``mediaID`` and ``observationType``, and normally ``scientificName``,
    ``classificationProbability`` and ``classifiedBy``; the rest is filled in: ``observationID``
    (``machine-<k>``, or given), the medium's ``deploymentID``, ``eventStart = eventEnd`` = its
    timestamp, ``observationLevel`` media, ``classificationMethod`` machine and
    ``classificationTimestamp`` now. Media files are hard-linked where the file system allows,
    else copied. The copy is validated; if it fails, ``dst_dir`` is removed and the error raised.
    """
    src = camtrapdp.read_camtrapdp(src_package)
    dst_dir = Path(dst_dir)
    if dst_dir.exists():
        raise FileExistsError(f"dst_dir={str(dst_dir)!r} exists; add_observations writes a new copy")
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"rows: expected a non-empty list of dicts, got {rows!r:.80}")
    taken = {o["observationID"] for o in src.observations}
    now = datetime.now(timezone.utc)
    new = []
    for k, r in enumerate(rows):
        if not isinstance(r, dict) or "mediaID" not in r or "observationType" not in r:
            raise ValueError(f"rows[{k}]: needs 'mediaID' and 'observationType', got {r!r:.120}")
        if r["mediaID"] not in src.media:
            raise ValueError(f"rows[{k}]: mediaID={r['mediaID']!r} is not a medium of {src.path}")
        m = src.media[r["mediaID"]]
        row = {"observationID": f"machine-{k}", "deploymentID": m["deploymentID"],
               "eventStart": m["timestamp"], "eventEnd": m["timestamp"],
               "observationLevel": "media", "classificationMethod": "machine",
               "classificationTimestamp": now, **r}
        if row["observationID"] in taken:
            raise ValueError(f"rows[{k}]: observationID={row['observationID']!r} already exists")
        taken.add(row["observationID"])
        new.append(row)
    shutil.copytree(src.root, dst_dir, copy_function=_link_or_copy)
    try:
        obs_csv = dst_dir / src.files["observations"].relative_to(src.root)
        obs_csv.unlink()  # a link would write through to the source
        _write_table(obs_csv, "observations", src.observations + new)
        return camtrapdp.read_camtrapdp(dst_dir).path
    except (CamtrapDPError, ValueError):
        shutil.rmtree(dst_dir, ignore_errors=True)
        raise
