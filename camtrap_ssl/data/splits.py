"""Train/validation splits of a COCO Camera Traps index that never leak a sequence or a site.

With ``by="sequence"`` a group is a sequence; with ``by="location"`` images that share a location
*or* a sequence are merged (union-find), so neither a location nor a sequence can straddle train
and validation. A split by frame leaks the frames of one burst across the sides, so it is never a
fallback: ``by="sequence"`` refuses images without a ``seq_id``, and only an explicit
``by="frame"`` splits frame by frame (recorded as such in ``Split.by``, hence in every run record).

The Serengeti gold standard is a fixed validation set: :func:`gold_standard_split` from a list of
ids, :func:`expert_gold_standard` from the experts' labels themselves (Swanson et al. 2015).
"""
from __future__ import annotations

import csv
import json
import os
import random
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from camtrap_ssl.data.cct import CCTIndex, _sort_key


# -- splits ------------------------------------------------------------------------------------
@dataclass
class Split:
    """Image ids of each side. ``excluded``: labelled images left out of both to avoid leakage."""
    train: list
    val: list
    by: str
    excluded: list = field(default_factory=list)


class _UnionFind:
    def __init__(self):
        self.parent: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def _groups(index: CCTIndex, ids: list, by: str) -> dict:
    uf = _UnionFind()
    for iid in ids:
        im = index.images[iid]
        node = ("img", iid)
        uf.find(node)
        if by == "frame":
            continue
        if im.get("seq_id") is not None:
            uf.union(("seq", im["seq_id"]), node)
        if by == "location":
            if im.get("location") is None:
                raise ValueError(f"split(by='location'): image id={iid!r} in "
                                 f"{index.json_path.name} has no 'location'; use "
                                 "by='sequence' for this dataset")
            uf.union(("loc", im["location"]), node)
    groups: dict = {}
    for iid in ids:
        groups.setdefault(uf.find(("img", iid)), []).append(iid)
    return groups


SPLIT_KINDS = ("location", "sequence", "frame")


def _check_sequences(index: CCTIndex, ids: list) -> None:
    missing = [i for i in ids if index.images[i].get("seq_id") is None]
    if missing:
        raise ValueError(f"split(by='sequence'): {len(missing)} of the {len(ids)} labelled images "
                         f"of {index.json_path.name} have no 'seq_id' (e.g. id={missing[0]!r}), so "
                         "their bursts are unknown and a split would leak frames of one burst "
                         "across train and validation; pass by='frame' to accept that explicitly")


def split(index: CCTIndex, by: str = "location", val_fraction: float = 0.2,
          seed: int = 0) -> Split:
    """Split the labelled images so that no sequence (and, by location, no location) crosses.

    Groups are shuffled with ``seed``; walking through them, a group goes to validation when
    that brings validation's share of the samples closer to ``val_fraction``. The achieved
    fraction is therefore approximate when groups are large (a few locations); both sides are
    never empty. ``by="location"`` needs a location on every image (images without a ``seq_id``
    are then their own one-frame sequence); ``by="sequence"`` needs a ``seq_id`` on every image;
    ``by="frame"`` makes every image its own group and must be asked for.
    """
    if by not in SPLIT_KINDS:
        raise ValueError(f"by={by!r}; allowed: {list(SPLIT_KINDS)} ('frame' leaks bursts: only "
                         "when asked for)")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction!r} must lie strictly between 0 and 1")
    ids = index.image_ids
    if by == "sequence":
        _check_sequences(index, ids)
    weight: dict = {}
    for iid, _ in index.samples:
        weight[iid] = weight.get(iid, 0) + 1
    groups = list(_groups(index, ids, by).values())
    if len(groups) < 2:
        raise ValueError(f"split(by={by!r}): {index.json_path.name} has only {len(groups)} "
                         f"{by} group(s); cannot make both a train and a validation side")
    groups.sort(key=lambda g: _sort_key(g[0]))  # deterministic before shuffling
    random.Random(seed).shuffle(groups)
    target = val_fraction * sum(weight.values())
    take, n_val = [], 0
    for k, g in enumerate(groups):
        w = sum(weight[i] for i in g)
        if abs(n_val + w - target) < abs(n_val - target):  # only if it brings us closer
            take.append(k)
            n_val += w
    if not take:
        take = [0]
    if len(take) == len(groups):
        take.pop()
    chosen = set(take)
    val = [i for k in take for i in groups[k]]
    train = [i for k, g in enumerate(groups) if k not in chosen for i in g]
    return Split(train=train, val=val, by=by)


