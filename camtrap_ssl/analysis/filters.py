"""Which filters fire: the first part of Study 4.

The study showed, for each image, the most activated filter at the output of each ResNet block and
its feature map, and noticed that the SSL model picked the *same* filter indices for every image.
:func:`most_activated_filters` reproduces the per-image picture and :func:`filter_agreement` turns
the observation into numbers (share of images won by the most frequent filter, number of distinct
winners), so that "the same filter for all images" can be checked per model and block.
:func:`final_conv_maps` gives the strongest channels of the final convolutional block.

"Most activated" means the highest *spatial mean* of the block's output channel (the block output
is post-ReLU, so this is the channel's average firing over the image). Because per-channel scale
decides raw winners, :func:`filter_agreement` also judges agreement on per-channel standardised
activations against a permutation baseline.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camtrap_ssl.analysis.attribution import overlay, to_hwc
from camtrap_ssl.models.utils import (
    BLOCKS,
    check_images,
    eval_mode,
    get_layer,
    model_device,
)


@dataclass
class FilterResult:
    """Per image and block: the winning channel, its mean activation and its feature map."""

    layers: tuple[str, ...]
    indices: dict[str, Tensor]  # layer -> (N,) long, winning channel per image
    scores: dict[str, Tensor]  # layer -> (N,) the winner's mean activation
    maps: dict[str, Tensor]  # layer -> (N, H, W) the winner's map at image size (for overlays)
    n_channels: dict[str, int]  # layer -> number of channels of the block
    channel_means: dict[str, Tensor] | None = None  # layer -> (N, C) spatial mean per channel


@dataclass
class ConvMaps:
    """The ``top_k`` strongest channels of one layer for each image."""

    layer: str
    indices: Tensor  # (N, k) channel indices, strongest first
    scores: Tensor  # (N, k) their mean activations
    maps: Tensor  # (N, k, H, W) upsampled to image size
    maps_small: Tensor  # (N, k, h, w) at the layer's own resolution


def collect_activations(model: nn.Module, images: Tensor, layers: Sequence[str], batch_size: int):
    """Run ``images`` through ``model`` in batches and yield (x, {layer: activation}).

    Public because the explorers read activations the same way (one hook per layer, eval mode,
    no gradients) and must not drift from the filter analysis they display."""
    check_images(images)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    modules = {name: get_layer(model, name) for name in layers}
    device = model_device(model)
    store: dict[str, Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, name=name: store.__setitem__(name, o))
             for name, m in modules.items()]
    try:
        with eval_mode(model), torch.no_grad():
            for start in range(0, images.shape[0], batch_size):
                x = images[start:start + batch_size].to(device)
                store.clear()
                model(x)
                for name in layers:
                    if name not in store or store[name].dim() != 4:
                        raise ValueError(f"layer {name!r} produced no (N, C, h, w) feature map")
                yield x, dict(store)
    finally:
        for h in hooks:
            h.remove()


def _up(maps: Tensor, size) -> Tensor:
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)


def most_activated_filters(model: nn.Module, images: Tensor, layers: Sequence[str] = BLOCKS,
                           batch_size: int = 64) -> FilterResult:
    """For each image and block in ``layers``, the channel with the highest mean activation and
    its feature map upsampled (bilinear) to the image size."""
    layers = tuple(layers)
    if not layers:
        raise ValueError("layers must name at least one block, e.g. ('layer1', ..., 'layer4')")
    idx = {k: [] for k in layers}
    val = {k: [] for k in layers}
    maps = {k: [] for k in layers}
    means = {k: [] for k in layers}
    n_channels: dict[str, int] = {}
    for x, acts in collect_activations(model, images, layers, batch_size):
        for name in layers:
            a = acts[name]
            n_channels[name] = a.shape[1]
            mean = a.mean(dim=(2, 3))
            means[name].append(mean.cpu())
            score, win = mean.max(1)
            idx[name].append(win.cpu())
            val[name].append(score.cpu())
            chosen = a[torch.arange(a.shape[0], device=a.device), win][:, None]
            maps[name].append(_up(chosen, x.shape[-2:])[:, 0].cpu())
    return FilterResult(layers, {k: torch.cat(v) for k, v in idx.items()},
                        {k: torch.cat(v) for k, v in val.items()},
                        {k: torch.cat(v) for k, v in maps.items()}, n_channels,
                        {k: torch.cat(v) for k, v in means.items()})


def _agreement(winners: np.ndarray) -> tuple[int, float, int]:
    counts = Counter(winners.tolist())
    top = min(counts, key=lambda k: (-counts[k], k))
    return top, counts[top] / len(winners), len(counts)


def standardised_winners(means: Tensor) -> Tensor:
    """(N,) winning channel after standardising each channel across the images (z-scores).

    Raw spatial means are dominated by per-channel scale: BatchNorm's gamma/beta give some
    channels a large offset, and such a channel wins on every image whatever the image shows.
    Standardised, a channel wins where it fires *unusually strongly for it*; constant channels
    (std 0) score 0."""
    mu, sd = means.mean(0, keepdim=True), means.std(0, keepdim=True)
    z = torch.where(sd > 1e-12, (means - mu) / sd.clamp(min=1e-12), torch.zeros_like(means))
    return z.argmax(1)


def filter_agreement(result: FilterResult | Mapping[str, FilterResult], n_perm: int = 200,
                     seed: int = 0) -> pd.DataFrame:
    """Per model and block: how consistently one filter wins across images.

    ``top_share`` is the share of images won by the most frequent winner (1.0 = the same filter
    for every image, as the study saw for SSL), on raw spatial means. ``z_top_share`` is the same
    on per-channel standardised means (:func:`standardised_winners`), which is what "the same
    filter for every image" should be judged on. ``perm_top_share`` is its permutation baseline:
    each channel's standardised values shuffled independently across images (breaking any link
    between images and channels while keeping each channel's distribution), the mean top share
    over ``n_perm`` shuffles from a generator seeded by ``seed``; ``perm_p`` is the share of
    shuffles whose top share reaches the observed one. Also ``top_filter``, ``z_top_filter``,
    ``n_distinct``, ``n_channels``, ``n_images``.
    """
    results = {"model": result} if isinstance(result, FilterResult) else dict(result)
    if not isinstance(n_perm, int) or n_perm < 1:
        raise ValueError(f"n_perm must be a positive int, got {n_perm!r}")
    rows = []
    for model_name, res in results.items():
        if not isinstance(res, FilterResult):
            raise TypeError(f"{model_name!r}: expected a FilterResult from "
                            f"most_activated_filters, got {type(res)}")
        for layer in res.layers:
            winners = res.indices[layer].numpy()
            if not len(winners):
                continue
            top, share, distinct = _agreement(winners)
            row = {"model": model_name, "layer": layer, "n_images": len(winners),
                   "top_filter": top, "top_share": share, "n_distinct": distinct,
                   "n_channels": res.n_channels.get(layer)}
            means = (res.channel_means or {}).get(layer)
            if means is not None:
                z_top, z_share, _ = _agreement(standardised_winners(means).numpy())
                g = torch.Generator().manual_seed(seed)
                shares = []
                for _ in range(n_perm):
                    perm = torch.argsort(torch.rand(means.shape, generator=g), dim=0)
                    shuffled = torch.gather(means, 0, perm)
                    shares.append(_agreement(standardised_winners(shuffled).numpy())[1])
                shares = np.asarray(shares)
                row.update(z_top_filter=z_top, z_top_share=z_share,
                           perm_top_share=float(shares.mean()),
                           perm_p=float((shares >= z_share).mean()))
            rows.append(row)
    return pd.DataFrame(rows, columns=["model", "layer", "n_images", "top_filter", "top_share",
                                       "z_top_filter", "z_top_share", "perm_top_share",
                                       "perm_p", "n_distinct", "n_channels"])


def final_conv_maps(model: nn.Module, images: Tensor, top_k: int = 8, layer: str = "layer4",
                    batch_size: int = 64) -> ConvMaps:
    """The ``top_k`` channels of ``layer`` (default: the final convolutional block) with the
    highest mean activation, per image, with their maps."""
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")
    idx, val, small, big = [], [], [], []
    for x, acts in collect_activations(model, images, (layer,), batch_size):
        a = acts[layer]
        if top_k > a.shape[1]:
            raise ValueError(f"top_k={top_k} exceeds the {a.shape[1]} channels of {layer!r}")
        score, win = a.mean(dim=(2, 3)).topk(top_k, dim=1)
        chosen = torch.gather(a, 1, win[:, :, None, None].expand(-1, -1, *a.shape[2:]))
        idx.append(win.cpu())
        val.append(score.cpu())
        small.append(chosen.cpu())
        big.append(_up(chosen, x.shape[-2:]).cpu())
    return ConvMaps(layer, torch.cat(idx), torch.cat(val), torch.cat(big), torch.cat(small))


# ------------------------------------------------------------------------------------ plots
def plot_most_activated(images: Tensor, result: FilterResult, titles: Sequence[str] | None = None,
                        max_images: int = 8):
    """Figure: one row per image; the image, then the winning filter's map over it per block."""
    from matplotlib.figure import Figure

    n = min(images.shape[0], max_images)
    cols = len(result.layers) + 1
    fig = Figure(figsize=(1.8 * cols, 1.9 * n), layout="constrained")
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(to_hwc(images[i]))
        axes[i, 0].set_axis_off()
        axes[i, 0].set_title(titles[i] if titles is not None else f"image {i}", fontsize=8)
        for j, layer in enumerate(result.layers, start=1):
            overlay(images[i], result.maps[layer][i], ax=axes[i, j],
                    title=f"{layer} #{int(result.indices[layer][i])}")
    return fig


