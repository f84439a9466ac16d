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

Catalogue provenance. Every camera-trap set LILA publishes in COCO Camera Traps format is listed.
Metadata paths (relative to a mirror root) and the image and class counts *of the metadata file*
come from published tables of LILA's files (the README of GitHub bencevans/camera-trap-lila-public,
which tabulates each original metadata URL on LILA's Azure mirror with its counts, and a public
survey of LILA's sets giving image folders and licences); page names follow lila.science. The
Snapshot Safari image folders other than Karoo's ``KAR_public/`` are inferred by analogy. None of
it could be fetched here, so every entry says ``verified: False`` and lists in ``checked`` what a
published source showed. Counts include images of humans that LILA withholds; a download reports
them as failed. NACTI's metadata name carries a version that LILA bumps on re-releases. No
checksums are published, so ``metadata_sha256`` is ``None``. Eight further sets are listed with
counts but no metadata file name (``data list`` says so; download refuses them).
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

from camtrap_ssl.core import download as dl
from camtrap_ssl.core.fileio import atomic_write_json
from camtrap_ssl.core.progress import progress_bar

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

CDLA = "CDLA-Permissive-1.0"


def _entry(title, metadata, json_name, image_base, images, classes, page, notes="",
           licence=CDLA, boxes=False, checked=()):
    """One catalogue entry. ``images``/``classes``: counts in the published metadata file (as
    tabulated from the files, see the module docstring); ``checked``: which fields were seen in
    a published source; ``verified`` stays False until someone fetches the file itself."""
    return {"title": title, "metadata": metadata, "metadata_sha256": None, "json_name": json_name,
            "image_base": image_base, "images": images, "classes": classes, "licence": licence,
            "boxes": boxes, "page": f"https://lila.science/datasets/{page}", "notes": notes,
            "verified": False, "checked": list(checked)}


_SEEN = ("metadata", "images", "classes")  # metadata URL and counts seen in a published table
_SAFARI = "Snapshot Safari season 1; images of humans withheld. Image folder by analogy with Karoo's KAR_public/ (unchecked)."

