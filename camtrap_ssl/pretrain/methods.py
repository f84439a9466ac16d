"""The pretraining methods: supervised and four self-supervised objectives, each a small module.

Each method is an :class:`Objective`: an ``nn.Module`` holding its heads and its loss, called as
``objective(backbone, views, labels, index) -> loss``, with class attributes and hooks for what
differs between methods (whether it needs labels, the input statistics its backbone is trained
with, work before each epoch). The shared loop (:mod:`camtrap_ssl.pretrain.loop`) calls those and
never names a method. The design follows solo-learn (github.com/vturrisi/solo-learn): one base
method class, and e.g. ``solo/methods/deepclusterv2.py`` reclusters in its own
``on_train_epoch_start`` override. :data:`OBJECTIVES` lists the methods; their paradigm and family
come from :data:`camtrap_ssl.models.registry.METHOD_TABLE`.

Losses and heads come from lightly where it has them (NT-Xent, Barlow Twins, the projection
heads); SwAV's codes come from a log-domain Sinkhorn written here (see :class:`SwAV`).
DeepCluster-v2, which lightly lacks, is written here: its prototypes are the k-means centroids of
the previous epoch's embeddings, and each crop is trained to predict its image's cluster.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from camtrap_ssl.models import IMAGENET_MEAN, IMAGENET_STD
from camtrap_ssl.models.registry import METHOD_TABLE


class Objective(nn.Module):
    """What every method shares; subclasses override the attributes and hooks they need.

    ``needs_labels``: the loop refuses to run without labels and sizes the head from them.
    ``mean``/``std``: the preprocessing the backbone is built with (and records in its checkpoint).
    """

    needs_labels = False
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD

    @classmethod
    def create(cls, dim: int, num_classes: int, n_images: int) -> Objective:
        """Build from the sizes the loop knows; most methods need only the feature dimension."""
        return cls(dim)

    def on_epoch_start(self, backbone: nn.Module, images: np.ndarray, epoch: int, cfg,
                       generator: torch.Generator) -> None:
        """Called before each epoch with the uint8 NHWC images, the 0-based epoch, the
        :class:`~camtrap_ssl.pretrain.loop.PretrainConfig` and a generator seeded from its seed
        (the only randomness a hook may draw). Nothing by default."""


class Supervised(Objective):
    needs_labels = True

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.head = nn.Linear(dim, num_classes)

    @classmethod
    def create(cls, dim, num_classes, n_images):
        return cls(dim, num_classes)

    def forward(self, backbone, views, labels, index):
        return F.cross_entropy(self.head(backbone.forward_features(views[0])), labels)


class SimCLR(Objective):
    """SimCLRv2: a deeper (3-layer) projection head and NT-Xent.

    Its backbone sees unnormalized [0, 1] RGB, as the official SimCLRv2 models do.
    """

    mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)

    def __init__(self, dim: int, temperature: float = 0.2):
        super().__init__()
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead
        self.head = SimCLRProjectionHead(dim, dim, 128, num_layers=3)
        self.loss = NTXentLoss(temperature=temperature)

    def forward(self, backbone, views, labels, index):
        z = [self.head(backbone.forward_features(v)) for v in views[:2]]
        return self.loss(z[0], z[1])


class BarlowTwins(Objective):
    def __init__(self, dim: int, proj: int = 512):
        super().__init__()
        from lightly.loss import BarlowTwinsLoss
        from lightly.models.modules import BarlowTwinsProjectionHead
        self.head = BarlowTwinsProjectionHead(dim, proj, proj)
        self.loss = BarlowTwinsLoss(lambda_param=5e-3)

    def forward(self, backbone, views, labels, index):
        z = [self.head(backbone.forward_features(v)) for v in views[:2]]
        return self.loss(z[0], z[1])


class SwAV(Objective):
    """SwAV: multi-crop views, online Sinkhorn-Knopp codes, swapped prediction.

    Each large crop's scores against the prototypes are turned into codes that split the batch
    evenly over the prototypes (Sinkhorn-Knopp); every other crop predicts those codes. Two
    departures from the ImageNet recipe make it learn on a CPU budget (a few hundred steps of
    batch 128 instead of hundreds of thousands of batch 4096), both measured on the demo world:

    * ``epsilon=0.01``, not 0.05. With soft codes the swapped prediction is won by making every
      score alike (loss stuck at log K, codes near uniform, the shipped checkpoint of that recipe
      probed below random init). Sharper codes push the other way. lightly's ``sinkhorn``
      exponentiates ``scores / epsilon`` directly, which at this epsilon overflows float32, so
      the codes here come from a log-domain Sinkhorn (:func:`sinkhorn_codes`).
    * Prototypes: 512 unit vectors without bias, frozen at their random initialization for
      ``frozen_steps`` (the official code freezes them for the first epoch; here, by default,
      for the whole short run). Learned prototypes crowded together in short trials (about 11
      of 128 in use per batch) while fixed random ones stayed spread.

    No queue: with 512 prototypes the batch of 128 is enough for the equipartition, and the
    queue of stale projections slowed the start in the same trials.
    """

    def __init__(self, dim: int, n_prototypes: int = 512, epsilon: float = 0.01,
                 temperature: float = 0.1, sinkhorn_iterations: int = 3,
                 frozen_steps: int | None = None):
        super().__init__()
        from lightly.models.modules import SwaVProjectionHead
        self.head = SwaVProjectionHead(dim, dim, 128)
        self.prototypes = nn.Linear(128, n_prototypes, bias=False)
        self.epsilon, self.temperature, self.iterations = epsilon, temperature, sinkhorn_iterations
        self.frozen_steps = frozen_steps
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def forward(self, backbone, views, labels, index):
        with torch.no_grad():
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        frozen = self.frozen_steps is None or int(self.step) < self.frozen_steps
        self.prototypes.requires_grad_(not frozen)
        self.step += 1
        scores = [self.prototypes(F.normalize(self.head(backbone.forward_features(v)), dim=1))
                  for v in views]
        loss = 0.0
        for i in (0, 1):  # codes come from the two large crops
            codes = sinkhorn_codes(scores[i].detach(), self.epsilon, self.iterations)
            loss = loss + sum(-(codes * F.log_softmax(s / self.temperature, dim=1)).sum(1).mean()
                              for v, s in enumerate(scores) if v != i) / (len(scores) - 1)
        return loss / 2


@torch.no_grad()
def sinkhorn_codes(scores: torch.Tensor, epsilon: float, iterations: int = 3) -> torch.Tensor:
    """Soft codes (B, K) of ``scores`` (B, K): each row sums to 1; each prototype's total mass
    *approaches* B/K as ``iterations`` grows.

    Sinkhorn-Knopp on ``exp(scores / epsilon)`` as in SwAV, alternately normalizing prototypes
    and samples, computed in log space so that a small ``epsilon`` neither overflows nor
    underflows. The last step normalizes samples, so rows sum to 1 exactly whatever
    ``iterations``; the prototype marginals (column sums) equal B/K only at convergence.

    What the shipped SwAV recipe's 3 iterations give (SwAV's own default, kept so the shipped
    checkpoints stay reproducible), measured at its setting (epsilon 0.01, B = 128, K = 512, unit
    vectors scored against frozen random unit prototypes, as at the start of pretraining): column
    masses off B/K by 12 % on average and by up to 67 % (1 iteration: 24 % / 191 %; 10: 1.7 % /
    12 %; 30: < 1 %; converged by about 50), and each sample's strongest prototype agrees with
    the converged codes' for 87.5 % of samples (98 % at 10 iterations). At B = 32 (the tiny
    profile): 9 % / 35 %. So with 3 iterations the equipartition is approximate: codes are
    slightly less even over prototypes than SwAV's objective states. What converged codes would
    change in the pretrained backbone has not been measured (it needs a pretraining run).
    """
    n, k = scores.shape
    log_q = scores.float() / epsilon
    for _ in range(iterations):
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - math.log(k)
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(n)
    return torch.exp(log_q + math.log(n))


class DeepClusterV2(Objective):
    """DeepCluster-v2 (Caron et al. 2020, written here: lightly lacks it).

    A memory bank keeps each image's latest embedding of its two large crops. Before every epoch
    :meth:`recluster` runs spherical k-means on the bank; the centroids become the (frozen)
    prototypes and each image's cluster its target. During the epoch every crop is trained to
    predict that target with a temperature-scaled cross-entropy over prototype similarities.
    """

    def __init__(self, dim: int, n_images: int, n_clusters: int = 64, temperature: float = 0.1):
        super().__init__()
        from lightly.models.modules import SwaVProjectionHead
        self.head = SwaVProjectionHead(dim, dim, 128)
        self.temperature = temperature
        self.n_clusters = n_clusters
        self.register_buffer("bank", F.normalize(torch.randn(n_images, 128), dim=1))
        self.register_buffer("assignments", torch.zeros(n_images, dtype=torch.long))
        self.register_buffer("centroids", F.normalize(torch.randn(n_clusters, 128), dim=1))

    @classmethod
    def create(cls, dim, num_classes, n_images):
        return cls(dim, n_images)

    def on_epoch_start(self, backbone, images, epoch, cfg, generator):
        """Fill the bank once before the first epoch, then re-cluster it before every epoch."""
        if epoch == 0:
            self.bank.copy_(self.embed(backbone, images, cfg.input_size))
        self.recluster(generator)

    @torch.no_grad()
    def embed(self, backbone, images: np.ndarray, input_size: int) -> torch.Tensor:
        """Every image's unit embedding at ``input_size``, so that the first k-means has data."""
        backbone.eval()
        out = []
        for i in range(0, len(images), 256):
            x = torch.from_numpy(images[i:i + 256]).permute(0, 3, 1, 2).float() / 255
            x = F.interpolate(x, size=input_size, mode="bilinear", align_corners=False)
            out.append(F.normalize(self.head(backbone.forward_features(x)), dim=1))
        backbone.train()
        return torch.cat(out)

    @torch.no_grad()
    def recluster(self, generator: torch.Generator, iters: int = 10):
        self.centroids.copy_(spherical_kmeans(self.bank, self.n_clusters, iters, generator))
        self.assignments.copy_((self.bank @ self.centroids.T).argmax(1))

    def forward(self, backbone, views, labels, index):
        z = [F.normalize(self.head(backbone.forward_features(v)), dim=1) for v in views]
        with torch.no_grad():
            self.bank[index] = F.normalize(z[0].detach() + z[1].detach(), dim=1)
        target = self.assignments[index]
        return sum(F.cross_entropy(zi @ self.centroids.T / self.temperature, target)
                   for zi in z) / len(z)


