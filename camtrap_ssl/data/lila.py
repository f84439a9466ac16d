"""LILA BC camera-trap datasets: the catalogue and a resumable downloader.

LILA serves every dataset from three mirrors with the same layout below the root (Google Cloud,
Azure, AWS); a dataset is a metadata file (COCO Camera Traps JSON, usually zipped) plus one URL
per image: ``<root><image_base><file_name>``. :func:`download_dataset` fetches the metadata,
optionally picks a class subset or N images per class, and fetches the images with a thread pool.

Why it is built this way:

* **Resume.** Serengeti alone is millions of files. Each file is written to ``<name>.part`` and
  renamed when complete, so an existing final file *is* a complete file and is skipped; an
  existing ``.part`` is continued with an HTTP ``Range`` request (if the server ignores Range, the
  file restarts from zero).
* **Integrity.** Where a checksum is known (``metadata_sha256`` in the catalogue) the metadata is
  verified; LILA does not publish per-image checksums, and truncated images are caught later by
  :class:`camtrap_ssl.data.cct.CCTDataset`'s scan.
* **Subsets** are written as their own COCO Camera Traps file (``<json stem>.subset.json``) so
  the loader never sees millions of images that were not fetched.
* **Offline**: a machine without internet gets one clear error naming the URL and what to do,
  not a stack of urllib exceptions. Every URL derives from ``base_url``, so tests (and users
  behind a mirror) point the same code at any server.

Catalogue provenance. The metadata and image paths below are LILA's published names as far as the
author knows them (the combined Serengeti file ``SnapshotSerengeti_S1-11_v2_1.json.zip`` and its
``snapshotserengeti-unzipped/`` image folder, ``ena24/ena24.json`` and ``ena24/images/``, NACTI's
``nacti-unzipped/``, ``nacti/nacti_metadata.1.14.json.zip``). **Unsure:** NACTI's metadata name
carries a version that LILA bumps on re-releases (check the LILA page), the per-season
Serengeti metadata names (not used; the combined file carries a ``season`` per image), and whether
ENA24's image folder is ``ena24/images/``. No checksums are published for these files, so
``metadata_sha256`` is ``None``. Nothing here could be checked online when this was written.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import urllib.parse
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from camtrap_ssl.core import download as dl
from camtrap_ssl.core.fileio import atomic_write_json

__all__ = ["CATALOGUE", "MIRRORS", "DEFAULT_MIRROR", "LilaDownloadError", "DownloadReport",
           "download_dataset", "add_cli", "IMAGE_TIMEOUT", "STALL", "FAIL_FAST"]

IMAGE_TIMEOUT = 120.0  # default deadline (s) per file: a camera-trap JPEG is a few MB at most
STALL = 30.0  # no byte for this long ends an attempt
FAIL_FAST = 8  # the first this-many image requests failing the same way stop the download

MIRRORS = {
    "gcp": "https://storage.googleapis.com/public-datasets-lila/",
    "azure": "https://lilawildlife.blob.core.windows.net/lila-wildlife/",
    "aws": "http://us-west-2.opendata.source.coop.s3.amazonaws.com/agentmorris/lila-wildlife/",
}
DEFAULT_MIRROR = "gcp"

# One entry per dataset. Paths are relative to a mirror root (or to --base-url).
CATALOGUE: dict[str, dict] = {
    "serengeti": {
        "title": "Snapshot Serengeti (seasons 1-11, v2.1)",
        "metadata": "snapshotserengeti-v-2-0/SnapshotSerengeti_S1-11_v2_1.json.zip",
        "metadata_sha256": None,
        "json_name": "SnapshotSerengeti_S1-11_v2_1.json",
        "image_base": "snapshotserengeti-unzipped/",
        "notes": "7.1M images, 61 categories, ~76% empty; per-season image zips also exist. "
                 "Filter with camtrap_ssl.data.selection.serengeti_filter (Norouzzadeh et al.'s 48 "
                 "classes, seasons 1-6).",
    },
    "nacti": {
        "title": "North American Camera Trap Images (NACTI)",
        "metadata": "nacti/nacti_metadata.1.14.json.zip",  # versioned name; may move on
        "metadata_sha256": None,
        "json_name": "nacti_metadata.json",
        "image_base": "nacti-unzipped/",
        "notes": "3.7M images; the study draws a 750k stratified sample "
                 "(camtrap_ssl.data.selection.sample_keep_distribution).",
    },
    "ena24": {
        "title": "ENA24-detection (Eastern North America)",
        "metadata": "ena24/ena24.json",
        "metadata_sha256": None,
        "json_name": "ena24.json",
        "image_base": "ena24/images/",  # unsure; the whole set is also one zip, ena24/ena24.zip
        "notes": "~10k images, 23 classes, boxes on every animal.",
    },
}


class LilaDownloadError(RuntimeError):
    """A download failed; the message names the URL and what to do."""


@dataclass
class DownloadReport:
    json_path: Path
    downloaded: int = 0
    skipped: int = 0  # already complete on disk
    failed: list = field(default_factory=list)  # (url, reason)


def _offline_message(url: str, reason) -> str:
    return (f"could not download {url} ({reason}). This machine looks offline or the file has "
            "moved. Run `camtrap-ssl data download NAME --dest DIR` on a machine with internet "
            "access and copy DIR here, or pass --base-url / --mirror to use another LILA mirror "
            f"({', '.join(MIRRORS)}); check the dataset page on https://lila.science if the name "
            "changed. Completed files are kept and partial ones resume.")


def _extract_json(zip_path: Path, out: Path) -> None:
    """Extract the (single) .json member of a metadata zip to ``out``, atomically."""
    with zipfile.ZipFile(zip_path) as zf:
        members = [m for m in zf.namelist() if m.lower().endswith(".json")]
        if not members:
            raise LilaDownloadError(f"{zip_path}: no .json file inside the metadata zip")
        member = next((m for m in members if Path(m).name == out.name), members[0])
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f, zf.open(member) as src:
                shutil.copyfileobj(src, f, 1 << 20)
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _select(data: dict, classes, per_class, seed: int) -> tuple[list, dict]:
    """Pick image ids for a class subset and/or a per-class cap; returns (ids, info)."""
    cats = {c["id"]: c["name"] for c in data["categories"]}
    by_image: dict = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], set()).add(a["category_id"])
    wanted = set(cats)
    if classes is not None:
        lower = {n.lower(): c for c, n in cats.items()}
        missing = [n for n in classes if n.lower() not in lower]
        if missing:
            raise ValueError(f"classes: {missing} not in this dataset; allowed: "
                             f"{sorted(cats.values())}")
        wanted = {lower[n.lower()] for n in classes}
    rng = random.Random(seed)
    chosen: set = set()
    for c in sorted(wanted, key=str):
        ids = sorted((i for i, cs in by_image.items() if c in cs), key=str)
        if per_class is not None and len(ids) > per_class:
            ids = rng.sample(ids, per_class)
        chosen.update(ids)
    order = [im["id"] for im in data["images"] if im["id"] in chosen]
    return order, {"classes": classes, "per_class": per_class, "seed": seed}


def download_dataset(name: str, dest, classes=None, per_class: int | None = None,
                     base_url: str | None = None, workers: int = 8, seed: int = 0,
                     timeout: float = IMAGE_TIMEOUT, catalogue: dict | None = None,
                     images: bool = True, progress: bool = True) -> DownloadReport:
    """Fetch a LILA dataset's metadata and (a subset of) its images into ``dest``.

    ``classes``: names to keep (case-insensitive); ``per_class``: at most N images per class,
    drawn with ``seed``. Either makes a subset file ``<json stem>.subset.json`` in ``dest``; the
    report's ``json_path`` is the file to give :func:`camtrap_ssl.data.cct.load_cct`. Images land at
    ``dest/<file_name>``. ``base_url`` replaces the mirror root (``MIRRORS`` names, or any URL).
    Failed images are listed in the report (rerun to retry); an unreachable server raises
    :class:`LilaDownloadError`, as does a batch whose first ``FAIL_FAST`` image requests all fail
    the same way. ``timeout`` is each image's overall deadline in seconds (the metadata gets ten
    times as long); a server that sends nothing for ``min(STALL, timeout)`` s is given up on.
    """
    catalogue = CATALOGUE if catalogue is None else catalogue
    if name not in catalogue:
        raise ValueError(f"name={name!r} is not a known dataset; allowed: {sorted(catalogue)}")
    if per_class is not None and (not isinstance(per_class, int) or per_class <= 0):
        raise ValueError(f"per_class={per_class!r} must be a positive int or None")
    if not isinstance(workers, int) or workers <= 0:
        raise ValueError(f"workers={workers!r} must be a positive int")
    if not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
        raise ValueError(f"timeout={timeout!r} must be a positive number of seconds")
    if isinstance(classes, str):
        classes = [c for c in classes.split(",") if c]
    entry = catalogue[name]
    root = MIRRORS.get(base_url or DEFAULT_MIRROR, base_url)
    if not root.endswith("/"):
        root += "/"
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)

    meta_url = urllib.parse.urljoin(root, entry["metadata"])
    meta_file = dest / Path(entry["metadata"]).name
    json_path = dest / entry["json_name"]
    data = _read_json(json_path)
    if data is None:  # absent, or truncated/corrupt (then refetched: it would never heal)
        json_path.unlink(missing_ok=True)
        meta_file.unlink(missing_ok=True)
        _fetch_metadata(meta_url, meta_file, json_path, entry, timeout)
        data = _read_json(json_path)
        if data is None:
            raise LilaDownloadError(f"{meta_url}: the downloaded metadata {json_path} is not "
                                    "valid JSON; the mirror may be serving an error page, try "
                                    f"another with --mirror ({', '.join(MIRRORS)})")
    report = DownloadReport(json_path=json_path)
    if classes is not None or per_class is not None:
        ids, sel = _select(data, classes, per_class, seed)
        keep = set(ids)
        subset = {
            "info": {**data.get("info", {}), "camtrap_ssl_subset": sel},
            "images": [im for im in data["images"] if im["id"] in keep],
            "categories": data["categories"],
            "annotations": [a for a in data["annotations"] if a["image_id"] in keep],
        }
        report.json_path = dest / f"{json_path.stem}.subset.json"
        atomic_write_json(report.json_path, subset)
        todo = subset["images"]
    else:
        todo = data["images"]
        # a subset file left by an earlier subset download would shadow the whole set in the loader
        (dest / f"{json_path.stem}.subset.json").unlink(missing_ok=True)
    if not images:
        return report

    def rel_of(im) -> str:
        return str(im["file_name"]).replace("\\", "/")

    def one(im):
        rel = rel_of(im)
        if rel.startswith("/") or ".." in rel.split("/"):
            raise ValueError(f"refusing file_name {rel!r} outside {dest}")
        url = urllib.parse.urljoin(root, entry["image_base"] + urllib.parse.quote(rel))
        return dl.fetch(url, dest / rel, timeout=timeout, stall=min(STALL, timeout))

    # complete files are counted, not requested, so the early stop judges real attempts only
    missing = [im for im in todo if not (dest / rel_of(im)).is_file()]
    report.skipped = len(todo) - len(missing)
    todo = missing
    fail_fast = dl.FailFast(min(FAIL_FAST, len(todo)) or 1)
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = {pool.submit(one, im): im for im in todo}
        for fut in tqdm(as_completed(futures), total=len(futures), desc=f"{name} images",
                        disable=not progress):
            im = futures[fut]
            try:
                fetched = fut.result()
            except (*dl.NETWORK_ERRORS, ValueError) as e:
                report.failed.append((str(im["file_name"]), str(e)))
                if fail_fast.record(e):
                    raise LilaDownloadError(
                        f"stopped: the first {fail_fast.k} image downloads all failed the same "
                        f"way ({dl.failure_kind(e)}), so the rest would too. First: "
                        f"{report.failed[0][0]}: {report.failed[0][1]}. " + _offline_message(urllib.parse.urljoin(root, entry["image_base"]), e))
                continue
            fail_fast.record(None)
            if fetched:
                report.downloaded += 1
            else:
                report.skipped += 1
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return report


def _read_json(path: Path):
    """The parsed JSON at ``path``, or None if it is absent or not valid (truncated) JSON."""
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):  # JSONDecodeError is a ValueError
        return None


def _fetch_metadata(meta_url: str, meta_file: Path, json_path: Path, entry: dict,
                    timeout: float) -> None:
    try:
        # the metadata is one large file (Serengeti's zip is ~150 MB): ten image deadlines
        dl.fetch(meta_url, meta_file, timeout=10 * timeout, stall=min(STALL, timeout),
                 sha256=entry.get("metadata_sha256"))
    except dl.ChecksumError as e:
        raise LilaDownloadError(str(e)) from None
    except dl.NETWORK_ERRORS as e:
        raise LilaDownloadError(_offline_message(meta_url, e)) from None
    try:
        if meta_file.suffix.lower() == ".zip":
            _extract_json(meta_file, json_path)
        elif meta_file != json_path:
            os.replace(meta_file, json_path)
    except zipfile.BadZipFile as e:
        meta_file.unlink(missing_ok=True)
        raise LilaDownloadError(f"{meta_url}: not a valid zip ({e}); it was deleted, rerun to "
                                "fetch it again") from None


# -- CLI backend -------------------------------------------------------------------------------
def _cli_download(args: argparse.Namespace) -> int:
    try:
        report = download_dataset(args.name, args.dest, classes=args.classes,
                                  per_class=args.per_class, base_url=args.base_url,
                                  workers=args.workers, seed=args.seed, timeout=args.timeout,
                                  images=not args.metadata_only)
    except (ValueError, LilaDownloadError, OSError) as e:
        raise SystemExit(f"camtrap-ssl data download: {e}") from None
    print(f"metadata: {report.json_path}")
    print(f"images: {report.downloaded} downloaded, {report.skipped} already complete, "
          f"{len(report.failed)} failed")
    for fname, reason in report.failed[:20]:
        print(f"  failed {fname}: {reason}")
    return 1 if report.failed else 0


def _cli_list(args: argparse.Namespace) -> int:
    for key, entry in CATALOGUE.items():
        print(f"{key:10s} {entry['title']}\n{'':10s} {entry['notes']}")
    return 0


def _positive(kind):
    """An argparse type: a finite number > 0 of ``kind``, else a one-line error."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value
    parse.__name__ = f"positive {kind.__name__}"
    return parse


