"""Official checkpoints with random weights, in each publisher's layout and under its file name.

Why: the paper-scale backbones (SPEC section 3) are loaded from files nobody can download where this
project is built. The key maps of :mod:`camtrap_ssl.models.zoo` and the loaders are only trusted if
they meet files laid out exactly as published, so the tests and the rehearsal of the paper path
(:mod:`camtrap_ssl.studies.rehearsal`) write such files here and load them through the same
download code a user's checkpoint goes through:

* torchvision (``supervised_r50``/``_r152``): ``torchvision.models.resnet50().state_dict()``,
  1000-class ``fc`` included;
* SwAV / DeepCluster-v2: the DistributedDataParallel state dict (every key ``module.``-prefixed)
  with the projection head (2048-2048-128 MLP with BN) and the prototypes (3000 x 128);
* Barlow Twins: the torchvision backbone without ``fc``;
* SimCLRv2: the SimCLRv2-Pytorch converter's ``{'resnet': ..., 'head': ...}`` of
  :class:`ConverterResNet`.

Random, not trained: :func:`random_state` scales them so activations stay alive through 50-152
layers (a network of all-zero or unit-variance weights would saturate or vanish, and a saliency
method would then have nothing to show).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from .registry import get_entry

__all__ = ["random_state", "ConverterResNet", "official_state", "write_official_checkpoint"]


def random_state(model, seed=0):
    """The model's state dict with every tensor (BN statistics included) randomized at a scale
    that keeps activations alive through many blocks (He-scaled weights, BN near identity)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in model.state_dict().items():
        if not v.dtype.is_floating_point:
            out[k] = torch.zeros(v.shape, dtype=v.dtype)
            continue
        r = torch.randn(v.shape, generator=g)
        if v.ndim >= 2:
            out[k] = r * (2.0 / v[0].numel()) ** 0.5
        elif k.endswith("running_var"):
            out[k] = 1.0 + 0.2 * r.abs()
        elif k.endswith("weight"):
            out[k] = 1.0 + 0.2 * r
        else:  # BN bias, running_mean, fc bias
            out[k] = 0.1 * r
    return out



def _conv(i, o, k=3, s=1):
    return nn.Conv2d(i, o, k, s, (k - 1) // 2, bias=False)


def _bnrelu(c, relu=True):
    return nn.Sequential(nn.BatchNorm2d(c), nn.ReLU() if relu else nn.Identity())


class _ConvSK(nn.Module):
    def __init__(self, i, o, s, mid):
        super().__init__()
        self.main_conv = nn.Sequential(_conv(i, 2 * o, 3, s), _bnrelu(2 * o))
        self.mixing_conv = nn.Sequential(_conv(o, mid, 1), _bnrelu(mid), _conv(mid, 2 * o, 1))

    def forward(self, x):
        a, b = self.main_conv(x).chunk(2, dim=1)
        ma, mb = self.mixing_conv((a + b).mean((2, 3), keepdim=True)).chunk(2, dim=1)
        wa = torch.sigmoid(ma - mb)  # a two-way softmax, written differently
        return wa * a + (1 - wa) * b


class _Proj(nn.Module):
    def __init__(self, i, o, s, sk):
        super().__init__()
        self.shortcut = (nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.AvgPool2d(2, s), _conv(i, o, 1))
                         if sk else _conv(i, o, 1, s))
        self.bn = _bnrelu(o, relu=False)

    def forward(self, x):
        return self.bn(self.shortcut(x))


class _Block(nn.Module):
    def __init__(self, i, p, s, sk, proj):
        super().__init__()
        self.projection = _Proj(i, 4 * p, s, sk) if proj else nn.Identity()
        mid = [_ConvSK(p, p, s, max(int(p * 0.0625), 32))] if sk else [_conv(p, p, 3, s), _bnrelu(p)]
        self.net = nn.Sequential(_conv(i, p, 1), _bnrelu(p), *mid, _conv(p, 4 * p, 1),
                                 _bnrelu(4 * p, relu=False))

    def forward(self, x):
        return torch.relu(self.projection(x) + self.net(x))