def _read_id_list(ids) -> list:
    if isinstance(ids, (str, os.PathLike)):
        path = Path(ids)
        if not path.is_file():
            raise FileNotFoundError(f"gold standard id list {path} does not exist")
        text = path.read_text()
        if path.suffix.lower() == ".json":
            obj = json.loads(text)
            if isinstance(obj, dict):
                for key in ("image_ids", "ids", "seq_ids"):
                    if key in obj:
                        return list(obj[key])
                raise ValueError(f"{path}: expected a list or an object with 'image_ids'")
            return list(obj)
        return [line.split(",")[0].strip() for line in text.splitlines() if line.strip()]
    return list(ids)


def gold_standard_split(index: CCTIndex, ids) -> Split:
    """Use an expert-labelled set as validation and everything else as training.

    ``ids``: image ids or sequence ids (a sequence id brings all its frames), as a list or a file
    (JSON list / ``{"image_ids": [...]}``, or text/CSV with one id per line, first column).
    Snapshot Serengeti's gold standard (Swanson et al. 2015, on Dryad) is published per capture
    event; map it to LILA image or sequence ids once and pass that list. Training leaves out every
    image that shares a sequence with a validation image (listed in ``excluded``).
    """
    wanted = {str(x) for x in _read_id_list(ids)}
    labelled = index.image_ids
    val = [i for i in labelled if str(i) in wanted
           or str(index.images[i].get("seq_id")) in wanted]
    if not val:
        raise ValueError(f"gold standard: none of the {len(wanted)} ids matches a labelled image "
                         f"or sequence id of {index.json_path.name}")
    val_set = set(val)
    val_seqs = {index.images[i].get("seq_id") for i in val} - {None}
    train, excluded = [], []
    for i in labelled:
        if i in val_set:
            continue
        (excluded if index.images[i].get("seq_id") in val_seqs else train).append(i)
    return Split(train=train, val=val, by="gold_standard", excluded=excluded)


# -- the Serengeti gold standard, scored with the experts' labels --------------------------------
IMPOSSIBLE = "impossible"


def species_key(name: str) -> str:
    """Species names compared without case or punctuation (Swanson's ``gazelleThomsons`` is
    LILA's ``gazellethomsons``)."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _read_csv(path: Path, need: dict[str, tuple[str, ...]]) -> tuple[list[dict], dict[str, str]]:
    """Rows of a CSV and, for each role in ``need``, the header that fills it (case-insensitive)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        header = reader.fieldnames or []
    by_norm = {species_key(h): h for h in header}
    found = {}
    for role, names in need.items():
        col = next((by_norm[species_key(n)] for n in names if species_key(n) in by_norm), None)
        if col is None:
            raise ValueError(f"{path}: needs a column {' or '.join(names)}; it has {list(header)}")
        found[role] = col
    return rows, found


def read_expert_labels(path) -> dict[str, set[str]]:
    """Capture event id -> the species the experts saw, from Swanson et al.'s gold standard.

    Format (Dryad doi:10.5061/dryad.5pt92, "Gold Standard Data", as its description gives the
    fields): a CSV with one row per (capture event, species) and columns ``CaptureEventID``,
    ``NumSpecies``, ``Species`` ("one of the 48 possibilities or 'impossible'") and ``Count``.
    Only ``CaptureEventID`` and ``Species`` are read; headers match without case or punctuation.
    We could not open the file itself here, so this is the format we accept, checked on load.
    """
    rows, col = _read_csv(path, {"event": ("CaptureEventID",), "species": ("Species",)})
    events: dict[str, set[str]] = {}
    for r in rows:
        event, species = str(r[col["event"]]).strip(), str(r[col["species"]]).strip()
        if event and species:
            events.setdefault(event, set()).add(species)
    if not events:
        raise ValueError(f"{path}: no (CaptureEventID, Species) row")
    return events


def read_event_map(path) -> dict[str, list[str]]:
    """Capture event id -> LILA sequence or image ids, from a CSV with ``CaptureEventID`` and
    ``seq_id`` (or ``image_id``) columns: one row per pair."""
    rows, col = _read_csv(path, {"event": ("CaptureEventID",), "id": ("seq_id", "image_id")})
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(str(r[col["event"]]).strip(), []).append(str(r[col["id"]]).strip())
    return out