def spherical_kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator) -> torch.Tensor:
    """k-means on the unit sphere (cosine similarity); empty clusters are re-seeded at random."""
    centroids = x[torch.randperm(len(x), generator=generator)[:k]].clone()
    for _ in range(iters):
        assign = (x @ centroids.T).argmax(1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k)
        empty = counts == 0
        if empty.any():
            sums[empty] = x[torch.randint(len(x), (int(empty.sum()),), generator=generator)]
        centroids = F.normalize(sums, dim=1)
    return centroids


OBJECTIVES: dict[str, type[Objective]] = {
    "supervised": Supervised, "simclr": SimCLR, "barlowtwins": BarlowTwins, "swav": SwAV,
    "deepclusterv2": DeepClusterV2,
}
METHODS = tuple(OBJECTIVES)
PARADIGM = {m: METHOD_TABLE[m][0] for m in METHODS}
FAMILY = {m: METHOD_TABLE[m][1] for m in METHODS}


def objective_class(method: str) -> type[Objective]:
    if method not in OBJECTIVES:
        raise ValueError(f"method={method!r} is not a pretraining method; allowed: {list(METHODS)}")
    return OBJECTIVES[method]


def make_objective(method: str, dim: int, num_classes: int, n_images: int) -> Objective:
    return objective_class(method).create(dim, num_classes, n_images)


def preprocessing_for(method: str) -> tuple[tuple, tuple]:
    """The (mean, std) a backbone pretrained with ``method`` normalizes its [0, 1] input with."""
    cls = objective_class(method)
    return cls.mean, cls.std
