"""The study's five real fine-tuning targets (SPEC section 2), loaded the way the study used them.

``load_paper_target("serengeti")`` returns an object with ``.train``, ``.val``, ``.classes``,
``.identity`` and ``.name``, the same shape as :class:`camtrap_ssl.data.datasets.Target`, so the same
fine-tuning code runs on the embedded stand-ins and on the real data.

* **Where the data live.** ``$CAMTRAP_SSL_DATA`` (default ``./data``), one folder per dataset as
  ``camtrap-ssl data download NAME --dest data/NAME`` leaves it: the COCO Camera Traps JSON
  (``<name>.json``, LILA's own file name, or the ``.subset.json`` a class/per-class download
  writes) beside the images at their relative paths. CIFAR lives in torchvision's layout under
  ``data/cifar10`` / ``data/cifar100``. A missing dataset fails at once naming the path looked
  at and the command that fetches it.
* **Selection** as the study: Serengeti through :func:`camtrap_ssl.data.selection.serengeti_filter`
  (Norouzzadeh et al.'s seasons 1-6, single-species, no empty frames); NACTI as a 750,000-sample
  stratified draw (:func:`camtrap_ssl.data.selection.sample_keep_distribution`); ENA24 whole.
* **Validation.** Serengeti's is the expert "gold standard" set where the dataset folder holds
  it. Best, the experts' labels themselves (Swanson et al. 2015, Dryad: ``gold_standard_data.csv``
  with ``CaptureEventID`` and ``Species`` columns, optionally ``gold_standard_events.csv`` mapping
  capture events to LILA sequences; see :func:`camtrap_ssl.data.splits.expert_gold_standard`):
  validation is then scored with the experts' species, "impossible" events dropped. A plain list
  of ids (``gold_standard_ids.txt``/``.json``/``.csv``, :func:`~camtrap_ssl.data.splits.gold_standard_split`)
  keeps the volunteers' labels, and ``identity["val_labels"]`` says so. Otherwise, and for the
  other camera-trap sets, a split by location, by sequence where a file has no locations, and by
  frame only when asked for (``split_by="frame"``): a file with neither is refused. CIFAR uses
  its official test set.
* **Information strip.** The bottom ``strip_fraction`` of every frame (100/1536, Norouzzadeh et
  al.'s 100 rows of a 2048 x 1536 Serengeti frame) is cut off before resizing
  (:mod:`camtrap_ssl.data.strip`).
* **Resize once.** Each side is decoded and resized once into a :mod:`camtrap_ssl.data.prepare` cache
  (``<dataset folder>/prepared/<size>px/<side>-<key>``, keyed by data, samples and size), so 25-50
  epochs read memory-mapped arrays instead of multi-megapixel JPEGs. Images that fail to decode
  are left out and listed in ``identity["bad_files"]``, which lands in every run's record.
"""
from __future__ import annotations

import csv
import warnings
from pathlib import Path

from camtrap_ssl.core import paths, provenance
from camtrap_ssl.core.profiles import SERENGETI_STRIP_FRACTION
from camtrap_ssl.data import cct, selection, splits, strip
from camtrap_ssl.data.cifar import cifar_dataset, expected_files
from camtrap_ssl.data.datasets import Target
from camtrap_ssl.data.lila import CATALOGUE
from camtrap_ssl.data.prepare import cache_key, prepare

__all__ = ["PAPER_TARGETS", "CAMTRAP_TARGETS", "SPLIT_CHOICES", "PaperTarget", "data_root",
           "dataset_dir", "find_json", "check_available", "load_paper_target"]

CAMTRAP_TARGETS = ("serengeti", "nacti", "ena24")
PAPER_TARGETS = CAMTRAP_TARGETS + ("cifar10", "cifar100")
SPLIT_CHOICES = ("auto", "gold_standard", "location", "sequence", "frame")
# the experts' labels first (Dryad's file name), then plain id lists
GOLD_STANDARD_FILES = ("gold_standard_data.csv", "gold_standard_ids.txt", "gold_standard_ids.json",
                       "gold_standard_ids.csv")
GOLD_STANDARD_EVENTS = "gold_standard_events.csv"
NACTI_SAMPLE = 750_000
ENV = "CAMTRAP_SSL_DATA"


# The same record as the embedded targets: name, train/val datasets, classes, identity.
PaperTarget = Target


def data_root(root=None) -> Path:
    """``root``, else ``$CAMTRAP_SSL_DATA``, else ``./data``."""
    return paths.data_root(root)


