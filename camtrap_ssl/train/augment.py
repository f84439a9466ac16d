"""Fine-tuning augmentation, drawn per sample from ``(seed, epoch)`` and applied batch-wide.

Why per sample: the draw follows the dataset index, not the position in a batch, so a resumed or
data-parallel run augments every image exactly as a single uninterrupted process would.
"""
from __future__ import annotations

import contextlib

import torch


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def augment_params(n: int, seed: int, epoch: int) -> torch.Tensor:
    """Augmentation draws of every sample of an ``n``-sample dataset for one epoch, ``n x 5``.

    Columns: flip (< 0.5 flips), horizontal and vertical crop offset, brightness, contrast, each
    uniform in [0, 1); :func:`augment_batch` maps them to pixels and factors. Drawn from
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