def plot_final_conv_maps(images: Tensor, maps: ConvMaps, titles: Sequence[str] | None = None,
                         max_images: int = 4):
    """Figure: one row per image; the image, then its ``top_k`` channel maps (own colour scale)."""
    from matplotlib.figure import Figure

    n = min(images.shape[0], max_images)
    k = maps.indices.shape[1]
    fig = Figure(figsize=(1.5 * (k + 1), 1.6 * n), layout="constrained")
    axes = fig.subplots(n, k + 1, squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(to_hwc(images[i]))
        axes[i, 0].set_title(titles[i] if titles is not None else f"image {i}", fontsize=8)
        for j in range(k):
            axes[i, j + 1].imshow(maps.maps_small[i, j].numpy(), cmap="viridis")
            axes[i, j + 1].set_title(f"{maps.layer} #{int(maps.indices[i, j])}", fontsize=7)
        for ax in axes[i]:
            ax.set_axis_off()
    return fig


def winners_table(result: FilterResult, names: Sequence[str] | None = None) -> pd.DataFrame:
    """Wide table, one row per image, one column per block: the winning filter index."""
    data = {layer: result.indices[layer].numpy() for layer in result.layers}
    index = list(names) if names is not None else np.arange(len(next(iter(data.values()))))
    return pd.DataFrame(data, index=index)