def add_cli(subparsers) -> None:
    """Add ``download`` and ``list`` to an argparse subparsers object (``camtrap-ssl data``).

    Each sets ``func`` (call ``args.func(args)``; it returns an exit code).
    """
    p = subparsers.add_parser("download", help="download a LILA camera-trap dataset")
    p.add_argument("name", choices=sorted(CATALOGUE))
    p.add_argument("--dest", required=True, help="folder for metadata and images")
    p.add_argument("--classes", default=None, help="comma-separated class names to keep")
    p.add_argument("--per-class", type=_positive(int), default=None,
                   help="at most N images per class")
    p.add_argument("--base-url", "--mirror", dest="base_url", default=None,
                   help=f"mirror name ({', '.join(MIRRORS)}) or root URL")
    p.add_argument("--workers", type=_positive(int), default=8, help="parallel downloads")
    p.add_argument("--timeout", type=_positive(float), default=IMAGE_TIMEOUT,
                   help=f"deadline in seconds for each image (default {IMAGE_TIMEOUT:g}; the "
                        f"metadata gets 10x); no data for min({STALL:g}, TIMEOUT) s also ends it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--metadata-only", action="store_true", help="fetch only the JSON")
    p.set_defaults(func=_cli_download)
    q = subparsers.add_parser("list", help="list the LILA datasets this package knows")
    q.set_defaults(func=_cli_list)
