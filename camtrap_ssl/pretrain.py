"""Pretraining the embedded backbones: supervised and four self-supervised methods, one loop.

The study compares representations pretrained on ImageNet. Here the same five kinds of
representation are pretrained on the embedded source world (or, unlabelled, on a camera-trap
target: in-domain SSL). Each method is a small ``nn.Module`` holding its heads and its loss; the
loop in :func:`pretrain` is the same for all of them and reads top to bottom.

Losses and heads come from lightly where it has them (NT-Xent, Barlow Twins, the projection
heads); SwAV's codes come from a log-domain Sinkhorn written here (see :class:`SwAV`). The views
follow the SimCLR and SwAV multi-crop recipes but are computed on whole batches
(:mod:`camtrap_ssl.views`), because lightly's per-image PIL transforms dominated the step time on
a CPU. DeepCluster-v2, which lightly lacks, is written here: its prototypes are the k-means
centroids of the previous epoch's embeddings, and each crop is trained to predict its image's
cluster.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import runs
from .views import recipe_for

METHODS = ("supervised", "simclr", "barlowtwins", "swav", "deepclusterv2")
PARADIGM = {"supervised": "SL", "simclr": "SSL", "barlowtwins": "SSL", "swav": "SSL",
            "deepclusterv2": "SSL"}
FAMILY = {"supervised": None, "simclr": "instance", "barlowtwins": "instance", "swav": "cluster",
          "deepclusterv2": "cluster"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocessing_for(method: str) -> tuple[tuple, tuple]:
    """SimCLR models see unnormalized [0, 1] RGB (as the official SimCLRv2 ones); others ImageNet."""
    return ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)) if method == "simclr" else (IMAGENET_MEAN, IMAGENET_STD)


@dataclass(frozen=True)
class PretrainConfig:
    method: str
    arch: str
    epochs: int
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    input_size: int = 64

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} is not a pretraining method; allowed: {list(METHODS)}")
        for name in ("epochs", "batch_size", "input_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


# ---------------------------------------------------------------------------------------------
# Objectives: each holds its heads and returns a scalar loss from the backbone and the views.

class Supervised(nn.Module):
    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.head = nn.Linear(dim, num_classes)

    def forward(self, backbone, views, labels, index):
        return F.cross_entropy(self.head(backbone.forward_features(views[0])), labels)


class SimCLR(nn.Module):
    """SimCLRv2: a deeper (3-layer) projection head and NT-Xent."""

    def __init__(self, dim: int, temperature: float = 0.2):
        super().__init__()
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead
        self.head = SimCLRProjectionHead(dim, dim, 128, num_layers=3)
        self.loss = NTXentLoss(temperature=temperature)

    def forward(self, backbone, views, labels, index):
        z = [self.head(backbone.forward_features(v)) for v in views[:2]]
        return self.loss(z[0], z[1])


class BarlowTwins(nn.Module):
    def __init__(self, dim: int, proj: int = 512):
        super().__init__()
        from lightly.loss import BarlowTwinsLoss
        from lightly.models.modules import BarlowTwinsProjectionHead
        self.head = BarlowTwinsProjectionHead(dim, proj, proj)
        self.loss = BarlowTwinsLoss(lambda_param=5e-3)

    def forward(self, backbone, views, labels, index):
        z = [self.head(backbone.forward_features(v)) for v in views[:2]]
        return self.loss(z[0], z[1])


class SwAV(nn.Module):
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
    """Soft codes (B, K) of ``scores`` (B, K): each row sums to 1, each prototype gets B/K.

    Sinkhorn-Knopp on ``exp(scores / epsilon)`` as in SwAV, alternately normalizing prototypes
    and samples, computed in log space so that a small ``epsilon`` neither overflows nor
    underflows.
    """
    n, k = scores.shape
    log_q = scores.float() / epsilon
    for _ in range(iterations):
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - math.log(k)
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(n)
    return torch.exp(log_q + math.log(n))


class DeepClusterV2(nn.Module):
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


def make_objective(method: str, dim: int, num_classes: int, n_images: int) -> nn.Module:
    if method == "supervised":
        return Supervised(dim, num_classes)
    if method == "simclr":
        return SimCLR(dim)
    if method == "barlowtwins":
        return BarlowTwins(dim)
    if method == "swav":
        return SwAV(dim)
    if method == "deepclusterv2":
        return DeepClusterV2(dim, n_images)
    raise ValueError(f"method={method!r}; allowed: {list(METHODS)}")


# ---------------------------------------------------------------------------------------------

def pretrain(cfg: PretrainConfig, images: np.ndarray, labels: np.ndarray | None, out: str | Path,
             num_classes: int | None = None, progress: bool = True, data_identity: dict | None = None,
             max_seconds: float | None = None) -> Path:
    """Pretrain ``cfg.arch`` with ``cfg.method`` on uint8 NHWC ``images``; return the checkpoint path.

    The checkpoint (``out``) holds the backbone state dict in half precision and a ``record`` with
    the configuration, seed, code version, data identity and wall time. A resumable training state
    is kept beside it (``out`` + ``.state``) after every epoch and removed at the end, so a killed
    run continues where it stopped. ``max_seconds`` stops early (between epochs) for time-boxed runs.
    """
    from .models import create_model

    out = Path(out)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W, 3); got {images.dtype} {images.shape}")
    if cfg.method == "supervised":
        if labels is None:
            raise ValueError("method='supervised' needs labels")
        num_classes = num_classes or int(labels.max()) + 1
    torch.manual_seed(cfg.seed)
    mean, std = preprocessing_for(cfg.method)
    backbone = create_model(cfg.arch, num_classes=None, mean=mean, std=std)
    objective = make_objective(cfg.method, backbone.num_features, num_classes or 0, len(images))
    params = list(backbone.parameters()) + list(objective.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    loader_gen = torch.Generator().manual_seed(cfg.seed)
    recipe = recipe_for(cfg.method, cfg.input_size)
    all_images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # uint8 NCHW
    all_labels = torch.from_numpy(np.asarray(labels, dtype=np.int64)) if labels is not None else \
        torch.full((len(images),), -1)
    steps_per_epoch = len(images) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size={cfg.batch_size} exceeds the {len(images)} images")
    total_steps = cfg.epochs * steps_per_epoch

    state_path = out.with_name(out.name + ".state")
    start_epoch, history, elapsed = 0, [], 0.0
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        if state["config"] == asdict(cfg):
            backbone.load_state_dict(state["backbone"])
            objective.load_state_dict(state["objective"])
            opt.load_state_dict(state["opt"])
            loader_gen.set_state(state["loader_gen"])
            start_epoch, history, elapsed = state["epoch"], state["history"], state["elapsed"]

    cluster_gen = torch.Generator().manual_seed(cfg.seed + 1)
    t0 = time.time() - elapsed
    bar = tqdm(total=total_steps, initial=start_epoch * steps_per_epoch, disable=not progress,
               desc=f"pretrain {cfg.method}")
    backbone.train()
    objective.train()
    epoch = start_epoch
    for epoch in range(start_epoch, cfg.epochs):
        if isinstance(objective, DeepClusterV2):
            if epoch == 0:
                objective.bank.copy_(_embed_bank(backbone, objective, images, cfg))
            objective.recluster(cluster_gen)
        losses = []
        order = torch.randperm(len(images), generator=loader_gen)
        for step in range(steps_per_epoch):
            index = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            views = recipe(all_images[index].float().div_(255), loader_gen)
            y = all_labels[index]
            it = epoch * steps_per_epoch + step
            lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * it / total_steps))  # cosine schedule
            for g in opt.param_groups:
                g["lr"] = lr
            loss = objective(backbone, views, y, index)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)),
                        "seconds": time.time() - t0})
        runs.atomic_torch_save({"config": asdict(cfg), "backbone": backbone.state_dict(),
                                "objective": objective.state_dict(), "opt": opt.state_dict(),
                                "loader_gen": loader_gen.get_state(), "epoch": epoch + 1,
                                "history": history, "elapsed": time.time() - t0}, state_path)
        if max_seconds is not None and time.time() - t0 > max_seconds:
            break
    bar.close()
    record = {
        "config": asdict(cfg), "paradigm": PARADIGM[cfg.method], "family": FAMILY[cfg.method],
        "mean": list(mean), "std": list(std), "epochs_done": history[-1]["epoch"] if history else 0,
        "history": history, "wall_seconds": time.time() - t0, "data": data_identity or {},
        **runs.environment(),
    }
    sd = {k: v.half() if v.is_floating_point() else v for k, v in backbone.state_dict().items()}
    runs.atomic_torch_save({"state_dict": sd, "record": record}, out)
    state_path.unlink(missing_ok=True)
    return out


@torch.no_grad()
def _embed_bank(backbone, objective, images, cfg) -> torch.Tensor:
    """First epoch of DeepCluster-v2: embed every image once so the first k-means has data."""
    backbone.eval()
    out = []
    for i in range(0, len(images), 256):
        x = torch.from_numpy(images[i:i + 256]).permute(0, 3, 1, 2).float() / 255
        x = F.interpolate(x, size=cfg.input_size, mode="bilinear", align_corners=False)
        out.append(F.normalize(objective.head(backbone.forward_features(x)), dim=1))
    backbone.train()
    return torch.cat(out)


def load_pretrained(path: str | Path, num_classes: int | None = None):
    """Build the backbone recorded in a pretraining checkpoint, weights loaded, fresh head."""
    from .models import create_model

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    rec = ckpt["record"]
    model = create_model(rec["config"]["arch"], num_classes=num_classes, mean=rec["mean"],
                         std=rec["std"])
    sd = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise ValueError(f"{path}: checkpoint does not fit {rec['config']['arch']}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.pretrained_record = rec
    return model