# One entry per dataset. Paths are relative to a mirror root (or to --base-url).
CATALOGUE: dict[str, dict] = {
    "serengeti": _entry(
        "Snapshot Serengeti (seasons 1-11, v2.1)",
        "snapshotserengeti-v-2-0/SnapshotSerengeti_S1-11_v2_1.json.zip",
        "SnapshotSerengeti_S1-11_v2_1.json", "snapshotserengeti-unzipped/", 7_178_440, 61,
        "snapshot-serengeti", "~76% empty; per-season metadata also exists. Filter with "
        "camtrap_ssl.data.selection.serengeti_filter (Norouzzadeh et al.'s 48 classes, S1-S6).",
        checked=_SEEN + ("image_base",)),
    "nacti": _entry(
        "North American Camera Trap Images (NACTI)", "nacti/nacti_metadata.1.14.json.zip",
        "nacti_metadata.json", "nacti-unzipped/", 3_382_215, 59, "nacti",
        "Versioned metadata name (LILA may bump it); the study draws a 750k stratified sample "
        "(camtrap_ssl.data.selection.sample_keep_distribution).", checked=_SEEN + ("image_base",)),
    "ena24": _entry(
        "ENA24-detection (Eastern North America)", "ena24/ena24.json", "ena24.json",
        "ena24/images/", 9_676, 23, "ena24detection", "Boxes on every animal; images of humans "
        "withheld (ena24_public.json lists only the public ones).", boxes=True,
        checked=_SEEN + ("image_base",)),
    "caltech": _entry(
        "Caltech Camera Traps", "caltechcameratraps/labels/caltech_camera_traps.json.zip",
        "caltech_camera_traps.json", "caltech-unzipped/cct_images/", 243_100, 22,
        "caltech-camera-traps", "140 locations, US Southwest; boxes for 63k images in a separate "
        "file (caltech_bboxes_20200316.json).", checked=_SEEN + ("image_base",)),
    "channel_islands": _entry(
        "Channel Islands Camera Traps", "channel-islands-camera-traps/channel-islands-camera-traps.json.zip",
        "channel-islands-camera-traps.json", "channel-islands-camera-traps/images/", 245_529, 7,
        "channel-islands-camera-traps", "Coarse classes (rodent, fox, bird, skunk, ...); empty "
        "frames carry a whole-frame box.", boxes=True, checked=_SEEN + ("image_base",)),
    "desert_lion": _entry(
        "Desert Lion Conservation Camera Traps",
        "desert-lion-camera-traps/desert_lion_camera_traps.json.zip",
        "desert_lion_camera_traps.json", "desert-lion-camera-traps/annotated-imgs/", 63_468, 46,
        "desert-lion-conservation-camera-traps", "Namibia; no sequence ids, one location field.",
        checked=_SEEN + ("image_base",)),
    "idaho": _entry(
        "Idaho Camera Traps", "idaho-camera-traps/idaho-camera-traps.json.zip",
        "idaho-camera-traps.json", "idaho-camera-traps/public/", 1_535_725, 62,
        "idaho-camera-traps", "276 locations.", licence="Idaho Department of Fish and Game terms "
        "(no resale; see the page)", checked=_SEEN + ("image_base",)),
    "island_conservation": _entry(
        "Island Conservation Camera Traps",
        "islandconservationcameratraps/island_conservation_camera_traps_1.02.zip",
        "island_conservation_camera_traps_1.02.json", "islandconservationcameratraps/public/",
        127_410, 49, "island-conservation-camera-traps", "123 locations on 7 islands; ~65k boxes.",
        boxes=True, checked=_SEEN + ("image_base",)),
    "missouri": _entry(
        "Missouri Camera Traps", "missouricameratraps/missouri_camera_traps_set1_1.21.json.zip",
        "missouri_camera_traps_set1_1.21.json", "missouricameratraps/images/", 24_673, 21,
        "missouricameratraps", "~950 boxes (one per image even with several animals).",
        boxes=True, checked=_SEEN + ("image_base",)),
    "ohio_small_animals": _entry(
        "Ohio Small Animals", "osu-small-animals/osu-small-animals.json.zip",
        "osu-small-animals.json", "osu-small-animals/", 118_554, 46, "ohio-small-animals",
        "168 locations.", checked=_SEEN + ("image_base",)),
    "orinoquia": _entry(
        "Orinoquía Camera Traps", "orinoquia-camera-traps/orinoquia_camera_traps_metadata.zip",
        "orinoquia_camera_traps_metadata.json", "orinoquia-camera-traps/", 112_221, 58,
        "orinoquia-camera-traps", "Colombia, 49 locations; images of humans withheld.",
        checked=_SEEN + ("image_base",)),
    "swg": _entry(
        "SWG Camera Traps 2018-2020", "swg-camera-traps/swg_camera_traps.zip",
        "swg_camera_traps.json", "swg-camera-traps/", 2_039_657, 120, "swg-camera-traps",
        "Vietnam and Laos, 982 locations; boxes in separate files.", checked=_SEEN),
    "snapshot_camdeboo": _entry(
        "Snapshot Camdeboo", "snapshot-safari/CDB/SnapshotCamdeboo_S1_v1.0.json.zip",
        "SnapshotCamdeboo_S1_v1.0.json", "snapshot-safari/CDB/CDB_public/", 30_551, 43,
        "snapshot-camdeboo", _SAFARI, checked=_SEEN),
    "snapshot_enonkishu": _entry(
        "Snapshot Enonkishu", "snapshot-safari/ENO/SnapshotEnonkishu_S1_v1.0.json.zip",
        "SnapshotEnonkishu_S1_v1.0.json", "snapshot-safari/ENO/ENO_public/", 29_414, 39,
        "snapshot-enonkishu", _SAFARI, checked=_SEEN),
    "snapshot_karoo": _entry(
        "Snapshot Karoo", "snapshot-safari/KAR/SnapshotKaroo_S1_v1.0.json.zip",
        "SnapshotKaroo_S1_v1.0.json", "snapshot-safari/KAR/KAR_public/", 38_293, 38,
        "snapshot-karoo", "Snapshot Safari season 1; ~83% empty; images of humans withheld.",
        checked=_SEEN + ("image_base",)),
    "snapshot_kgalagadi": _entry(
        "Snapshot Kgalagadi", "snapshot-safari/KGA/SnapshotKgalagadi_S1_v1.0.json.zip",
        "SnapshotKgalagadi_S1_v1.0.json", "snapshot-safari/KGA/KGA_public/", 10_357, 31,
        "snapshot-kgalagadi", _SAFARI, checked=_SEEN),
    "snapshot_kruger": _entry(
        "Snapshot Kruger", "snapshot-safari/KRU/SnapshotKruger_S1_v1.0.json.zip",
        "SnapshotKruger_S1_v1.0.json", "snapshot-safari/KRU/KRU_public/", 10_604, 46,
        "snapshot-kruger", _SAFARI, checked=_SEEN),
    "snapshot_mountain_zebra": _entry(
        "Snapshot Mountain Zebra", "snapshot-safari/MTZ/SnapshotMountainZebra_S1_v1.0.json.zip",
        "SnapshotMountainZebra_S1_v1.0.json", "snapshot-safari/MTZ/MTZ_public/", 73_570, 54,
        "snapshot-mountain-zebra", _SAFARI, checked=_SEEN),
    "nz_trailcams": _entry(
        "Trail Camera Images of New Zealand Animals",
        "nz-trailcams/trail_camera_images_of_new_zealand_animals_1.00.json.zip",
        "trail_camera_images_of_new_zealand_animals_1.00.json", "nz-trailcams/", 2_453_840, 98,
        "nz-trailcams", "3,127 locations, no sequence ids.", checked=_SEEN + ("image_base",)),
    "wcs": _entry(
        "WCS Camera Traps", "wcs/wcs_camera_traps.json.zip", "wcs_camera_traps.json",
        "wcs-unzipped/", 1_369_991, 676, "wcscameratraps", "12 countries, 3,911 locations; "
        "boxes in separate files.", checked=_SEEN + ("image_base",)),
    "wellington": _entry(
        "Wellington Camera Traps", "wellingtoncameratraps/wellington_camera_traps.json.zip",
        "wellington_camera_traps.json", "wellington-unzipped/images/", 270_450, 17,
        "wellingtoncameratraps", "New Zealand, 215 locations.", checked=_SEEN + ("image_base",)),
    "oregon_critters": _entry(
        "Oregon Critters", "oregon-critters/oregon_critters.zip", "oregon_critters.json",
        "oregon-critters/", 99_909, 46, "oregon-critters", "Boxes with class labels on 91k "
        "images; train/val/test split in the metadata.", boxes=True,
        checked=("metadata", "image_base", "images", "classes")),
    "nkhotakota": _entry(
        "Nkhotakota Camera Traps", "nkhotakota-camera-traps/nkhotakota_camera_traps.json.zip",
        "nkhotakota_camera_traps.json", "nkhotakota-camera-traps/", 324_635, 46,
        "nkhotakota-camera-traps", "Malawi; ~49k boxes.", boxes=True,
        checked=("metadata", "image_base", "images", "classes")),
    "biome_health_maasai_mara": _entry(
        "Biome Health Project Maasai Mara 2018",
        "biome-health-project-maasai-mara-2018/biome-health-project-maasai-mara-2018.json",
        "biome-health-project-maasai-mara-2018.json", "biome-health-project-maasai-mara-2018/",
        37_075, 100, "biome-health-project-maasai-mara-2018", "Kenya.",
        checked=("metadata", "image_base", "images", "classes")),
}
# Published on LILA in COCO Camera Traps format too, but with no metadata file name we could see
# offline: listed (so `data list` is complete), not downloadable until someone fills it in.
for _key, _title, _images, _classes, _page, _lic in (
        ("california_small_animals", "California Small Animals", 2_278_071, 256, "california-small-animals", "CC-BY 4.0"),
        ("snapshot_safari_2024", "Snapshot Safari 2024 Expansion", 4_029_374, 131, "snapshot-safari-2024-expansion", CDLA),
        ("wsu_lynx", "WSU Lynx", 1_205_453, 26, "wsu-lynx", CDLA),
        ("ammonitor", "AMMonitor Camera Traps", 1_858_251, 77, "ammonitor-camera-traps", "public domain (ScienceBase)"),
        ("felidae", "Felidae Conservation Fund", 357_934, 66, "felidae-conservation-fund", CDLA),
        ("duck_pictures", "Duck Pictures in Wetlands", 675_948, 11, "duck-pictures-in-wetlands", CDLA),
        ("unsw_predators", "UNSW Predators", 131_802, 5, "unsw-predators", CDLA),
        ("seattleish", "Seattle(ish) Camera Traps", None, None, "seattleish-camera-traps", CDLA)):
    CATALOGUE[_key] = _entry(_title, None, None, None, _images, _classes, _page,
                             "Metadata file name unknown here: see the page.", licence=_lic,
                             checked=("images", "classes"))


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
    if not entry.get("metadata"):
        raise ValueError(f"name={name!r}: its metadata file name is not in this catalogue yet; "
                         f"see {entry.get('page', 'https://lila.science')} and pass the file to "
                         "camtrap_ssl.data.user.load_user_target once downloaded")
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
        for fut in progress_bar(as_completed(futures), total=len(futures), desc=f"{name} images",
                                show=progress):
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
        n = "?" if entry.get("images") is None else f"{entry['images']:,}"
        k = "?" if entry.get("classes") is None else entry["classes"]
        state = "verified" if entry.get("verified") else "unverified"
        dl_ok = "" if entry.get("metadata") else "; not downloadable yet"
        print(f"{key:24s} {entry['title']}\n{'':24s} {n} images, {k} classes, "
              f"{entry.get('licence', '?')}, {state}{dl_ok}\n{'':24s} {entry['notes']}")
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
    p.add_argument("name", choices=sorted(k for k, e in CATALOGUE.items() if e.get("metadata")))
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
