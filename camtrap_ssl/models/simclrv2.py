"""SimCLRv2's ResNets (Chen et al. 2020, "Big Self-Supervised Models are Strong Semi-Supervised
Learners"), written as members of this package's ResNet family so the analyses see the usual
``conv1``/``bn1``/``layer1``..``layer4``/``fc`` names.

Without selective kernels (``sk0``) a SimCLRv2 ResNet is a torchvision-layout ResNet whose every
channel count is multiplied by ``width``. With selective kernels (``sk1``, SK ratio 0.0625) the
TensorFlow code changes three things, reproduced here:

* **Stem**: three 3x3 convs of widths c/2, c/2, c (stride 2 on the first) instead of one 7x7.
  ``conv1`` is ``Sequential(conv, bn, relu, conv, bn, relu, conv)`` and ``bn1`` the BN after the
  last conv (timm's deep-stem layout).
* **Projection shortcut** (ResNet-D): 2x2 average pooling, then a stride-1 1x1 conv, instead of a
  strided 1x1 conv. ``downsample = Sequential(pool, conv, bn)``. The pooling follows TF exactly:
  for stride 2, zero-pad bottom/right by one then a 2x2/2 window; for stride 1 (layer1), a 2x2/1
  window with TF "SAME" padding, which averages only real pixels at the border. (The community
  PyTorch converter zero-pads and counts the zeros for stride 1 too, which differs from TF on the
  last row/column only.)
* **Selective-kernel 3x3 conv** (:class:`SelectiveKernelConv`). SKNet proper fuses a 3x3 and a
  dilated 3x3 (5x5-equivalent) branch; SimCLRv2 instead computes *both branches with one 3x3 conv
  of 2x output channels* (no dilation), BN + ReLU, splits the channels in two, and mixes the two
  halves with per-channel softmax weights computed from the globally pooled sum of the branches
  through 1x1 conv -> BN -> ReLU -> 1x1 conv (hidden width ``max(int(C * 0.0625), 32)``). We follow
  SimCLRv2, because that is what the published checkpoints contain.

The stem max-pool uses TF "SAME" padding (bottom/right) as the TF code does. Convs match TF's
``conv2d_fixed_padding`` (symmetric padding for odd kernels). BN epsilon is 1e-5 as in the TF code.

Checkpoint layout of the SimCLRv2-Pytorch converter and how :func:`simclrv2_keys` maps it
(``{'resnet': state_dict, 'head': contrastive_head}``; the head is dropped). ``net.0`` is the stem,
``net.{s}.blocks.{i}`` block ``i`` of stage ``s``; the converter wraps each BN in a
``Sequential(BN, ReLU)``, hence the trailing ``.0``::

    converter                               this package
    net.0.0                 (7x7 conv)      conv1            (sk0)
    net.0.1.0               (BN)            bn1              (sk0)
    net.0.0 / .1.0 / .2 / .3.0 / .4         conv1.0 / .1 / .3 / .4 / .6   (sk1 deep stem)
    net.0.5.0                               bn1              (sk1)
    net.{s}.blocks.{i}.                     layer{s}.{i}.
      net.0 / net.1.0                       conv1 / bn1
      net.2 / net.3.0                       conv2 / bn2              (sk0)
      net.4 / net.5.0                       conv3 / bn3              (sk0)
      net.2.main_conv.0 / .main_conv.1.0    conv2.conv / conv2.bn    (sk1)
      net.2.mixing_conv.0 / .1.0 / .2       conv2.fc1 / conv2.fc_bn / conv2.fc2   (sk1)
      net.3 / net.4.0                       conv3 / bn3              (sk1)
      projection.shortcut                   downsample.0     (sk0, strided 1x1 conv)
      projection.shortcut.2                 downsample.1     (sk1, 1x1 conv after the pool)
      projection.bn.0                       downsample.1 (sk0) / downsample.2 (sk1)
    fc                                      fc  (the supervised linear head; kept only on request)
"""
from __future__ import annotations

import re
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .resnet import BLOCK_LAYOUTS, Bottleneck, ResNet, conv3x3

SK_RATIO = 0.0625
SK_MIN_DIM = 32


class SelectiveKernelConv(nn.Module):
    """SimCLRv2's selective-kernel 3x3 conv; output is already BN'd and ReLU'd (see module doc)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, sk_ratio: float = SK_RATIO,
                 min_dim: int = SK_MIN_DIM):
        super().__init__()
        if sk_ratio <= 0:
            raise ValueError(f"sk_ratio must be > 0 for a selective-kernel conv, got {sk_ratio}")
        mid = max(int(cout * sk_ratio), min_dim)
        self.conv = conv3x3(cin, 2 * cout, stride)  # both branches in one conv
        self.bn = nn.BatchNorm2d(2 * cout)
        self.fc1 = nn.Conv2d(cout, mid, 1, bias=False)
        self.fc_bn = nn.BatchNorm2d(mid)
        self.fc2 = nn.Conv2d(mid, 2 * cout, 1, bias=False)
        self.relu = nn.ReLU()  # a module, so attribution hooks (guided backprop) see it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn(self.conv(x)))
        a, b = y.chunk(2, dim=1)
        s = (a + b).mean(dim=(2, 3), keepdim=True)
        za, zb = self.fc2(self.relu(self.fc_bn(self.fc1(s)))).chunk(2, dim=1)
        w = torch.softmax(torch.stack((za, zb)), dim=0)  # over the two branches, per channel
        return w[0] * a + w[1] * b


class TFShortcutPool(nn.Module):
    """ResNet-D shortcut pooling exactly as SimCLRv2's TF code (see module doc)."""

    def __init__(self, stride: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 1, 0, 1))
        if self.stride == 2:  # fixed padding then VALID: padded zeros count
            return F.avg_pool2d(x, 2, 2)
        ones = F.pad(torch.ones_like(x[:1, :1, :-1, :-1]), (0, 1, 0, 1))
        return F.avg_pool2d(x, 2, 1) / F.avg_pool2d(ones, 2, 1)  # SAME: real pixels only