def _check_name(name: str) -> None:
    if name not in PAPER_TARGETS:
        raise ValueError(f"target={name!r} is not a paper target; allowed: {list(PAPER_TARGETS)}")


def dataset_dir(name: str, root=None) -> Path:
    _check_name(name)
    return data_root(root) / name


def _download_hint(name: str, folder: Path) -> str:
    if name in CAMTRAP_TARGETS:
        return (f"Download it (on a machine with internet) with\n  camtrap-ssl data download "
                f"{name} --dest {folder}\nor point ${ENV} at the folder that holds {name}/.")
    cls = "CIFAR10" if name == "cifar10" else "CIFAR100"
    return (f"Fetch it with\n  python -c \"import torchvision; torchvision.datasets.{cls}("
            f"'{folder}', download=True)\"\nor point ${ENV} at the folder that holds {name}/.")


def find_json(name: str, root=None) -> Path:
    """The dataset's COCO Camera Traps file: a subset file, ``<name>.json`` or LILA's name.

    A subset file comes first: ``camtrap-ssl data download --classes/--per-class`` writes it
    *beside* LILA's whole file, whose millions of images were not fetched (a later whole download
    removes it again).
    """
    if name not in CAMTRAP_TARGETS:
        raise ValueError(f"name={name!r}; camera-trap datasets: {list(CAMTRAP_TARGETS)}")
    folder = dataset_dir(name, root)
    lila_name = CATALOGUE[name]["json_name"]
    candidates = [folder / f"{name}.subset.json", folder / f"{Path(lila_name).stem}.subset.json",
                  folder / f"{name}.json", folder / lila_name]
    for path in candidates:
        if path.is_file():
            return path
    main = candidates[2]  # <name>.json, the name to put a file under by hand
    raise FileNotFoundError(f"{name}: no COCO Camera Traps file at {main} (also looked "
                            f"for {', '.join(p.name for p in candidates if p != main)}). "
                            + _download_hint(name, folder))


