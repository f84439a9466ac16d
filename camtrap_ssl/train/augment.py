"""Fine-tuning augmentation, drawn per sample from ``(seed, epoch)`` and applied batch-wide.

Why per sample: the draw follows the dataset index, not the position in a batch, so a resumed or
data-parallel run augments every image exactly as a single uninterrupted process would.

Three augmentations, named in every run record (:data:`AUGMENTATIONS`):

* ``"norouzzadeh"``, the study's camera-trap protocol, as Norouzzadeh et al. (PNAS 2018) wrote
  it in ``phase2/data_loader.py`` of GitHub Evolving-AI-Lab/deep_learning_for_camera_trap_images
  (``_train_preprocess`` / ``_test_preprocess``, followed here, not copied): frames stored
  squashed to 256 x 256; training takes a random 224 x 224 crop (``tf.random_crop``: every offset
  in ``0 .. 32`` equally likely), a random left-right flip, then ``random_brightness(max_delta=63)``
  (one delta uniform in [-63, 63] on the 0-255 scale added to every pixel) and *then*
  ``random_contrast(0.2, 1.8)`` (``(x - m) * f + m`` with ``m`` the mean of each channel);
  evaluation takes the centre crop (``resize_image_with_crop_or_pad``: offset ``(256 - 224) // 2``).
  Other sizes keep their ratio (crop = ``round(size * 224 / 256)``, brightness ``63 / 255`` of the
  range). Their code never clips and ends with ``per_image_standardization``, which removes a
  uniform brightness shift exactly (and a contrast factor almost): in their training, brightness
  jitter had no effect. Our models take [0, 1] images and normalize with fixed statistics
  (ARCHITECTURE.md), so we clip to [0, 1] once, after both jitters, and the jitter does act.
* ``"demo"``, the embedded world's: a reflected shift by up to ``h // 8`` pixels at full size,
  flip, brightness and contrast factors in [0.8, 1.2) around the image mean. Kept for the demo
  book because its 64 px frames leave little room to crop, and its numbers were made with it.

* ``"crop_flip"``, the usual recipe for fine-tuning an ImageNet backbone on CIFAR (the study
  does not state its CIFAR recipe): the 32-px images upsampled once to the stored side (256 at
  the paper profile), then a random ``crop`` window and a random left-right flip, no photometric
  jitter and no strip; evaluation takes the centre crop. Norouzzadeh's crop and flip without his
  brightness and contrast jitter, which models camera exposure, not CIFAR's photographs.

``"none"`` leaves training images as they are (evaluation still takes the configured crop).
"""
from __future__ import annotations

import contextlib

import torch

from camtrap_ssl.core.profiles import AUGMENTATIONS  # the names, beside their code

# Norouzzadeh et al.'s sizes and jitter, on the 0-255 scale where they are stated
NOROUZZADEH_RESIZE, NOROUZZADEH_CROP = 256, 224
BRIGHTNESS_MAX_DELTA = 63.0 / 255.0
CONTRAST_RANGE = (0.2, 1.8)


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def augment_params(n: int, seed: int, epoch: int) -> torch.Tensor:
    """Augmentation draws of every sample of an ``n``-sample dataset for one epoch, ``n x 5``.

    Columns: flip (< 0.5 flips), horizontal and vertical crop offset, brightness, contrast, each
    uniform in [0, 1); :func:`augment_batch` (demo) and :func:`norouzzadeh_batch` map them to
    pixels and factors. Drawn from
    ``(seed, epoch)`` only, and looked up by dataset index, so the same image gets the same
    augmentation whatever the batch, the rank or the number of processes.
    """
    g = torch.Generator().manual_seed(epoch_seed(seed, epoch) + (1 << 40))
    return torch.rand(n, 5, generator=g)


def _reflect(i: torch.Tensor, size: int) -> torch.Tensor:
    """Index ``i`` (may lie within ``size - 1`` outside ``[0, size)``) mirrored like reflect pad."""
    i = i.abs()
    return torch.where(i > size - 1, 2 * (size - 1) - i, i)