class TFSameMaxPool2d(nn.Module):
    """3x3/2 max-pool with TF "SAME" padding (extra padding goes bottom/right)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for n in (x.shape[-1], x.shape[-2]):
            total = max((-(-n // 2) - 1) * 2 + 3 - n, 0)
            pads += [total // 2, total - total // 2]
        return F.max_pool2d(F.pad(x, pads, value=float("-inf")), 3, 2)


def simclrv2_resnet(depth: int = 50, width: float = 1, sk: bool = False, num_classes: int | None = None,
                    mean=0.0, std=1.0, sk_ratio: float = SK_RATIO) -> ResNet:
    """A SimCLRv2 ResNet (depth 50/101/152, selective kernels on/off).

    Published widths are 1, 2 and 3; fractional widths build small copies for tests.

    SimCLR was trained on unnormalized [0, 1] RGB, hence mean 0 / std 1 by default.
    """
    if depth not in (50, 101, 152):
        raise ValueError(f"SimCLRv2 depth must be 50, 101 or 152, got {depth!r}")
    if not (isinstance(width, (int, float)) and width > 0):
        raise ValueError(f"width must be positive (published: 1, 2, 3), got {width!r}")
    _, layers = BLOCK_LAYOUTS[depth]
    model = ResNet(Bottleneck, layers, width=width, stem="deep" if sk else "default",
                   avg_down=sk, mid_conv=partial(SelectiveKernelConv, sk_ratio=sk_ratio) if sk else None,
                   shortcut_pool=TFShortcutPool, num_classes=num_classes, mean=mean, std=std)
    model.maxpool = TFSameMaxPool2d()
    return model


_BLOCK_SK0 = {"net.0": "conv1", "net.1.0": "bn1", "net.2": "conv2", "net.3.0": "bn2",
              "net.4": "conv3", "net.5.0": "bn3", "projection.shortcut": "downsample.0",
              "projection.bn.0": "downsample.1"}
_BLOCK_SK1 = {"net.0": "conv1", "net.1.0": "bn1", "net.2.main_conv.0": "conv2.conv",
              "net.2.main_conv.1.0": "conv2.bn", "net.2.mixing_conv.0": "conv2.fc1",
              "net.2.mixing_conv.1.0": "conv2.fc_bn", "net.2.mixing_conv.2": "conv2.fc2",
              "net.3": "conv3", "net.4.0": "bn3", "projection.shortcut.2": "downsample.1",
              "projection.bn.0": "downsample.2"}
_STEM_SK0 = {"net.0.0": "conv1", "net.0.1.0": "bn1"}
_STEM_SK1 = {"net.0.0": "conv1.0", "net.0.1.0": "conv1.1", "net.0.2": "conv1.3",
             "net.0.3.0": "conv1.4", "net.0.4": "conv1.6", "net.0.5.0": "bn1"}
_BLOCK_RE = re.compile(r"^net\.([1-4])\.blocks\.(\d+)\.(.+)$")


def simclrv2_keys(checkpoint: dict) -> dict:
    """Converter checkpoint (``{'resnet': ..., 'head': ...}`` or the bare ``resnet`` dict) ->
    this package's keys. The contrastive ``head`` is dropped; ``fc`` is passed through.

    Selective kernels are detected from the keys. A key outside the documented layout raises
    ``ValueError`` naming it, so a different converter is never silently half-loaded.
    """
    sd = checkpoint.get("resnet", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(sd, dict):
        raise ValueError("SimCLRv2 checkpoint must be a dict with a 'resnet' state dict")
    if "resnet" not in checkpoint and not any(k.startswith("net.0.") for k in sd):
        raise ValueError("not a SimCLRv2-Pytorch converter checkpoint: expected a 'resnet' entry "
                         f"or 'net.0.*' keys, got keys like {list(sd)[:5]}")
    sk = any(".main_conv." in k for k in sd)
    stem, block = (_STEM_SK1, _BLOCK_SK1) if sk else (_STEM_SK0, _BLOCK_SK0)
    out = {}
    for key, value in sd.items():
        module, _, param = key.rpartition(".")
        if module == "fc":
            new = key
        elif module in stem:
            new = f"{stem[module]}.{param}"
        else:
            m = _BLOCK_RE.match(module)
            if m is None or m.group(3) not in block:
                raise ValueError(f"unrecognized SimCLRv2 converter key {key!r} "
                                 f"(selective kernels {'on' if sk else 'off'})")
            new = f"layer{m.group(1)}.{m.group(2)}.{block[m.group(3)]}.{param}"
        out[new] = value
    return out
