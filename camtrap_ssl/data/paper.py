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
* **Validation.** Serengeti's is the expert "gold standard" set when a list of its ids sits in the
  dataset folder (``gold_standard_ids.txt``/``.json``/``.csv``, see
  :func:`camtrap_ssl.data.splits.gold_standard_split`); otherwise, and for the other camera-trap sets, a
  split by location (by sequence where a file has no locations), never by frame. CIFAR uses its
  official test set.
* **Resize once.** Each side is decoded and resized once into a :mod:`camtrap_ssl.data.prepare` cache
  (``<dataset folder>/prepared/<size>px/<side>-<key>``, keyed by data, samples and size), so 25-50
  epochs read memory-mapped arrays instead of multi-megapixel JPEGs. Images that fail to decode
  are left out and listed in ``identity["bad_files"]``, which lands in every run's record.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from camtrap_ssl.core import paths
from camtrap_ssl.data import cct, selection, splits
from camtrap_ssl.data.cifar import cifar_dataset, expected_files
from camtrap_ssl.data.datasets import Target
from camtrap_ssl.data.lila import CATALOGUE
from camtrap_ssl.data.prepare import cache_key, prepare

__all__ = ["PAPER_TARGETS", "CAMTRAP_TARGETS", "SPLIT_CHOICES", "PaperTarget", "data_root",
           "dataset_dir", "find_json", "check_available", "load_paper_target"]

CAMTRAP_TARGETS = ("serengeti", "nacti", "ena24")
PAPER_TARGETS = CAMTRAP_TARGETS + ("cifar10", "cifar100")
SPLIT_CHOICES = ("auto", "gold_standard", "location", "sequence")
GOLD_STANDARD_FILES = ("gold_standard_ids.txt", "gold_standard_ids.json", "gold_standard_ids.csv")
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
    """The dataset's COCO Camera Traps file: ``<name>.json``, LILA's name, or a subset file."""
    if name not in CAMTRAP_TARGETS:
        raise ValueError(f"name={name!r}; camera-trap datasets: {list(CAMTRAP_TARGETS)}")
    folder = dataset_dir(name, root)
    lila_name = CATALOGUE[name]["json_name"]
    candidates = [folder / f"{name}.json", folder / lila_name,
                  folder / f"{name}.subset.json", folder / f"{Path(lila_name).stem}.subset.json"]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"{name}: no COCO Camera Traps file at {candidates[0]} (also looked "
                            f"for {', '.join(p.name for p in candidates[1:])}). "
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


def _select(name: str, index, seed: int, nacti_sample: int):
    if name == "serengeti":
        return selection.serengeti_filter(index), "serengeti_filter (Norouzzadeh 2018: S1-S6, single species, no empty)"
    if name == "nacti":
        return (selection.sample_keep_distribution(index, nacti_sample, seed),
                f"stratified sample of {nacti_sample} keeping the class distribution (seed {seed})")
    return selection.ena24_check(index), "whole dataset"


def _load_camtrap(name, root, size, seed, split_by, val_fraction, gold_standard, nacti_sample,
                  progress) -> PaperTarget:


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
    if split_by in ("auto", "gold_standard") and gold is not None:
        parts = splits.gold_standard_split(index, gold)
    else:
        by = split_by
        if by in ("auto", "gold_standard"):
            has_location = all(index.images[i].get("location") is not None for i in index.image_ids)
            by = "location" if has_location else "sequence"
        parts = splits.split(index, by=by, val_fraction=val_fraction, seed=seed)

    sides, bad = {}, []
    for side, ids in (("train", parts.train), ("val", parts.val)):
        key = cache_key(index, cct.sample_list(index, ids), size)[:16]
        out = folder / "prepared" / f"{size}px" / f"{side}-{key}"
        sides[side] = prepare(index, ids, size, out, progress=progress)
        bad.extend(sides[side].bad_files)
    identity = {
        "dataset": name, "json": str(json_path), "json_sha256": index.json_sha256,
        "selection": selection, "split": parts.by, "val_fraction": None if parts.by == "gold_standard"
        else val_fraction, "gold_standard_file": str(gold) if parts.by == "gold_standard" else None,
        "excluded_for_leakage": len(parts.excluded), "seed": seed, "size": size,
        "n_train": len(sides["train"]), "n_val": len(sides["val"]), "bad_files": sorted(bad),
    }
    return PaperTarget(name, sides["train"], sides["val"], list(index.class_names), identity)


def _load_cifar(name, root, size, verify_md5) -> PaperTarget:
    folder = check_available(name, root)
    train = cifar_dataset(name, folder, train=True, size=size, verify_md5=verify_md5)
    val = cifar_dataset(name, folder, train=False, size=size, verify_md5=verify_md5)
    identity = {"dataset": name, "root": str(folder), "split": "official train/test",
                "size": size, "n_train": len(train), "n_val": len(val), "bad_files": []}
    return PaperTarget(name, train, val, list(train.classes), identity)


def load_paper_target(name: str, data_root=None, size: int = 224, seed: int = 0,
                      split_by: str = "auto", val_fraction: float = 0.1, gold_standard=None,
                      nacti_sample: int = NACTI_SAMPLE, verify_md5: bool = True,
                      progress: bool = True) -> PaperTarget:
    """One of :data:`PAPER_TARGETS` at ``size`` pixels, ready for :func:`finetune`.

    ``split_by``: ``auto`` (gold standard where available, else location, else sequence),
    ``gold_standard``, ``location`` or ``sequence``; CIFAR always uses its test set.
    ``val_fraction`` applies to location/sequence splits; ``seed`` draws them (and NACTI's
    sample). ``verify_md5=False`` only for fabricated CIFAR test files.
    """
    _check_name(name)
    if split_by not in SPLIT_CHOICES:
        raise ValueError(f"split_by={split_by!r}; allowed: {list(SPLIT_CHOICES)}")
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"size={size!r} must be a positive int")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction!r} must lie strictly between 0 and 1")
    if name in CAMTRAP_TARGETS:
        return _load_camtrap(name, data_root, size, seed, split_by, val_fraction, gold_standard,
                             nacti_sample, progress)
    if split_by not in ("auto",):
        warnings.warn(f"{name}: split_by={split_by!r} ignored; CIFAR uses its official test set",
                      stacklevel=2)
    return _load_cifar(name, data_root, size, verify_md5)
