"""Batched augmented views for self-supervised pretraining.

The recipes are SimCLR's (random resized crop, horizontal flip, colour jitter, random greyscale)
and SwAV's multi-crop (two large crops, several small ones). lightly ships them as per-image PIL
transforms; on this project's 2-core CPUs those took 2.3 s per batch of 128 SimCLR view pairs
against 0.3 s for the network's own step, so here each operation acts on a whole batch of
tensors at once (one ``grid_sample`` for all crops). Randomness comes from an explicit
``torch.Generator``, so a seeded run draws the same views again.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def random_resized_crop(x: torch.Tensor, size: int, scale: tuple[float, float], g: torch.Generator,
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), flip_p: float = 0.5) -> torch.Tensor:
    """Crop a random area share in ``scale`` and aspect ratio in ``ratio``, resize to ``size``.

    The crop is expressed as an affine map of normalized coordinates, so the whole batch is
    resampled by one bilinear ``grid_sample``; a horizontal flip is a sign change of that map.
    """
    n = x.shape[0]
    area = _uniform(n, *scale, g)
    log_r = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), g)
    r = torch.exp(log_r)
    w = torch.sqrt(area * r).clamp(max=1.0)  # width and height as shares of the image side
    h = torch.sqrt(area / r).clamp(max=1.0)
    cx = (torch.rand(n, generator=g) * (1 - w) + w / 2) * 2 - 1  # centre in [-1, 1] coords
    cy = (torch.rand(n, generator=g) * (1 - h) + h / 2) * 2 - 1
    flip = torch.where(torch.rand(n, generator=g) < flip_p, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = w * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, (n, x.shape[1], size, size), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _grey(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def color_jitter(x: torch.Tensor, strength: float, p: float, g: torch.Generator) -> torch.Tensor:
    """SimCLR's jitter at ``strength`` s: brightness, contrast, saturation 0.8 s, hue 0.2 s.

    Applied with probability ``p`` per image, in one fixed order (SimCLR shuffles the order; a
    fixed order keeps this a few tensor operations and changes nothing the probes can see).
    """
    n = x.shape[0]
    on = (torch.rand(n, generator=g) < p).float().view(n, 1, 1, 1)
    b = _uniform(n, 1 - 0.8 * strength, 1 + 0.8 * strength, g).view(n, 1, 1, 1)
    c = _uniform(n, 1 - 0.8 * strength, 1 + 0.8 * strength, g).view(n, 1, 1, 1)
    s = _uniform(n, 1 - 0.8 * strength, 1 + 0.8 * strength, g).view(n, 1, 1, 1)
    hue = _uniform(n, -0.2 * strength, 0.2 * strength, g) * 2 * math.pi
    y = x * b
    mean = _grey(y).mean(dim=(1, 2, 3), keepdim=True)
    y = (y - mean) * c + mean
    gy = _grey(y)
    y = (y - gy) * s + gy
    # hue: rotate the chroma plane of YIQ by an angle
    yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    rgb = torch.linalg.inv(yiq)
    cos, sin = torch.cos(hue), torch.sin(hue)
    rot = torch.zeros(n, 3, 3)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    m = rgb @ rot @ yiq  # (n, 3, 3)
    y = torch.einsum("nij,njhw->nihw", m, y)
    y = y.clamp(0, 1)
    return on * y + (1 - on) * x


def random_grayscale(x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    on = (torch.rand(x.shape[0], generator=g) < p).view(-1, 1, 1, 1)
    return torch.where(on, _grey(x).expand_as(x), x)


@dataclass(frozen=True)
class ViewRecipe:
    """Crops as (size, count, min_scale, max_scale); jitter strength and probabilities."""

    crops: tuple[tuple[int, int, float, float], ...]
    jitter_strength: float = 0.5
    jitter_p: float = 0.8
    grayscale_p: float = 0.2

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> list[torch.Tensor]:
        views = []
        for size, count, lo, hi in self.crops:
            for _ in range(count):
                v = random_resized_crop(x, size, (lo, hi), g)
                v = color_jitter(v, self.jitter_strength, self.jitter_p, g)
                views.append(random_grayscale(v, self.grayscale_p, g))
        return views


def recipe_for(method: str, input_size: int) -> ViewRecipe:
    """Supervised: one mild crop+flip view. SimCLR/Barlow Twins: two views. SwAV/DC-v2: multi-crop."""
    if method == "supervised":
        return ViewRecipe(crops=((input_size, 1, 0.35, 1.0),), jitter_p=0.0, grayscale_p=0.0)
    if method in ("simclr", "barlowtwins"):
        return ViewRecipe(crops=((input_size, 2, 0.2, 1.0),))
    small = max(16, input_size // 2)
    return ViewRecipe(crops=((input_size, 2, 0.3, 1.0), (small, 4, 0.1, 0.3)))
