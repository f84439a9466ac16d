"""The record every fine-tuning target is: two in-memory datasets, class names, an identity.

Embedded stand-ins (:mod:`camtrap_ssl.data.embedded`) and the study's real datasets
(:mod:`camtrap_ssl.data.paper`) both return a :class:`Target`, so the fine-tuning code has one
input type whatever the data.
"""
from __future__ import annotations

from dataclasses import dataclass, field

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