def check_available(name: str, root=None) -> Path:
    """Fail fast (no image decoded) if ``name``'s data are absent; return the file or folder."""
    _check_name(name)
    if name in CAMTRAP_TARGETS:
        return find_json(name, root)

    folder = dataset_dir(name, root)
    missing = [p for p in expected_files(name, folder) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{name}: missing {missing[0]} ({len(missing)} of the expected "
                                "files). " + _download_hint(name, folder))
    return folder


def _gold_standard_file(folder: Path, given) -> Path | None:
    if given is not None:
        return Path(given)
    return next((folder / f for f in GOLD_STANDARD_FILES if (folder / f).is_file()), None)


def _has_expert_labels(path: Path) -> bool:
    """Whether a gold-standard file carries labels (``CaptureEventID`` and ``Species`` columns)."""
    if path.suffix.lower() != ".csv" or not path.is_file():
        return False
    with open(path, newline="", encoding="utf-8-sig") as f:
        header = {splits.species_key(h) for h in next(csv.reader(f), [])}
    return {"captureeventid", "species"} <= header


def _split_kind(index) -> str:
    """Location where every image has one, else sequence where every image has one, else refuse."""
    ims = [index.images[i] for i in index.image_ids]
    if all(im.get("location") is not None for im in ims):
        return "location"
    if all(im.get("seq_id") is not None for im in ims):
        return "sequence"
    raise ValueError(f"{index.json_path}: images carry neither 'location' nor 'seq_id' throughout, "
                     "so a split would separate frames of one burst (leaking it across train and "
                     "validation); pass split_by='frame' to accept a per-frame split explicitly")


def _select(name: str, index, seed: int, nacti_sample: int):
    if name == "serengeti":
        return selection.serengeti_filter(index), "serengeti_filter (Norouzzadeh 2018: S1-S6, single species, no empty)"
    if name == "nacti":
        return (selection.sample_keep_distribution(index, nacti_sample, seed),
                f"stratified sample of {nacti_sample} keeping the class distribution (seed {seed})")
    return selection.ena24_check(index), "whole dataset"


def _load_camtrap(name, root, size, seed, split_by, val_fraction, gold_standard, nacti_sample,
                  progress, strip_fraction) -> PaperTarget:
    json_path = find_json(name, root)
    folder = json_path.parent
    gold = _gold_standard_file(folder, gold_standard) if name == "serengeti" else None
    if split_by == "gold_standard" and gold is None:
        where = gold_standard or folder / GOLD_STANDARD_FILES[0]
        raise FileNotFoundError(f"split_by='gold_standard' needs a list of gold-standard ids at "
                                f"{where} (or gold_standard=PATH); only Serengeti has one")
    index, selection = _select(name, cct.load_cct(json_path), seed, nacti_sample)
    if index.num_classes < 2:
        raise ValueError(f"{json_path}: {index.num_classes} class(es) left after selection "
                         f"({selection}); a classifier needs at least 2")
    val_labels, expert_report = "volunteers", None
    if split_by in ("auto", "gold_standard") and gold is not None:
        if _has_expert_labels(gold):
            events = folder / GOLD_STANDARD_EVENTS
            index, parts, expert_report = splits.expert_gold_standard(
                index, gold, events if events.is_file() else None)
            val_labels = "experts (Swanson et al. 2015 gold standard)"
        else:
            parts = splits.gold_standard_split(index, gold)
    else:
        by = _split_kind(index) if split_by in ("auto", "gold_standard") else split_by
        parts = splits.split(index, by=by, val_fraction=val_fraction, seed=seed)

    sides, bad = {}, []
    for side, ids in (("train", parts.train), ("val", parts.val)):
        key = cache_key(index, cct.sample_list(index, ids), size, strip_fraction)[:16]
        out = folder / "prepared" / f"{size}px" / f"{side}-{key}"
        sides[side] = prepare(index, ids, size, out, progress=progress,
                              strip_fraction=strip_fraction)
        bad.extend(sides[side].bad_files)
    identity = {
        "dataset": name, "json": str(json_path), "json_sha256": index.json_sha256,
        "selection": selection, "split": parts.by, "val_fraction": None if parts.by == "gold_standard"
        else val_fraction, "gold_standard_file": str(gold) if parts.by == "gold_standard" else None,
        "val_labels": val_labels, "gold_standard": expert_report,
        "strip_fraction": strip_fraction,
        "strip": strip.describe(strip_fraction, 1536) + " on a 2048 x 1536 original",
        "excluded_for_leakage": len(parts.excluded), "seed": seed, "size": size,
        "n_train": len(sides["train"]), "n_val": len(sides["val"]), "bad_files": sorted(bad),
    }
    return PaperTarget(name, sides["train"], sides["val"], list(index.class_names), identity)


def _load_cifar(name, root, size, verify_md5) -> PaperTarget:
    folder = check_available(name, root)
    verify_md5 = verify_md5 and not provenance.rehearsal()  # fabricated batches match no md5
    train = cifar_dataset(name, folder, train=True, size=size, verify_md5=verify_md5)
    val = cifar_dataset(name, folder, train=False, size=size, verify_md5=verify_md5)
    identity = {"dataset": name, "root": str(folder), "split": "official train/test",
                "size": size, "n_train": len(train), "n_val": len(val), "bad_files": [],
                **({"md5_verified": False} if not verify_md5 else {})}
    return PaperTarget(name, train, val, list(train.classes), identity)


def load_paper_target(name: str, data_root=None, size: int = 224, seed: int = 0,
                      split_by: str = "auto", val_fraction: float = 0.1, gold_standard=None,
                      nacti_sample: int = NACTI_SAMPLE, verify_md5: bool = True,
                      progress: bool = True,
                      strip_fraction: float = SERENGETI_STRIP_FRACTION) -> PaperTarget:
    """One of :data:`PAPER_TARGETS` at ``size`` pixels, ready for :func:`finetune`.

    ``split_by``: ``auto`` (gold standard where available, else location, else sequence, else
    refused), ``gold_standard``, ``location``, ``sequence`` or ``frame`` (explicitly only);
    CIFAR always uses its test set. ``val_fraction`` applies to location/sequence/frame splits;
    ``seed`` draws them (and NACTI's sample). ``strip_fraction``: the bottom share of each
    camera-trap frame cut off before resizing (0 keeps it). ``verify_md5=False`` only for
    fabricated CIFAR test files.
    """
    _check_name(name)
    if split_by not in SPLIT_CHOICES:
        raise ValueError(f"split_by={split_by!r}; allowed: {list(SPLIT_CHOICES)}")
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"size={size!r} must be a positive int")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction!r} must lie strictly between 0 and 1")
    strip.strip_rows(1536, strip_fraction)  # validates it before any work
    if name in CAMTRAP_TARGETS:
        return _load_camtrap(name, data_root, size, seed, split_by, val_fraction, gold_standard,
                             nacti_sample, progress, strip_fraction)
    if split_by not in ("auto",):
        warnings.warn(f"{name}: split_by={split_by!r} ignored; CIFAR uses its official test set",
                      stacklevel=2)
    return _load_cifar(name, data_root, size, verify_md5)
