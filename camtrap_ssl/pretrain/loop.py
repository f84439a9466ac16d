"""The pretraining loop: one backbone, one method, the same steps for every method.

The study compares representations pretrained on ImageNet. Here the same five kinds of
representation are pretrained on the embedded source world (or, unlabelled, on a camera-trap
target: in-domain SSL). What differs between methods (heads, loss, labels, input statistics, work
before an epoch such as DeepCluster-v2's k-means) lives on the method objects of
:mod:`camtrap_ssl.pretrain.methods`; :func:`pretrain` calls their hooks and never names a method,
so it reads top to bottom. The views follow the SimCLR and SwAV multi-crop recipes but are computed
on whole batches (:mod:`camtrap_ssl.pretrain.views`), because lightly's per-image PIL transforms
dominated the step time on a CPU. The schedule is AdamW with a cosine learning rate; the state is
saved after every epoch, so a killed run resumes.

The backbone runs in channels_last under bf16 autocast where the CPU multiplies bf16 natively
(``precision="auto"``, as in fine-tuning: :func:`camtrap_ssl.models.utils.resolve_precision`);
heads and losses stay in fp32, because the methods' losses (NT-Xent's similarities, Barlow Twins'
cross-correlation, Sinkhorn's exponentials) are where reduced precision would bite. The record
says which precision ran.

**Budget snapshots.** ``snapshots`` maps a path to an epoch: the backbone after that epoch is
written there as a checkpoint of its own (with its record and ``epochs_done``), so one run yields
a method at a quarter, half and all of its budget. A snapshot is the same run mid-schedule (its
learning rate not yet annealed), not a shorter run with its own cosine schedule.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from camtrap_ssl.core import fileio, provenance
from camtrap_ssl.core.progress import progress_bar
from camtrap_ssl.core.seeding import seeded
from camtrap_ssl.models import create_model
from camtrap_ssl.models.utils import PRECISIONS, autocast, resolve_precision
from camtrap_ssl.models.weights import UnsafeCheckpointError, load_checkpoint
from camtrap_ssl.pretrain.methods import (
    FAMILY,
    PARADIGM,
    make_objective,
    objective_class,
    preprocessing_for,
)
from camtrap_ssl.pretrain.views import recipe_for


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
    precision: str = "auto"  # resolved by pretrain() into "bf16" or "fp32" before it is recorded

    def __post_init__(self):
        objective_class(self.method)  # refuses an unknown method, naming the allowed ones
        for name in ("epochs", "batch_size", "input_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r}; allowed: {list(PRECISIONS)}")


class _Compute:
    """The backbone as the objectives see it: ``forward_features`` in channels_last under the run's
    precision, returning fp32 features (heads and losses stay fp32); everything else (``eval``,
    ``train``) goes to the backbone itself."""

    def __init__(self, backbone: torch.nn.Module, precision: str):
        self._backbone, self._precision = backbone, precision

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        with autocast(x.device, self._precision):
            return self._backbone.forward_features(x).float()

    def __getattr__(self, name):
        return getattr(self._backbone, name)


def _checkpoint(backbone: torch.nn.Module, record: dict) -> dict:
    """The shipped form: the state dict in half precision, contiguous, beside its record."""
    sd = {k: v.contiguous().half() if v.is_floating_point() else v
          for k, v in backbone.state_dict().items()}
    return {"state_dict": sd, "record": record}


def pretrain(cfg: PretrainConfig, images: np.ndarray, labels: np.ndarray | None, out: str | Path,
             num_classes: int | None = None, progress: bool = True, data_identity: dict | None = None,
             max_seconds: float | None = None, snapshots: dict[Path, int] | None = None) -> Path:
    """Pretrain ``cfg.arch`` with ``cfg.method`` on uint8 NHWC ``images``; return the checkpoint path.

    The checkpoint (``out``) holds the backbone state dict in half precision and a ``record`` with
    the configuration, seed, code version, data identity and wall time. A resumable training state
    is kept beside it (``out`` + ``.state``) after every epoch and removed at the end, so a killed
    run continues where it stopped. ``max_seconds`` stops early (between epochs) for time-boxed runs.
    ``snapshots``: ``{path: epoch}`` for the budget snapshots (module docstring).
    """
    out = Path(out)
    cfg = replace(cfg, precision=resolve_precision(cfg.precision, "cpu"))
    snapshots = {Path(p): int(e) for p, e in (snapshots or {}).items()}
    bad = [e for e in snapshots.values() if not 1 <= e <= cfg.epochs]
    if bad:
        raise ValueError(f"snapshots at epochs {bad}: each must lie in [1, epochs={cfg.epochs}]")
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W, 3); got {images.dtype} {images.shape}")
    if objective_class(cfg.method).needs_labels:
        if labels is None:
            raise ValueError(f"method={cfg.method!r} needs labels")
        num_classes = num_classes or int(labels.max()) + 1
    mean, std = preprocessing_for(cfg.method)
    with seeded(cfg.seed):  # the same initial draws as the shipped checkpoints' manual_seed(seed)
        backbone = create_model(cfg.arch, num_classes=None, mean=mean, std=std)
        objective = make_objective(cfg.method, backbone.num_features, num_classes or 0, len(images))
    backbone = backbone.to(memory_format=torch.channels_last)
    compute = _Compute(backbone, cfg.precision)
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
        # tensors and plain containers only (the RNG state is a uint8 tensor, the optimizer
        # state tensors and numbers): a planted pickle is refused, never run
        try:
            state = load_checkpoint(state_path)
        except (UnsafeCheckpointError, ValueError) as e:
            raise type(e)(f"{e}; this is pretraining's resume state: delete {state_path} to "
                          "start this pretraining over") from None
        if isinstance(state, dict) and state.get("config") == asdict(cfg):
            backbone.load_state_dict(state["backbone"])
            objective.load_state_dict(state["objective"])
            opt.load_state_dict(state["opt"])
            loader_gen.set_state(state["loader_gen"])
            start_epoch, history, elapsed = state["epoch"], state["history"], state["elapsed"]

    hook_gen = torch.Generator().manual_seed(cfg.seed + 1)  # for the methods' epoch hooks
    t0 = time.time() - elapsed
    bar = progress_bar(total=total_steps, initial=start_epoch * steps_per_epoch, show=progress,
                       desc=f"pretrain {cfg.method}")
    backbone.train()
    objective.train()
    epoch = start_epoch
    for epoch in range(start_epoch, cfg.epochs):
        objective.on_epoch_start(compute, images, epoch, cfg, hook_gen)
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
            loss = objective(compute, views, y, index)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)),
                        "seconds": time.time() - t0})
        fileio.atomic_torch_save({"config": asdict(cfg), "backbone": backbone.state_dict(),
                                "objective": objective.state_dict(), "opt": opt.state_dict(),
                                "loader_gen": loader_gen.get_state(), "epoch": epoch + 1,
                                "history": history, "elapsed": time.time() - t0}, state_path)
        for path in [p for p, e in snapshots.items() if e == epoch + 1]:
            fileio.atomic_torch_save(_checkpoint(backbone, _record(cfg, mean, std, history, t0,
                                                                   data_identity)), path)
        if max_seconds is not None and time.time() - t0 > max_seconds:
            break
    bar.close()
    record = _record(cfg, mean, std, history, t0, data_identity)
    fileio.atomic_torch_save(_checkpoint(backbone, record), out)
    state_path.unlink(missing_ok=True)
    return out


def _record(cfg: PretrainConfig, mean, std, history: list, t0: float, data_identity) -> dict:
    return {
        "config": asdict(cfg), "paradigm": PARADIGM[cfg.method], "family": FAMILY[cfg.method],
        "mean": list(mean), "std": list(std), "epochs_done": history[-1]["epoch"] if history else 0,
        "history": list(history), "wall_seconds": time.time() - t0, "data": data_identity or {},
        **provenance.environment(),
    }


def backbone_from_checkpoint(path: str | Path, num_classes: int | None = None):
    """Build the backbone recorded in a pretraining checkpoint, weights loaded, fresh head."""
    ckpt = load_checkpoint(path)
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
