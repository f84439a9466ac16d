"""The embedded world's fine-tuning targets (SPEC section 6), by name, at a profile's size.

``load_target("syn_serengeti", profile)`` returns the same :class:`~camtrap_ssl.data.datasets.Target`
whether the data were generated a second ago or read from the cache. Each ``syn_*`` target names
the study dataset it stands in for, so tables can set our numbers beside the study's.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from camtrap_ssl.core.profiles import Profile, get_profile
from camtrap_ssl.data import cct, splits, synthetic
from camtrap_ssl.data.datasets import ArrayDataset, Target

TARGETS = ("syn_serengeti", "syn_ena24", "syn_cifar")


STANDS_IN_FOR = {"syn_serengeti": "serengeti", "syn_ena24": "ena24", "syn_cifar": "cifar10"}


def _to_uint8_nchw(x01: torch.Tensor) -> torch.Tensor:
    return (x01 * 255).round().clamp(0, 255).to(torch.uint8)


def _resize_uint8(images_nhwc: np.ndarray, size: int) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images_nhwc)).permute(0, 3, 1, 2).float() / 255
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return _to_uint8_nchw(x)


def load_target(name: str, profile: str | Profile = "demo", seed: int = 0, masks: bool = False) -> Target:
    """The named fine-tuning target at the profile's input size, generated on first use."""
    profile = get_profile(profile)
    if name not in TARGETS:
        raise ValueError(f"target={name!r}; allowed: {list(TARGETS)}")
    size = profile.input_size
    if name == "syn_cifar":
        world = synthetic.similar_world(profile, seed=seed)
        return Target(name,
                      ArrayDataset(_resize_uint8(world.images_train, size), torch.from_numpy(world.labels_train)),
                      ArrayDataset(_resize_uint8(world.images_val, size), torch.from_numpy(world.labels_val)),
                      list(world.classes), {"world": "similar", "profile": profile.name, "seed": seed})
    json_path = synthetic.camtrap_world(name.removeprefix("syn_"), profile, seed=seed)
    index = cct.load_cct(json_path)
    parts = splits.split(index, by="location", val_fraction=0.25, seed=seed)
    sets = []
    for ids in (parts.train, parts.val):
        ds = cct.CCTDataset(index, ids, size, return_mask=masks)
        items = [ds[i] for i in range(len(ds))]
        x = _to_uint8_nchw(torch.stack([it[0] for it in items]))
        y = torch.tensor([it[1] for it in items])
        m = torch.stack([it[2] for it in items]) if masks else None
        sets.append(ArrayDataset(x, y, m))
    return Target(name, sets[0], sets[1], list(index.class_names),
                  {"json": str(json_path), "json_sha256": index.json_sha256, "split": "location",
                   "profile": profile.name, "seed": seed})
