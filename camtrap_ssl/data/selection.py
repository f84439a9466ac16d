"""Which images of a dataset the study used: the per-dataset selection policies.

Serengeti through Norouzzadeh et al.'s filter (seasons 1-6, single species, no empty frames),
NACTI as a stratified sample that keeps the class distribution, ENA24 whole (checked), and class
filtering by name for any index. Each returns a new :class:`~camtrap_ssl.data.cct.CCTIndex`.
"""
from __future__ import annotations

import math
import random
import re
import warnings
from typing import Iterable, Sequence

from camtrap_ssl.data.cct import EMPTY_NAMES, CCTIndex, _sort_key

# Norouzzadeh et al. 2018 trained on seasons 1-6 (3.2M images), the seasons public at the time.
SERENGETI_SEASONS_NOROUZZADEH = ("S1", "S2", "S3", "S4", "S5", "S6")


ENA24_NUM_CLASSES = 23


def _resolve_classes(index: CCTIndex, names: Iterable, param: str) -> set:
    """Map class names (exact, then case-insensitive) or category ids to category ids."""
    by_name = {n: c for c, n in index.categories.items()}
    by_lower: dict = {}
    for c, n in index.categories.items():
        by_lower.setdefault(n.lower(), c)
    out = set()
    for name in names:
        if name in index.categories and not isinstance(name, str):
            out.add(name)
        elif name in by_name:
            out.add(by_name[name])
        elif isinstance(name, str) and name.lower() in by_lower:
            out.add(by_lower[name.lower()])
        else:
            raise ValueError(f"{param}: {name!r} is not a category of {index.json_path.name}; "
                             f"allowed: {sorted(index.categories.values())}")
    return out


def filter_classes(index: CCTIndex, keep: Sequence | None = None,
                   drop: Sequence | None = None) -> CCTIndex:
    """Keep only the samples of the named classes (names or category ids), or drop some.

    Names match exactly, else case-insensitively (LILA's Serengeti file spells ``guineafowl``
    where the study writes ``guineaFowl``). Unknown names raise, listing the allowed ones.
    """
    samples = index.samples
    if keep is not None:
        ids = _resolve_classes(index, keep, "keep")
        samples = [s for s in samples if s[1] in ids]
    if drop is not None:
        ids = _resolve_classes(index, drop, "drop")
        samples = [s for s in samples if s[1] not in ids]
    return index.with_samples(samples)


# -- dataset-specific filters ------------------------------------------------------------------
def _season_of(im: dict) -> str | None:
    if im.get("season"):
        return str(im["season"])
    m = re.match(r"^(S\d+)[/\\]", str(im["file_name"]))
    return m.group(1) if m else None


def serengeti_filter(index: CCTIndex, seasons: Sequence[str] | None =
                     SERENGETI_SEASONS_NOROUZZADEH, expected_classes: int | None = 48
                     ) -> CCTIndex:
    """Snapshot Serengeti as Norouzzadeh et al. (PNAS 2018) used it for species identification.

    Rule implemented (reconstructed from the paper, which describes it in prose):
    1. seasons 1-6 only (the 3.2M images public then), read from the image's ``season`` key or
       its ``S<k>/`` path prefix; images with no season information are kept (the synthetic world
       has none) and counted in a warning;
    2. drop images whose annotations name more than one distinct category: the paper trained
       identification on single-species images, the vast majority of non-empty ones;
    3. drop ``empty`` (and ``blank``/``nothing``): identification is only asked of images with an
       animal, about 25 % of the frames.
    What remains are the species present in S1-S6, 48 classes in the paper, about 757,000
    images. LILA withholds images of humans, so a LILA copy may yield fewer classes; a count other
    than ``expected_classes`` warns instead of failing (pass ``None`` to silence it).
    """
    keep_seasons = {s.upper() for s in seasons} if seasons is not None else None
    multi = {iid for iid, anns in index.annotations_by_image.items()
             if len({a["category_id"] for a in anns}) > 1}
    empty = {c for c, n in index.categories.items() if n.lower() in EMPTY_NAMES}
    samples, unknown_season = [], set()
    for iid, c in index.samples:
        if iid in multi or c in empty:
            continue
        if keep_seasons is not None:
            season = _season_of(index.images[iid])
            if season is None:
                unknown_season.add(iid)
            elif season.upper() not in keep_seasons:
                continue
        samples.append((iid, c))
    if unknown_season:
        warnings.warn(f"serengeti_filter: {len(unknown_season)} images of "
                      f"{index.json_path.name} carry no season; kept", stacklevel=2)
    out = index.with_samples(samples)
    if expected_classes is not None and out.num_classes != expected_classes:
        warnings.warn(f"serengeti_filter: {out.num_classes} classes remain, the study had "
                      f"{expected_classes}", stacklevel=2)
    return out


def sample_keep_distribution(index: CCTIndex, n: int = 750_000, seed: int = 0) -> CCTIndex:
    """Stratified random sample of ``n`` samples keeping the class distribution (NACTI's 750k).

    Each class gets ``n * share`` samples, rounded by largest remainder so the total is exactly
    ``n``; at least one per class is not forced, so classes rarer than ``1/n`` may vanish. If the
    index has no more than ``n`` samples it is returned unchanged.
    """
    if not isinstance(n, int) or n <= 0:
        raise ValueError(f"n={n!r} must be a positive int")
    total = len(index.samples)
    if total <= n:
        return index
    by_class: dict = {}
    for k, (_, c) in enumerate(index.samples):
        by_class.setdefault(c, []).append(k)
    classes = sorted(by_class, key=_sort_key)
    exact = [n * len(by_class[c]) / total for c in classes]
    alloc = [math.floor(e) for e in exact]
    order = sorted(range(len(classes)), key=lambda j: exact[j] - alloc[j], reverse=True)
    for j in order[: n - sum(alloc)]:
        alloc[j] += 1
    rng = random.Random(seed)
    chosen = []
    for c, a in zip(classes, alloc):
        chosen.extend(rng.sample(by_class[c], a))
    chosen.sort()
    return index.with_samples([index.samples[k] for k in chosen])


def ena24_check(index: CCTIndex, expected_classes: int = ENA24_NUM_CLASSES) -> CCTIndex:
    """ENA24 is used whole: 23 classes, about 10,000 images. Warn if the file disagrees."""
    if index.num_classes != expected_classes:
        warnings.warn(f"ENA24: {index.num_classes} classes in {index.json_path.name}, the study "
                      f"had {expected_classes}", stacklevel=2)
    return index