def expert_gold_standard(index: CCTIndex, labels, events=None) -> tuple[CCTIndex, Split, dict]:
    """Validate on the gold standard *with the experts' labels* (Swanson et al. 2015).

    ``labels``: the experts' CSV (:func:`read_expert_labels`). Capture events map to images so:
    a Snapshot Serengeti capture event is the burst of frames one trigger of one camera took, which
    LILA's COCO Camera Traps file calls a sequence (``seq_id``). With ``events`` (a CSV,
    :func:`read_event_map`) each event names its LILA sequence or image ids; without it the
    event ids must *be* LILA sequence (or image) ids. Every labelled frame of a matched sequence
    takes the experts' species in place of the volunteers'. Events the experts called
    "impossible" are dropped, as are events with several species (the single-species selection
    of Norouzzadeh et al.), events whose species is not a category of the file, and events with no
    labelled image here; all their frames stay out of training too (``Split.excluded``), as do
    the other frames of validation sequences. Returns ``(relabelled index, split, report)``; the
    report (counts of each case and of frames whose label changed) goes into the target identity.
    """
    experts = read_expert_labels(labels)
    mapping = read_event_map(events) if events is not None else None
    labelled = index.image_ids
    by_key: dict[str, list] = {}
    for i in labelled:
        by_key.setdefault(str(i), []).append(i)
        seq = index.images[i].get("seq_id")
        if seq is not None:
            by_key.setdefault(str(seq), []).append(i)
    cat_of = {species_key(name): cid for cid, name in index.categories.items()}
    report = {"labels_file": str(labels), "events_file": None if events is None else str(events),
              "events": len(experts), "impossible": 0, "multi_species": 0,
              "unknown_species": 0, "unmatched": 0, "scored_events": 0, "relabelled_frames": 0}
    expert_label: dict = {}
    held_out: set = set()
    for event, species in experts.items():
        keys = mapping.get(event, []) if mapping is not None else [event]
        frames = list(dict.fromkeys(i for k in keys for i in by_key.get(str(k), [])))
        held_out.update(frames)
        if any(species_key(s) == IMPOSSIBLE for s in species):
            report["impossible"] += 1
        elif len(species) > 1:
            report["multi_species"] += 1
        elif species_key(next(iter(species))) not in cat_of:
            report["unknown_species"] += 1
        elif not frames:
            report["unmatched"] += 1
        else:
            report["scored_events"] += 1
            cid = cat_of[species_key(next(iter(species)))]
            for i in frames:
                expert_label[i] = cid
    if not expert_label:
        raise ValueError(f"gold standard {labels}: none of its {len(experts)} capture events "
                         f"matches a labelled image or sequence of {index.json_path.name} with a "
                         f"usable expert label ({report})")
    volunteers: dict = {}
    for i, c in index.samples:
        volunteers.setdefault(i, set()).add(c)
    report["relabelled_frames"] = sum(volunteers[i] != {c} for i, c in expert_label.items())
    # one sample per validation frame, the experts' (dict.fromkeys keeps order, drops repeats)
    samples = dict.fromkeys((i, expert_label.get(i, c)) for i, c in index.samples)
    relabelled = index.with_samples(list(samples))
    val = [i for i in labelled if i in expert_label]
    val_seqs = {index.images[i].get("seq_id") for i in val} - {None}
    train, excluded = [], []
    for i in labelled:
        if i in expert_label:
            continue
        out = i in held_out or index.images[i].get("seq_id") in val_seqs
        (excluded if out else train).append(i)
    return relabelled, Split(train=train, val=val, by="gold_standard", excluded=excluded), report


# -- splits of data we did not make ----------------------------------------------------------------
MIN_LOCATIONS = 5  # a split by location needs at least this many sites (and every class at both sides)
USER_SPLITS = ("auto", "location", "sequence", "frame")


def _class_groups(index: CCTIndex, groups: list) -> dict:
    """class name -> indices of the groups holding a sample of it."""
    where = {i: g for g, ids in enumerate(groups) for i in ids}
    out: dict = {}
    for iid, c in index.samples:
        out.setdefault(index.categories[c], set()).add(where[iid])
    return out