class _Stage(nn.Module):
    def __init__(self, n, i, p, s, sk):
        super().__init__()
        self.blocks = nn.ModuleList([_Block(i, p, s, sk, True)] +
                                    [_Block(4 * p, p, 1, sk, False) for _ in range(n - 1)])

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x


class ConverterResNet(nn.Module):
    """The SimCLRv2-Pytorch converter's ResNet (its module structure, hence its key names): BN
    wrapped in ``Sequential(BN, ReLU)``, the stem in ``net.0``, stages ``net.1..net.4`` with
    ``.blocks``, ``projection``/``net`` per block; ``c`` the stem width (64 for R50-1x)."""

    def __init__(self, c, sk, classes=10, layers=(3, 4, 6, 3)):
        super().__init__()
        stem = ([_conv(3, c // 2, 3, 2), _bnrelu(c // 2), _conv(c // 2, c // 2), _bnrelu(c // 2),
                 _conv(c // 2, c)] if sk else [_conv(3, c, 7, 2)])
        stages, i = [], c
        for n, p, s in zip(layers, (c, 2 * c, 4 * c, 8 * c), (1, 2, 2, 2)):
            stages.append(_Stage(n, i, p, s, sk))
            i = 4 * p
        self.net = nn.Sequential(nn.Sequential(*stem, _bnrelu(c), nn.MaxPool2d(3, 2, 1)), *stages)
        self.fc = nn.Linear(i, classes)

    def forward(self, x):
        return self.net(x).mean(dim=(2, 3))


def _swav_heads(g: torch.Generator, dim: int = 2048, hidden: int = 2048, out: int = 128,
                prototypes: int = 3000) -> dict:
    """SwAV's ``projection_head`` (Linear, BN, ReLU, Linear) and ``prototypes`` tensors."""
    return {"projection_head.0.weight": torch.randn(hidden, dim, generator=g) * dim ** -0.5,
            "projection_head.0.bias": torch.zeros(hidden),
            "projection_head.1.weight": torch.ones(hidden), "projection_head.1.bias": torch.zeros(hidden),
            "projection_head.1.running_mean": torch.zeros(hidden),
            "projection_head.1.running_var": torch.ones(hidden),
            "projection_head.1.num_batches_tracked": torch.tensor(0),
            "projection_head.3.weight": torch.randn(out, hidden, generator=g) * hidden ** -0.5,
            "projection_head.3.bias": torch.zeros(out),
            "prototypes.weight": torch.randn(prototypes, out, generator=g) * out ** -0.5}


def official_state(name: str, seed: int = 0):
    """The object the publisher of zoo model ``name`` saved, with random weights."""
    entry = get_entry(name)
    method, depth = entry.method, entry.arch.get("depth", 50)
    g = torch.Generator().manual_seed(seed)
    if method == "simclrv2":
        width, sk = entry.arch.get("width", 1), entry.arch.get("sk", False)
        layers = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}[depth]
        conv = ConverterResNet(64 * width, sk, classes=1000, layers=layers)
        head = {"layers.0.weight": torch.randn(128, conv.fc.in_features, generator=g) * 0.01}
        return {"resnet": random_state(conv, seed), "head": head}
    if entry.arch.get("width", 1) != 1:
        raise ValueError(f"{name}: width {entry.arch['width']} checkpoints are not fabricated "
                         "(torchvision has no every-channel-doubled ResNet)")
    tv = getattr(torchvision.models, f"resnet{depth}")()
    state = random_state(tv, seed)
    if method == "supervised":
        return state
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    if method == "barlowtwins":
        return state
    if method in ("swav", "deepclusterv2"):
        return {f"module.{k}": v for k, v in {**state, **_swav_heads(g)}.items()}
    raise ValueError(f"{name}: no published layout known for method {method!r}")


def write_official_checkpoint(name: str, folder, seed: int = 0) -> Path:
    """Write ``official_state(name)`` into ``folder`` under the published file name; its path."""
    entry = get_entry(name)
    path = Path(folder) / entry.weights.filename
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(official_state(name, seed), path)
    return path
