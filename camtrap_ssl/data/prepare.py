"""Resize once, train many times: a prepared cache of a COCO Camera Traps split.

Decoding a 2048 x 1536 JPEG costs tens of milliseconds; fine-tuning reads every image 25 to 50
times. :func:`prepare` decodes each image of a split once, squash-resizes it exactly as
:class:`camtrap_ssl.data.cct.CCTDataset` does (same function), and stores the result as one uint8
array ``images.npy`` (N x size x size x 3, read back as a memory map), ``labels.npy`` and a
``manifest.json``. :class:`PreparedDataset` then serves ``(float [0,1] 3 x size x size, label)``
at memory-copy speed.

The manifest is written last and atomically, so its presence marks a complete cache. It records a
*key* (source JSON sha256, size, the exact sample list and class names, the resize method, and
each image file's size and mtime): a second ``prepare`` with the same key reuses the cache, any
change rebuilds it, so a restored image is read again. Bad images (those
the quick scan rejects or that fail to decode) are left out and listed under ``bad_files``.
Rows are written in place into a preallocated ``.npy`` memmap; if some images fail, the array's
header is rewritten to the smaller row count and the file truncated, so there is no second copy.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from camtrap_ssl.core.fileio import atomic_write_json
from camtrap_ssl.core.progress import progress_bar
from camtrap_ssl.data.cct import CCTIndex, bad_image_reason, decode_image, sample_list

__all__ = ["prepare", "PreparedDataset", "cache_key", "FORMAT_VERSION"]

FORMAT_VERSION = 2  # 2: the key covers each image file's size and mtime
RESIZE_METHOD = "squash; PIL draft(RGB) then bilinear"


def cache_key(index: CCTIndex, samples: list, size: int, strip_fraction: float = 0.0) -> str:
    """Identity of a prepared cache: what it read and how.

    The data file, sample list, classes, size, strip cut, method and format, and each image file's size
    and modification time (``None`` for a missing file). The file stats are what make "rerun to
    retry" work: an image that was missing or truncated and has since been restored changes the
    key, so the cache is rebuilt instead of serving the old verdict. One ``stat`` per image is
    cheap next to decoding (about a second per 100k images on a local disk).
    """
    h = hashlib.sha256()
    h.update(json.dumps({"json_sha256": index.json_sha256, "size": size,
                         "strip_fraction": strip_fraction,
                         "classes": index.class_names, "method": RESIZE_METHOD,
                         "format": FORMAT_VERSION}, sort_keys=True).encode())
    for iid, label in samples:
        h.update(f"{iid!r}\t{label}\t{_stat(index.path_of(iid))}\n".encode())
    return h.hexdigest()


def _stat(path: Path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _shrink_npy(path: Path, rows: int) -> None:
    """Rewrite a C-order ``.npy`` header in place to ``rows`` rows and truncate the data."""
    with open(path, "r+b") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        data_start = f.tell()
        if fortran:
            raise ValueError(f"{path}: cannot shrink a Fortran-order array")
        prefix = 8 + (2 if version == (1, 0) else 4)  # magic + version, then header length
        new = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
               "shape": (rows,) + tuple(shape[1:])}
        text = repr(new)
        room = data_start - prefix - 1  # header text + spaces, then the final newline
        if len(text) > room:
            raise ValueError(f"{path}: new header does not fit")
        assert ast.literal_eval(text) == new
        f.seek(prefix)
        f.write((text + " " * (room - len(text)) + "\n").encode("latin1"))
        row_bytes = int(np.prod(shape[1:])) * dtype.itemsize
        f.truncate(data_start + rows * row_bytes)


def prepare(index: CCTIndex, split_ids: Iterable | None, size: int, out_dir,
            workers: int | None = None, progress: bool = True,
            strip_fraction: float = 0.0) -> "PreparedDataset":
    """Decode and resize the samples of ``split_ids`` once into ``out_dir``; reuse if current.

    ``strip_fraction``: the bottom share of each frame's rows cut off before resizing (the
    information strip, :mod:`camtrap_ssl.data.strip`).

    ``workers`` decoding threads (Pillow releases the GIL while decoding and resizing); default
    ``min(8, cpu_count)``. Returns the :class:`PreparedDataset` over the cache.
    """
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"size={size!r} must be a positive int")
    workers = workers or min(8, os.cpu_count() or 1)
    out_dir = Path(out_dir)
    samples = sample_list(index, split_ids)
    if not samples:
        raise ValueError("split_ids selects no labelled sample; nothing to prepare")
    key = cache_key(index, samples, size, strip_fraction)
    manifest_path = out_dir / "manifest.json"
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
        except json.JSONDecodeError:
            old = {}
        if old.get("key") == key and (out_dir / "images.npy").exists():
            return PreparedDataset(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path.unlink(missing_ok=True)  # the cache is incomplete until the new manifest lands

    tmp_images = out_dir / f"images.npy.tmp{os.getpid()}"
    arr = np.lib.format.open_memmap(tmp_images, mode="w+", dtype=np.uint8,
                                    shape=(len(samples), size, size, 3))
    ids, labels, bad = [], [], []
    row = 0
    try:
        def work(sample):
            path = index.path_of(sample[0])
            try:
                return sample, decode_image(path, size, strip_fraction), None
            except Exception as e:  # listed once, with its path once
                return sample, None, f"{path}: {bad_image_reason(e)}"

        bar = progress_bar(total=len(samples), desc=f"preparing {size}px", show=progress)
        with ThreadPoolExecutor(max_workers=workers) as pool, bar:
            for start in range(0, len(samples), 1024):  # bounded number of decoded images
                for (iid, label), img, err in pool.map(work, samples[start:start + 1024]):
                    bar.update(1)
                    if err is not None:
                        bad.append(err)
                        continue
                    arr[row] = img
                    ids.append(iid)
                    labels.append(label)
                    row += 1
        arr.flush()
        del arr
        if row < len(samples):
            _shrink_npy(tmp_images, row)
        os.replace(tmp_images, out_dir / "images.npy")
    except BaseException:
        tmp_images.unlink(missing_ok=True)
        raise
    tmp_labels = out_dir / f"labels.npy.tmp{os.getpid()}.npy"
    np.save(tmp_labels, np.asarray(labels, dtype=np.int64))
    os.replace(tmp_labels, out_dir / "labels.npy")
    atomic_write_json(manifest_path, {
        "format": FORMAT_VERSION, "key": key, "source_json": str(index.json_path),
        "source_json_sha256": index.json_sha256, "size": size, "method": RESIZE_METHOD,
        "strip_fraction": strip_fraction,
        "class_names": index.class_names, "n": row, "image_ids": ids, "bad_files": bad,
    })
    return PreparedDataset(out_dir)


class PreparedDataset(torch.utils.data.Dataset):
    """``(image float32 [0,1] 3 x size x size, label)`` from a cache written by :func:`prepare`.

    Attributes: ``class_names``, ``image_ids``, ``labels`` (int64 array), ``bad_files``,
    ``manifest``. ``transform`` acts on the image tensor.
    """

    def __init__(self, out_dir, transform: Callable | None = None):
        out_dir = Path(out_dir)
        manifest_path = out_dir / "manifest.json"
        if not manifest_path.exists():
            raise FileNotFoundError(f"{out_dir} holds no complete prepared cache (no "
                                    "manifest.json); run camtrap_ssl.data.prepare.prepare first")
        self.manifest = json.loads(manifest_path.read_text())
        self.images = np.load(out_dir / "images.npy", mmap_mode="r")
        self.labels = np.load(out_dir / "labels.npy")
        if len(self.images) != self.manifest["n"] or len(self.labels) != self.manifest["n"]:
            raise ValueError(f"{out_dir}: arrays disagree with manifest.json (n="
                             f"{self.manifest['n']}); delete the folder and prepare again")
        self.class_names = self.manifest["class_names"]
        self.image_ids = self.manifest["image_ids"]
        self.bad_files = self.manifest["bad_files"]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, k: int):
        img = torch.from_numpy(np.array(self.images[k])).permute(2, 0, 1).float().div_(255.0)
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.labels[k])
