"""Toy networks whose answers are known by construction, shared by the analysis tests.

Each network carries torchvision's block names (``layer1``..``layer4``, ``fc``) so that every
analysis addresses it like a ResNet, and each says in its docstring what a measure must report for
it: that is what makes a test on it a check of the measure rather than a record of its output.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _forward_blocks(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    for i in range(1, 5):
        x = getattr(model, f"layer{i}")(x)
    return x


# ------------------------------------------------------------------ position-dependent
class PositionalNet(nn.Module):
    """Zero-padded strided convs and a head on the *flattened* 4x4 map of a 32-px input: the
    prediction depends on where things are, so it is invariant to nothing."""

    def __init__(self, num_classes=4, width=6):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.layer1 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU())
        self.layer3 = nn.Sequential(nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU())
        self.layer4 = nn.Sequential(nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(width * 4 * 4, num_classes)

    def forward(self, x):
        return self.fc(_forward_blocks(self, self.conv1(x)).flatten(1)) * 5


# ------------------------------------------------------------------ circular convs
def circular_conv(cin, cout, k, stride=1):
    """Circular-padded conv + leaky ReLU (leaky, so no random block goes all-zero)."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2,
                                   padding_mode="circular"), nn.LeakyReLU(0.1))


class AddBias(nn.Module):
    """A learned per-position bias: breaks every spatial equivariance of the block it sits in."""

    def __init__(self, shape):
        super().__init__()
        self.bias = nn.Parameter(torch.randn(*shape))

    def forward(self, x):
        return x + self.bias


class CircularNet(nn.Module):
    """Circular kxk convs with strides ``strides`` and global average pooling.

    * strides (1, 2, 2, 2), kernel 3: exactly equivariant to cyclic shifts by multiples of each
      block's stride (and only those);
    * strides (1, 1, 1, 1): exactly equivariant to every cyclic shift, so the pooled features and
      the logits are exactly *invariant* to them;
    * kernel 1, strides 1: equivariant to shifts, flips and quarter turns.
    ``position_bias=(h, w)`` adds :class:`AddBias` inside layer1, which breaks all of that.
    """

    def __init__(self, kernel=3, strides=(1, 2, 2, 2), position_bias=None, width=5,
                 num_classes=3):
        super().__init__()
        self.conv1 = circular_conv(3, width, kernel)
        self.layer1 = circular_conv(width, width, kernel, strides[0])
        self.layer2 = circular_conv(width, width, kernel, strides[1])
        self.layer3 = circular_conv(width, width, kernel, strides[2])
        self.layer4 = circular_conv(width, width, kernel, strides[3])
        if position_bias is not None:
            self.layer1.append(AddBias((width, *position_bias)))
        self.fc = nn.Linear(width, num_classes)

    def forward_features(self, x):
        return _forward_blocks(self, self.conv1(x)).mean((-2, -1))

    def forward(self, x):
        return self.fc(self.forward_features(x))


