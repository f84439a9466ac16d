"""The record every fine-tuning target is: two in-memory datasets, class names, an identity.

Embedded stand-ins (:mod:`camtrap_ssl.data.embedded`) and the study's real datasets
(:mod:`camtrap_ssl.data.paper`) both return a :class:`Target`, so the fine-tuning code has one
input type whatever the data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch


class ArrayDataset(torch.utils.data.Dataset):
    """uint8 N x 3 x H x W images (kept small in memory) -> float [0, 1] tensors, labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor | None = None):
        self.images, self.labels, self.masks = images, labels, masks

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i].float().div(255), self.labels[i]

    def get_batch(self, idx):
        """A whole batch in one indexing operation (the fine-tuning loop's fast path)."""
        return self.images[idx].float().div(255), self.labels[idx]


class IndexedView(torch.utils.data.Dataset):
    """The samples ``indices`` of ``base``, in that order (an index may repeat)."""

    def __init__(self, base, indices):
        self.base, self.indices = base, torch.as_tensor(np.asarray(indices), dtype=torch.long)
        self.labels = torch.as_tensor(base.labels)[self.indices]

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.base[int(self.indices[i])]

    def get_batch(self, idx):
        idx = self.indices[torch.as_tensor(idx, dtype=torch.long)]
        if hasattr(self.base, "get_batch"):
            return self.base.get_batch(idx)
        items = [self.base[int(i)] for i in idx]
        return torch.stack([x for x, _ in items]), torch.as_tensor([y for _, y in items])


def stratified_fraction(labels, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a class-stratified ``fraction`` of ``labels``: ``ceil(fraction * n_c)``
    (at least one) of each class ``c``, the first ones of a permutation of that class drawn from
    ``(seed, c)``. For one seed a smaller fraction is a subset of a larger one (nested)."""
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) \
            or not 0 < fraction <= 1:
        raise ValueError(f"label_fraction={fraction!r} must be a number in (0, 1]")
    labels = np.asarray(labels)
    keep = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        order = members[np.random.default_rng([int(seed), int(c)]).permutation(len(members))]
        keep.append(order[:max(1, math.ceil(fraction * len(members) - 1e-9))])
    return np.sort(np.concatenate(keep))


def with_label_fraction(train, fraction: float, seed: int):
    """``train`` reduced to a stratified ``fraction`` of its labels (:func:`stratified_fraction`),
    each kept sample repeated ``round(1 / share)`` times so that an epoch holds as many samples
    as the whole set: every fraction gets the same optimisation steps (and evaluation points),
    and only the labels differ. Returns ``(dataset, record)``."""
    if fraction == 1:
        return train, {"fraction": 1.0, "n_labelled": len(train), "repeats": 1}
    keep = stratified_fraction(np.asarray(train.labels), fraction, seed)
    repeats = max(1, round(len(train) / len(keep)))
    return IndexedView(train, np.tile(keep, repeats)), {
        "fraction": float(fraction), "n_labelled": int(len(keep)), "repeats": int(repeats),
        "subset_seed": int(seed)}


@dataclass
class Target:
    name: str
    train: ArrayDataset
    val: ArrayDataset
    classes: list
    identity: dict = field(default_factory=dict)

    @property
    def stands_in_for(self) -> str:
        """The study dataset this target stands in for (itself for a real dataset)."""
        return self.identity.get("stands_in_for", self.name)
