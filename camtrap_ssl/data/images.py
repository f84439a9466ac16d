"""Load any folder of photographs as model input: the explorers' "bring your own images".

Camera-trap folders mix large colour originals, small crops and greyscale night infrared frames;
some files are truncated. :func:`load_image_folder` turns all of them into one float tensor
(N, 3, size, size) in [0, 1] (the contract of ARCHITECTURE.md), skipping and reporting what it
cannot read instead of failing half-way.

Resizing: the default ``fit="squash"`` resizes straight to size x size, ignoring the aspect
ratio, because that is what the study's and this package's training pipelines do to 4:3
camera-trap frames, so a model sees the same distortion it was trained on. ``fit="letterbox"``
keeps the aspect ratio and pads with a grey border instead (bounding boxes then need shifting;
:func:`camtrap_ssl.analysis.backgrounds.bbox_to_mask` assumes squash).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from camtrap_ssl.core.progress import progress_bar

EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
FITS: tuple[str, ...] = ("squash", "letterbox")


def list_images(folder, recursive: bool = True) -> list[Path]:
    """Image files under ``folder`` (by extension, case-insensitive), sorted for a stable order."""
    root = Path(folder)
    if not root.exists():
        raise FileNotFoundError(f"image folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"{str(root)!r} is not a folder")
    pattern = root.rglob("*") if recursive else root.glob("*")
    return sorted(p for p in pattern if p.is_file() and p.suffix.lower() in EXTENSIONS)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB. Transparent pixels are composited on white (RGBA, LA, P with
    transparency) rather than exposing whatever colour hides under alpha 0; CMYK, greyscale
    and 16-bit greyscale are converted."""
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float64)
        hi = a.max() if a.max() > 255 else 255.0
        img = Image.fromarray(np.clip(a / hi * 255, 0, 255).astype(np.uint8))
    return img.convert("RGB")


def load_image(path, size: int, fit: str = "squash", fill: float = 0.5) -> torch.Tensor:
    """One image file -> float tensor (3, size, size) in [0, 1]. Raises on unreadable files.

    Large JPEGs are decoded with PIL's draft mode, which lets libjpeg decode at 1/2, 1/4 or 1/8
    scale (never below ``size``): a 2048 x 1536 camera-trap frame decodes several times faster.
    """
    with Image.open(path) as img:
        if img.format == "JPEG":
            img.draft("RGB", (size, size))
        img = ImageOps.exif_transpose(img)
        img = to_rgb(img)
        if fit == "squash":
            img = img.resize((size, size), Image.BILINEAR, reducing_gap=None)
        else:
            scale = size / max(img.size)
            w, h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
            canvas = Image.new("RGB", (size, size), (round(fill * 255),) * 3)
            canvas.paste(img.resize((w, h), Image.BILINEAR), ((size - w) // 2, (size - h) // 2))
            img = canvas
        a = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float().div_(255.0)


def load_image_folder(folder, size: int, recursive: bool = True, limit: int | None = None,
                      fit: str = "squash", fill: float = 0.5, progress: bool = False):
    """All readable images under ``folder`` as ``(tensor (N, 3, size, size) in [0, 1], paths)``.

    Files are taken in sorted path order; ``limit`` keeps the first ``limit`` readable ones.
    Unreadable files are skipped with one warning that names them. Raises FileNotFoundError for a
    missing folder and ValueError when no image in it can be read.
    """
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive int (pixels), got {size!r}")
    if fit not in FITS:
        raise ValueError(f"fit={fit!r}; allowed: {list(FITS)}")
    if limit is not None and (not isinstance(limit, (int, np.integer)) or limit < 1):
        raise ValueError(f"limit must be None or a positive int, got {limit!r}")
    if not 0.0 <= fill <= 1.0:
        raise ValueError(f"fill must be a grey level in [0, 1], got {fill!r}")
    paths = list_images(folder, recursive)
    if not paths:
        raise ValueError(f"no image files ({', '.join(EXTENSIONS)}) in {str(folder)!r}"
                         + ("" if recursive else " (recursive=False)"))

    tensors, kept, skipped = [], [], []
    for p in progress_bar(paths, desc="images", show=progress):
        if limit is not None and len(kept) >= limit:
            break
        try:
            tensors.append(load_image(p, int(size), fit, fill))
            kept.append(p)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
            skipped.append(f"{p.name} ({type(err).__name__}: {err})")
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable file(s) in {os.fspath(folder)!r}: "
                      + "; ".join(skipped), stacklevel=2)
    if not tensors:
        raise ValueError(f"no readable image in {str(folder)!r}; skipped: {skipped}")
    return torch.stack(tensors), kept