def _covering_split(index: CCTIndex, groups: list, val_fraction: float, seed: int):
    """Assign groups so that every class has a group on both sides: rarest classes first, each
    gets one of its groups in validation and keeps one in training; the rest fills validation
    towards ``val_fraction``. ``None`` where the groups cannot cover every class twice."""
    groups = sorted(groups, key=lambda g: _sort_key(g[0]))
    random.Random(seed).shuffle(groups)
    weight = {g: 0 for g in range(len(groups))}
    where = {i: g for g, ids in enumerate(groups) for i in ids}
    for iid, _ in index.samples:
        weight[where[iid]] += 1
    by_class = _class_groups(index, groups)
    side: dict = {}
    for name, gs in sorted(by_class.items(), key=lambda kv: (len(kv[1]), kv[0])):
        if len(gs) < 2:
            return None
        order = sorted(gs)
        if not any(side.get(g) == "val" for g in order):
            free = [g for g in order if g not in side]
            if not free:
                return None
            side[free[0]] = "val"
        if not any(side.get(g, "train") == "train" for g in order):
            return None
        keep = next((g for g in order if side.get(g) == "train"), None)
        if keep is None:
            side[next(g for g in order if g not in side)] = "train"
    target, n_val = val_fraction * sum(weight.values()), sum(weight[g] for g, s in side.items() if s == "val")
    for g in range(len(groups)):
        if g not in side and abs(n_val + weight[g] - target) < abs(n_val - target):
            side[g] = "val"
            n_val += weight[g]
    val = [i for g, ids in enumerate(groups) if side.get(g) == "val" for i in ids]
    train = [i for g, ids in enumerate(groups) if side.get(g, "train") == "train" for i in ids]
    return val, train


def split_user(index: CCTIndex, how: str = "auto", val_fraction: float = 0.2,
               seed: int = 0) -> tuple[Split, dict]:
    """Split a file we did not make so that every class lies on both sides, without leakage.

    ``how="auto"``: by location where every labelled image has one, there are at least
    :data:`MIN_LOCATIONS` locations and the location groups can put every class on both sides;
    otherwise by sequence (with a warning naming the location count); refused, with the counts,
    when no class-covering split by sequence exists either. ``"location"``/``"sequence"`` insist on
    that kind; ``"frame"`` (asked for only) splits image by image. Returns ``(split, record)``;
    the record says what was tried and why it was chosen.
    """
    if how not in USER_SPLITS:
        raise ValueError(f"split={how!r}; allowed: {list(USER_SPLITS)} ('frame' only when asked)")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction!r} must lie strictly between 0 and 1")
    ids = index.image_ids
    locations = {index.images[i].get("location") for i in ids}
    n_loc = len(locations - {None})
    has_loc = None not in locations
    has_seq = all(index.images[i].get("seq_id") is not None for i in ids)
    record = {"locations": n_loc, "min_locations": MIN_LOCATIONS}
    reasons = []
    kinds = {"auto": ("location", "sequence"), "location": ("location",),
             "sequence": ("sequence",), "frame": ("frame",)}[how]
    for by in kinds:
        if by == "location" and not has_loc:
            reasons.append(f"by location: {sum(index.images[i].get('location') is None for i in ids)}"
                           " labelled images have no location")
            continue
        if by == "location" and n_loc < MIN_LOCATIONS:
            reasons.append(f"by location: {n_loc} locations, fewer than {MIN_LOCATIONS}")
            continue
        if by == "sequence" and not has_seq:
            n = sum(index.images[i].get("seq_id") is None for i in ids)
            reasons.append(f"by sequence: {n} of {len(ids)} labelled images have no sequence/event id")
            continue
        groups = list(_groups(index, ids, by).values())
        chosen = _covering_split(index, groups, val_fraction, seed)
        if chosen is None:
            few = {c: len(g) for c, g in _class_groups(index, groups).items() if len(g) < 2}
            counts = index.class_counts()
            detail = ", ".join(f"{c!r} ({counts[c]} images in {n} {by} group)" for c, n in few.items())
            reasons.append(f"by {by}: " + (f"class(es) with fewer than 2 {by} groups: {detail}"
                                           if few else "the groups cannot put every class on both sides"))
            continue
        val, train = chosen
        if by == "sequence" and how == "auto":
            warnings.warn(f"{index.json_path.name}: split by sequence, not location ("
                          f"{reasons[-1] if reasons else ''}); validation sites are also seen in "
                          "training", stacklevel=3)
        record.update(by=by, tried=reasons, n_groups=len(groups))
        return Split(train=train, val=val, by=by), record
    raise ValueError(f"{index.json_path}: no honest split (split={how!r}): " + "; ".join(reasons)
                     + ". Drop rare classes with min_images=N or classes=[...], or pass "
                     "split='frame' to accept splitting bursts across train and validation")
