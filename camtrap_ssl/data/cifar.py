"""CIFAR-10 / CIFAR-100, the "similar to the source" targets, through torchvision.

Nothing downloads by default (``download=False``): the build machines are offline, and a silent
170 MB download is not a side effect a library should have. A missing dataset fails before any
work with the root, the files expected there and a command that fetches them.

torchvision verifies each batch file's md5 when it opens the dataset. ``verify_md5=False``
swaps in subclasses whose file lists carry no checksum (torchvision's ``check_integrity`` then
only checks that each file exists): that is for fabricated test data in torchvision's layout, and
real data should keep the default.

Images come back as float32 ``[0, 1]`` tensors ``3 x size x size`` (bilinear resize from 32 when
``size`` differs), the contract of every pipeline in this package.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.datasets import CIFAR10, CIFAR100

__all__ = ["cifar_dataset", "CifarDataset", "expected_files", "CIFAR_NAMES"]

CIFAR_NAMES = ("cifar10", "cifar100")
_CLASSES = {"cifar10": CIFAR10, "cifar100": CIFAR100}


def _unchecked(cls):
    """A subclass of a torchvision CIFAR class whose file lists carry no md5 (existence only)."""
    return type(f"{cls.__name__}Unchecked", (cls,), {
        "train_list": [[name, None] for name, _ in cls.train_list],
        "test_list": [[name, None] for name, _ in cls.test_list],
        "meta": {**cls.meta, "md5": None},
    })


def expected_files(name: str, root) -> list[Path]:
    cls = _CLASSES[name]
    folder = Path(root) / cls.base_folder
    return [folder / f for f, _ in cls.train_list + cls.test_list] + [folder / cls.meta["filename"]]


class CifarDataset(torch.utils.data.Dataset):
    """``(image float32 [0,1] 3 x size x size, label)`` over a torchvision CIFAR dataset."""

    def __init__(self, base, size: int | None, transform: Callable | None = None):
        self.data = torch.from_numpy(np.ascontiguousarray(base.data))  # N x 32 x 32 x 3 uint8
        self.targets = np.asarray(base.targets, dtype=np.int64)
        self.classes = list(base.classes)
        self.size = size
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, k: int):
        img = self.data[k].permute(2, 0, 1).float().div_(255.0)
        if self.size is not None and self.size != img.shape[-1]:
            img = F.interpolate(img[None], size=(self.size, self.size), mode="bilinear",
                                align_corners=False)[0].clamp_(0.0, 1.0)
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.targets[k])


def cifar_dataset(name: str, root, train: bool = True, size: int | None = None,
                  download: bool = False, verify_md5: bool = True,
                  transform: Callable | None = None) -> CifarDataset:
    """CIFAR-10 or CIFAR-100 from ``root`` (torchvision's layout), as [0, 1] tensors.

    ``size=None`` keeps 32 x 32. ``download=True`` lets torchvision fetch the archive.
    """
    if name not in _CLASSES:
        raise ValueError(f"name={name!r}; allowed: {list(CIFAR_NAMES)}")
    if size is not None and (not isinstance(size, int) or size <= 0):
        raise ValueError(f"size={size!r} must be a positive int or None")
    cls = _CLASSES[name]
    root = Path(root)
    if not download:
        missing = [p for p in expected_files(name, root) if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{name} is not under root={str(root)!r}: missing "
                f"{', '.join(str(p.relative_to(root)) for p in missing)}. Expected "
                f"{root / cls.base_folder}/ with "
                f"{', '.join(p.name for p in expected_files(name, root))}. "
                f"Fetch it on a machine with internet access with\n  python -c \"import "
                f"torchvision; torchvision.datasets.{cls.__name__}('{root}', download=True)\"\n"
                f"(or call cifar_dataset(..., download=True)) and copy {cls.base_folder}/ here.")
    if not verify_md5:
        cls = _unchecked(cls)
    try:
        base = cls(str(root), train=train, download=download)
    except RuntimeError as e:
        raise RuntimeError(f"{name} under {root} failed torchvision's md5 check ({e}); "
                           "re-download it (delete the folder, download=True). Pass "
                           "verify_md5=False only for fabricated test data.") from e
    return CifarDataset(base, size, transform)
