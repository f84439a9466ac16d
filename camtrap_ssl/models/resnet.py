"""One ResNet family for every backbone of the study, from 8-channel toys to SimCLRv2 R152.

Why one family: the analyses (blocks, hooks, attribution) and every checkpoint in SPEC section 3
assume torchvision's module names (``conv1``/``bn1``/``layer1``..``layer4``/``fc``), so a single
class with a few switches lets torchvision, Barlow Twins, SwAV and DeepCluster-v2 state dicts load
by name, and lets the embedded demo backbones share the exact code path of the paper-scale ones.

The switches:

* ``width`` scales **every** channel count, stem included (the SimCLR/SwAV "2x" convention, not
  torchvision's ``wide_resnet50_2``). Fractional widths give small embedded models.
* ``stem``: ``"default"`` (7x7 stride-2 conv + 3x3 max-pool, ImageNet), ``"small"`` (one 3x3
  stride-2 conv, no max-pool: a 64 px input ends in 4x4 layer4 maps) or ``"deep"`` (three 3x3
  convs of widths c/2, c/2, c, as SimCLRv2's selective-kernel models use; ``conv1`` is then a
  ``Sequential`` and ``bn1`` the BN after its last conv, the layout timm uses for deep stems).
* ``avg_down``: the projection shortcut is average pooling + 1x1 conv (``downsample`` =
  ``Sequential(pool, conv, bn)``) instead of a strided 1x1 conv (``Sequential(conv, bn)``).
* ``mid_conv``: a factory replacing the bottleneck's 3x3 conv (used for selective kernels).

ReLUs are not in-place (unlike torchvision) so that attribution hooks (guided backprop, DeconvNet,
Grad-CAM) can wrap them; that changes no parameter or key.

The model **carries its own preprocessing**: non-persistent buffers ``mean``/``std`` of shape
(1, 3, 1, 1) normalize [0, 1] inputs as the first step of ``forward`` (ARCHITECTURE.md). They are
non-persistent so that published state dicts (which have no such keys) load unchanged.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

STEMS = ("default", "small", "deep")


def scaled(channels: int, width: float) -> int:
    """Channel count ``channels * width`` rounded, at least 1 (fractional widths allowed)."""
    return max(1, int(round(channels * width)))


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-10/18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, mid_conv: Callable | None = None):
        super().__init__()
        if mid_conv is not None:
            raise ValueError("mid_conv (selective kernels) is only defined for Bottleneck blocks")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (stride here, torchvision "v1.5"), 1x1 expand by 4.

    With ``mid_conv`` the 3x3 conv is replaced by a module that already ends in BN + ReLU (a
    selective-kernel conv), so ``bn2`` is an ``Identity`` and the following ReLU is a no-op.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, mid_conv: Callable | None = None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        if mid_conv is None:
            self.conv2 = conv3x3(planes, planes, stride)
            self.bn2 = nn.BatchNorm2d(planes)
        else:
            self.conv2 = mid_conv(planes, planes, stride)
            self.bn2 = nn.Identity()
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


BLOCK_LAYOUTS: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    10: (BasicBlock, (1, 1, 1, 1)),
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


def _as_stat(value: Sequence[float] | float, name: str) -> torch.Tensor:
    """Validate in plain Python (works on the meta device too), then make a (1, 3, 1, 1) buffer."""
    vals = [float(value)] * 3 if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3:
        raise ValueError(f"{name} must be a float or 3 floats (one per RGB channel), got {value!r}")
    if name == "std" and min(vals) <= 0:
        raise ValueError(f"std must be positive, got {value!r}")
    return torch.tensor(vals, dtype=torch.float32).view(1, 3, 1, 1)


def _avg_pool(stride: int) -> nn.Module:
    """Default ResNet-D shortcut pooling (averages real pixels only at odd borders)."""
    if stride == 1:
        return nn.Identity()
    return nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)


class ResNet(nn.Module):
    """ResNet with torchvision module names, built-in input normalization and width scaling.

    ``forward(x01)`` takes [0, 1] images (N, 3, H, W) and returns logits (or pooled features when
    ``fc`` is ``Identity``). ``forward_features(x01)`` returns the pooled (N, num_features)
    features whatever the head.
    """

    def __init__(self, block: type[nn.Module], layers: Sequence[int], width: float = 1.0,
                 stem: str = "default", avg_down: bool = False, mid_conv: Callable | None = None,
                 num_classes: int | None = None, mean: Sequence[float] | float = IMAGENET_MEAN,
                 std: Sequence[float] | float = IMAGENET_STD, zero_init_residual: bool = False,
                 shortcut_pool: Callable[[int], nn.Module] | None = None):
        super().__init__()
        if not (isinstance(width, (int, float)) and width > 0):
            raise ValueError(f"width must be a positive number, got {width!r}")
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"layers must be 4 positive block counts, got {list(layers)!r}")
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"num_classes must be None or a positive int, got {num_classes!r}")
        self.register_buffer("mean", _as_stat(mean, "mean"), persistent=False)
        self.register_buffer("std", _as_stat(std, "std"), persistent=False)
        self.width = float(width)
        self.stem_type = stem
        build = dict(avg_down=avg_down, mid_conv=mid_conv, shortcut_pool=shortcut_pool or _avg_pool)

        c = scaled(64, width)
        if stem == "default":
            self.conv1 = nn.Conv2d(3, c, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        elif stem == "small":
            self.conv1 = conv3x3(3, c, stride=2)
            self.maxpool = nn.Identity()
        else:  # deep
            half = max(1, c // 2)
            self.conv1 = nn.Sequential(
                conv3x3(3, half, stride=2), nn.BatchNorm2d(half), nn.ReLU(),
                conv3x3(half, half), nn.BatchNorm2d(half), nn.ReLU(),
                conv3x3(half, c))
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU()

        self.inplanes = c
        self.layer1 = self._make_layer(block, scaled(64, width), layers[0], 1, **build)
        self.layer2 = self._make_layer(block, scaled(128, width), layers[1], 2, **build)
        self.layer3 = self._make_layer(block, scaled(256, width), layers[2], 2, **build)
        self.layer4 = self._make_layer(block, scaled(512, width), layers[3], 2, **build)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = self.inplanes
        self.fc: nn.Module = nn.Identity()
        self._init_weights(zero_init_residual)
        self.reset_classifier(num_classes)

    def _make_layer(self, block, planes: int, blocks: int, stride: int, avg_down: bool,
                    mid_conv: Callable | None, shortcut_pool: Callable[[int], nn.Module]
                    ) -> nn.Sequential:
        out = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out:
            if avg_down:
                downsample = nn.Sequential(shortcut_pool(stride), conv1x1(self.inplanes, out),
                                           nn.BatchNorm2d(out))
            else:
                downsample = nn.Sequential(conv1x1(self.inplanes, out, stride), nn.BatchNorm2d(out))
        mods = [block(self.inplanes, planes, stride, downsample, mid_conv)]
        self.inplanes = out
        mods += [block(out, planes, 1, None, mid_conv) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:  # each block starts as the identity: helps small-batch SSL
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    # -- head ----------------------------------------------------------------------------------
    def reset_classifier(self, num_classes: int | None) -> None:
        """``None``: no head (``fc = Identity``); an int: a fresh ``Linear(num_features, n)``."""
        if num_classes is None:
            self.fc = nn.Identity()
        elif isinstance(num_classes, int) and num_classes >= 1:
            self.fc = nn.Linear(self.num_features, num_classes)
        else:
            raise ValueError(f"num_classes must be None or a positive int, got {num_classes!r}")

    @property
    def num_classes(self) -> int | None:
        return self.fc.out_features if isinstance(self.fc, nn.Linear) else None

    # -- forward -------------------------------------------------------------------------------
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> the input statistics this backbone was trained on."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (N, 3, H, W) in [0, 1], got {tuple(x.shape)}")
        return (x - self.mean) / self.std

    def forward_maps(self, x: torch.Tensor) -> torch.Tensor:
        """layer4 feature maps (N, num_features, h, w) of [0, 1] images."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.normalize(x)))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally average-pooled features (N, num_features) of [0, 1] images."""
        return torch.flatten(self.avgpool(self.forward_maps(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def resnet(depth: int = 18, width: float = 1.0, small_stem: bool = False,
           num_classes: int | None = None, mean=IMAGENET_MEAN, std=IMAGENET_STD,
           zero_init_residual: bool = False, stem: str | None = None) -> ResNet:
    """Build a torchvision-layout ResNet of ``depth`` in ``BLOCK_LAYOUTS`` (10/18/34/50/101/152).

    ``small_stem=True`` is a shorthand for ``stem="small"``.
    """
    if depth not in BLOCK_LAYOUTS:
        raise ValueError(f"depth must be one of {sorted(BLOCK_LAYOUTS)}, got {depth!r}")
    if stem is None:
        stem = "small" if small_stem else "default"
    elif small_stem and stem != "small":
        raise ValueError(f"small_stem=True contradicts stem={stem!r}")
    block, layers = BLOCK_LAYOUTS[depth]
    return ResNet(block, layers, width=width, stem=stem, num_classes=num_classes, mean=mean,
                  std=std, zero_init_residual=zero_init_residual)


def count_params(model: nn.Module, include_fc: bool = False) -> int:
    """Number of parameters, without the classifier ``fc`` unless asked (the study's convention)."""
    return sum(p.numel() for n, p in model.named_parameters()
               if include_fc or not (n == "fc" or n.startswith("fc.")))