def augment_batch(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Camera-trap augmentation on a batch in [0, 1]: flip, shifted crop, brightness, contrast.

    The crop is a random shift by up to ``h // 8`` pixels with reflected borders (the pad-and-crop
    of Norouzzadeh et al.), done as a single gather over precomputed source indices for the whole
    batch instead of a Python loop over images: the flip folds into the same index map. Brightness
    and contrast scale each image by a factor in [0.8, 1.2) around its mean.
    """
    n, c, h, w = x.shape
    if params.shape != (n, 5):
        raise ValueError(f"params must be {n} x 5 (see augment_params), got {tuple(params.shape)}")
    params = params.to(x.device, torch.float32)
    pad = max(1, min(h, w) // 8)
    if pad >= min(h, w):
        pad = min(h, w) - 1
    shift = (params[:, 1:3] * (2 * pad + 1)).long().clamp_(max=2 * pad) - pad  # n x 2 in [-pad, pad]
    rows = _reflect(torch.arange(h, device=x.device)[None] + shift[:, 1:2], h)  # n x h
    cols = _reflect(torch.arange(w, device=x.device)[None] + shift[:, 0:1], w)  # n x w
    flip = params[:, 0:1] < 0.5
    cols = torch.where(flip, w - 1 - cols, cols)
    src = (rows[:, :, None] * w + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    x = x.reshape(n, c, h * w).gather(2, src).view(n, c, h, w)
    bright = (1 + 0.4 * (params[:, 3] - 0.5)).view(n, 1, 1, 1).to(x.dtype)
    contrast = (1 + 0.4 * (params[:, 4] - 0.5)).view(n, 1, 1, 1).to(x.dtype)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    # (x - mean) * contrast + mean * bright, as three in-place passes over the gathered copy
    return x.mul_(contrast).add_(mean * (bright - contrast)).clamp_(0, 1)


def default_crop(size: int, augmentation: str) -> int:
    """The side a network sees of a ``size``-pixel stored image: 224/256 for the cropping
    recipes (``norouzzadeh``, ``crop_flip``), else all of it."""
    if augmentation in ("norouzzadeh", "crop_flip"):
        return max(1, round(size * NOROUZZADEH_CROP / NOROUZZADEH_RESIZE))
    return size


def _check_crop(x: torch.Tensor, crop: int) -> None:
    h, w = x.shape[-2:]
    if not 1 <= crop <= min(h, w):
        raise ValueError(f"crop={crop} must lie in [1, {min(h, w)}] for {h} x {w} images")


def center_crop(x: torch.Tensor, crop: int) -> torch.Tensor:
    """The centre ``crop x crop`` of a batch, offset ``(size - crop) // 2`` as TensorFlow's
    ``resize_image_with_crop_or_pad`` (Norouzzadeh et al.'s evaluation crop)."""
    _check_crop(x, crop)
    h, w = x.shape[-2:]
    top, left = (h - crop) // 2, (w - crop) // 2
    return x[..., top:top + crop, left:left + crop]


def norouzzadeh_batch(x: torch.Tensor, params: torch.Tensor, crop: int,
                      photometric: bool = True) -> torch.Tensor:
    """Norouzzadeh et al.'s training augmentation of a batch in [0, 1] (see the module docstring).

    Per sample: a ``crop x crop`` window at integer offsets uniform in ``0 .. size - crop``, a
    left-right flip with probability 1/2, brightness ``+ delta`` with delta uniform in
    ``[-63/255, 63/255]``, then contrast ``(x - m) * f + m`` with ``m`` the per-channel mean of the
    brightened crop and ``f`` uniform in [0.2, 1.8], then one clip to [0, 1]. Done as one gather
    for the whole batch (the flip folds into the index map), like :func:`augment_batch`.
    """
    n, c, h, w = x.shape
    if params.shape != (n, 5):
        raise ValueError(f"params must be {n} x 5 (see augment_params), got {tuple(params.shape)}")
    _check_crop(x, crop)
    params = params.to(x.device, torch.float32)
    left = (params[:, 1] * (w - crop + 1)).long().clamp_(max=w - crop)
    top = (params[:, 2] * (h - crop + 1)).long().clamp_(max=h - crop)
    ar = torch.arange(crop, device=x.device)
    rows = top[:, None] + ar[None]  # n x crop
    cols = left[:, None] + ar[None]
    flip = params[:, 0:1] < 0.5
    cols = torch.where(flip, left[:, None] + crop - 1 - ar[None], cols)
    src = (rows[:, :, None] * w + cols[:, None, :]).view(n, 1, crop * crop).expand(n, c, crop * crop)
    x = x.reshape(n, c, h * w).gather(2, src).view(n, c, crop, crop)
    if not photometric:  # "crop_flip": the window and the flip alone
        return x
    delta = (BRIGHTNESS_MAX_DELTA * (2 * params[:, 3] - 1)).view(n, 1, 1, 1).to(x.dtype)
    lo, hi = CONTRAST_RANGE
    factor = (lo + (hi - lo) * params[:, 4]).view(n, 1, 1, 1).to(x.dtype)
    mean = x.mean(dim=(2, 3), keepdim=True)  # per channel, before brightness: it shifts both alike
    # ((x + d) - (m + d)) * f + (m + d) = x * f + (m * (1 - f) + d), in two in-place passes
    return x.mul_(factor).add_(mean * (1 - factor) + delta).clamp_(0, 1)


def train_transform(x: torch.Tensor, params: torch.Tensor | None, augmentation: str,
                    crop: int) -> torch.Tensor:
    """A training batch as the network sees it: augmented (unless ``"none"``) and ``crop`` wide."""
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation={augmentation!r}; allowed: {list(AUGMENTATIONS)}")
    if augmentation in ("norouzzadeh", "crop_flip"):
        return norouzzadeh_batch(x, params, crop, photometric=augmentation == "norouzzadeh")
    if augmentation == "demo":
        x = augment_batch(x, params)
    return center_crop(x, crop)


@contextlib.contextmanager
def single_threaded(enabled: bool):
    """Run a few elementwise passes on one CPU thread.

    Augmenting a batch is five passes over memory; on a CPU each pass split over threads costs
    more in thread wake-ups than in arithmetic (measured on a loaded 2-core machine: 25 ms per
    128 x 3 x 32 x 32 batch with 2 threads, 1.8 ms with one), while the model's convolutions
    still use every thread.
    """
    if not enabled or torch.get_num_threads() == 1:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
