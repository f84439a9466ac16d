"""Train/validation splits of a COCO Camera Traps index that never leak a sequence or a site.

With ``by="sequence"`` a group is a sequence; with ``by="location"`` images that share a location
*or* a sequence are merged (union-find), so neither a location nor a sequence can straddle train
and validation. The Serengeti gold standard is a fixed validation set (:func:`gold_standard_split`).
"""
from __future__ import annotations

import json
import os
import random
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


def split(index: CCTIndex, by: str = "location", val_fraction: float = 0.2,
          seed: int = 0) -> Split:
    """Split the labelled images so that no sequence (and, by location, no location) crosses.

    Groups are shuffled with ``seed``; walking through them, a group goes to validation when
    that brings validation's share of the samples closer to ``val_fraction``. The achieved
    fraction is therefore approximate when groups are large (a few locations); both sides are
    never empty. Images without a ``seq_id`` are their own one-frame sequence.
    """
    if by not in ("location", "sequence"):
        raise ValueError(f"by={by!r}; allowed: ['location', 'sequence'] (never by frame)")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction!r} must lie strictly between 0 and 1")
    ids = index.image_ids
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