# ------------------------------------------------------------------ mirrored filters
class MirrorPairConv(nn.Module):
    """A stride-1 conv whose output channels come in pairs (2j, 2j+1) with the second filter the
    left-right mirror of the first, taken over the input's channel pairs swapped.

    If the input satisfies x(flip img) = P flip x(img), with P swapping channel pairs (or, for
    RGB, P = identity), the output satisfies the same relation: the block is exactly
    flip-equivariant with M_g = P, yet channel by channel (M_g = identity) it is not.
    """

    def __init__(self, cin, cout_pairs, k=3, rgb_input=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout_pairs, cin, k, k) / (cin * k * k) ** 0.5)
        self.bias = nn.Parameter(torch.randn(cout_pairs) * 0.1)
        perm = torch.arange(cin)
        if not rgb_input:
            perm = perm.view(-1, 2).flip(1).reshape(-1)  # swap (2j, 2j+1)
        self.register_buffer("perm", perm, persistent=False)
        self.k = k

    def forward(self, x):
        mirror = torch.flip(self.weight[:, self.perm], dims=(-1,))
        w = torch.stack([self.weight, mirror], 1).flatten(0, 1)  # (2 * pairs, cin, k, k)
        b = self.bias.repeat_interleave(2)
        return F.leaky_relu(F.conv2d(x, w, b, padding=self.k // 2), 0.1)


class MirroredFilterNet(nn.Module):
    """Four blocks of :class:`MirrorPairConv` (zero padding is symmetric at stride 1): every block
    is exactly flip-equivariant up to the channel-pair swap, so a learned M_g (a permutation is a
    1x1 conv) scores zero error and the channel-fixed error is large."""

    def __init__(self, pairs=3, num_classes=3):
        super().__init__()
        self.layer1 = MirrorPairConv(3, pairs, rgb_input=True)
        self.layer2 = MirrorPairConv(2 * pairs, pairs)
        self.layer3 = MirrorPairConv(2 * pairs, pairs)
        self.layer4 = MirrorPairConv(2 * pairs, pairs)
        self.fc = nn.Linear(2 * pairs, num_classes)

    def forward(self, x):
        return self.fc(_forward_blocks(self, x).mean((-2, -1)))


# ------------------------------------------------------------------ random features
class HashFeatures(nn.Module):
    """(N, C, h, w) features sin(scale * W x + b) of the whole image: a fixed random function
    so steep that any visible change of the input gives features unrelated to the old ones, like
    those of another image (the "no invariance, no equivariance at all" end of every scale)."""

    def __init__(self, in_numel, channels, hw, scale=2000.0):
        super().__init__()
        self.register_buffer("w", torch.randn(in_numel, channels * hw * hw))
        self.register_buffer("b", torch.rand(channels * hw * hw) * 6.3)
        self.shape, self.scale = (channels, hw, hw), scale

    def forward(self, x):
        return torch.sin(self.scale * x.flatten(1) @ self.w / x[0].numel() ** 0.5 + self.b
                         ).view(len(x), *self.shape)


class RandomFeatureNet(nn.Module):
    """Every block sees the image through its own :class:`HashFeatures` (blocks at strides
    1, 2, 4, 8 of ``size``); the logits come from layer4."""

    def __init__(self, size=16, channels=4, num_classes=3):
        super().__init__()
        n = 3 * size * size
        self.layer1 = HashFeatures(n, channels, size)
        self.layer2 = HashFeatures(n, channels, size // 2)
        self.layer3 = HashFeatures(n, channels, size // 4)
        self.layer4 = HashFeatures(n, channels, size // 8)
        self.fc = nn.Linear(channels, num_classes)

    def forward_features(self, x):
        for i in range(1, 4):
            getattr(self, f"layer{i}")(x)  # run (for hooks); the blocks are parallel
        return self.layer4(x).mean((-2, -1))

    def forward(self, x):
        return self.fc(self.forward_features(x))


# ------------------------------------------------------------------ residual, with BatchNorm
class ResidualBlock(nn.Module):
    """conv-bn-relu-conv (+ shortcut) -relu: one inplace ReLU module called twice per block,
    as in torchvision's BasicBlock."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.conv2(self.relu(self.bn1(self.conv1(x))))
        return self.relu(out + (out.mean(1, keepdim=True) if x.shape != out.shape else x))


class ResidualTinyNet(nn.Module):
    """A four-block residual net that normalizes its own input, like the package's ResNets."""

    def __init__(self, n_classes=4):
        super().__init__()
        self.layer1 = ResidualBlock(3, 8, 1)
        self.layer2 = ResidualBlock(8, 12, 2)
        self.layer3 = ResidualBlock(12, 16, 2)
        self.layer4 = ResidualBlock(16, 16, 1)
        self.fc = nn.Linear(16, n_classes)

    def forward(self, x):
        return self.fc(_forward_blocks(self, (x - 0.45) / 0.25).mean((2, 3)))


def residual_tiny(seed=0, n_classes=4) -> ResidualTinyNet:
    """A :class:`ResidualTinyNet` in eval mode with non-trivial BN statistics (eval != train)."""
    torch.manual_seed(seed)
    m = ResidualTinyNet(n_classes)
    with torch.no_grad():
        m.layer1.bn1.running_mean.uniform_(-0.2, 0.2)
    return m.eval()


class SmallConvNet(nn.Module):
    """Plain conv-ReLU blocks (stride 2 in layer2), global pooling; weights from ``seed``."""

    def __init__(self, seed, num_classes=3):
        super().__init__()
        torch.manual_seed(seed)

        def c(i, o, s=1):
            return nn.Sequential(nn.Conv2d(i, o, 3, s, 1), nn.ReLU())

        self.layer1, self.layer2 = c(3, 4), c(4, 6, 2)
        self.layer3, self.layer4 = c(6, 6), c(6, 8)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(_forward_blocks(self, x).mean((2, 3)))


class SelfNormalisingNet(nn.Module):
    """Two blocks (the second leaky, so no channel starts dead) that normalise their own input:
    feature visualisation must not normalise again. Weights from seed 0."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layer1 = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        # leaky, so that no channel starts dead and the test does not depend on the seed
        self.layer2 = nn.Sequential(nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.LeakyReLU(0.1))
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = (x - 0.5) / 0.25  # the model normalizes itself: lucent must not do it again
        return self.fc(self.layer2(self.layer1(x)).mean((2, 3)))
