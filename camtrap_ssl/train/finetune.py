"""Fine-tuning: the study's protocol as defaults, one loop you can read top to bottom.

SPEC section 4: Adam, learning rate 1e-5, weight decay 5e-4, batch size 128, 25 epochs (50 on
ENA24), the whole network trained, Norouzzadeh-style augmentation (random crops, horizontal flips,
brightness and contrast changes). Each epoch ends with a validation pass (top-1, top-5, per-class
precision and recall, confusion matrix), an atomic rewrite of the metrics log and a checkpoint, so
a killed run resumes from its last epoch.

Determinism, and why it is built this way:

* The order of epoch ``e`` is a permutation drawn from ``(seed, e)`` alone (a
  ``DistributedSampler`` seeded with the run's seed, ``set_epoch(e)``), and the augmentation of a
  sample is drawn per *dataset index* from ``(seed, e)`` at the start of the epoch. Nothing
  depends on what ran before, so a resumed run ends with the same metrics as an uninterrupted one.
* Because augmentation follows the sample rather than its position in a batch, and because the
  sampler interleaves ranks (rank ``r`` takes positions ``r, r + W, ...`` of the permutation), the
  ``W`` per-rank batches of one step under data parallelism are exactly the global batch a single
  process would draw. With the gradients averaged by DDP, the update is the same; only
  BatchNorm's batch statistics differ (per rank), which ``sync_bn`` removes on CUDA.

Multi-process (``torchrun``, see :mod:`camtrap_ssl.train.distributed`): ``finetune`` detects an
initialized process group, wraps the model in ``DistributedDataParallel``, splits each global batch
of ``batch_size`` over the ranks, evaluates on rank 0 and broadcasts the result; only rank 0 writes
the run directory. Every rank returns the same summary.

Tensors are channels_last on every device: on CPU that measured 1.08-1.3x on the demo's fine-tuning
step (``benchmarks/bench_finetune.py``). On CUDA the loop runs under bf16 autocast; augmentation
runs on the device, vectorized over the batch.

Same seed, same run: on CPU two processes give bit-identical metrics and checkpoints (tested
across subprocesses in ``tests/test_determinism.py``): the head is drawn from the seed
(:func:`camtrap_ssl.experiments.backbones.create_backbone`), data order and augmentation as above,
and nothing else draws random numbers. On CUDA that is not guaranteed by default: cuDNN picks
convolution algorithms by timing them (``cudnn.benchmark``) and several backward kernels
accumulate with atomic adds in an order that varies, so the last bits of the weights differ between
runs and drift apart over epochs. ``FinetuneConfig(deterministic=True)`` asks for deterministic
kernels (``torch.use_deterministic_algorithms(True)``, ``cudnn.benchmark = False``,
``CUBLAS_WORKSPACE_CONFIG=:4096:8``), at some cost in speed; it is part of the run's identity and
recorded in ``params.json``. A kernel with no deterministic version then raises instead of running.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from camtrap_ssl.core import fileio, provenance
from camtrap_ssl.train import distributed, rundir
from camtrap_ssl.train import metrics as M
from camtrap_ssl.train.augment import (
    augment_batch,
    augment_params,
    epoch_seed,
    single_threaded,
)

# Convergence epochs recorded in every summary (points of top-1 below the best), for the tables.
CONVERGENCE_TOLERANCES = (0.5, 1.0, 2.0)
# Config fields that change speed, never results: recorded, but not part of a run's identity.
_RUNTIME_FIELDS = ("num_workers",)


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 25
    batch_size: int = 128  # the global batch: split over the ranks under data parallelism
    lr: float = 1e-5
    weight_decay: float = 5e-4
    seed: int = 0
    augment: bool = True
    convergence_tolerance: float = 0.5  # points of top-1, see metrics.convergence_epoch
    device: str = "auto"
    sync_bn: bool = True  # SyncBatchNorm under multi-process CUDA (gloo/CPU cannot sync BN)
    num_workers: int = 0  # DataLoader worker processes (speed only)
    deterministic: bool = False  # deterministic CUDA kernels (see the module docstring)

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.convergence_tolerance < 0:
            raise ValueError(f"convergence_tolerance must be >= 0, got {self.convergence_tolerance}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device={self.device!r}; allowed: auto, cpu, cuda")

    def identity(self) -> dict:
        """The fields that determine a run's results (what a resumed run must agree on)."""
        return {k: v for k, v in asdict(self).items() if k not in _RUNTIME_FIELDS}


def use_deterministic_kernels() -> None:
    """Make CUDA kernels deterministic for this process (``FinetuneConfig.deterministic``).

    cuBLAS reads ``CUBLAS_WORKSPACE_CONFIG`` when its first handle is created, so this must run
    before the first CUDA matrix product of the process.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch.cuda.is_available() is False; use 'auto' or 'cpu'")
    return torch.device(name)


# ---------------------------------------------------------------------------------------------
# augmentation


def _batch_reader(ds):
    """A function ``indices -> (x, y)`` reading a whole batch at once, where ``ds`` offers one.

    Datasets holding all images in one array can serve a batch with one indexing operation
    instead of ``batch_size`` ``__getitem__`` calls and a stack: such a dataset defines
    ``get_batch(indices: LongTensor) -> (float [0, 1] N x 3 x H x W, int64 labels)``, which must
    equal stacking its ``__getitem__``. ``TensorDataset`` is read that way too.
    """
    if callable(getattr(ds, "get_batch", None)):
        return ds.get_batch
    if isinstance(ds, torch.utils.data.TensorDataset) and len(ds.tensors) >= 2:
        return _TensorBatch(ds)
    return None


class _TensorBatch:
    """Batched read of a ``TensorDataset`` (a class, not a lambda: loader workers pickle it)."""

    def __init__(self, ds):
        self.ds = ds

    def __call__(self, idx):
        return self.ds.tensors[0][idx], self.ds.tensors[1][idx]


class _Indexed(torch.utils.data.Dataset):
    """Batches ``(x, y, indices)``: the indices pick each sample's augmentation draw.

    ``__getitems__`` (the DataLoader's batched fetch) reads through :func:`_batch_reader` when the
    dataset allows it, else item by item; either way the batch arrives collated (``_collated``).
    """

    def __init__(self, base):
        self.base = base
        self.reader = _batch_reader(base)

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i][:2]
        return x, y, i

    def __getitems__(self, indices):
        idx = torch.as_tensor(indices, dtype=torch.long)
        if self.reader is not None:
            x, y = self.reader(idx)
            return x, torch.as_tensor(y, dtype=torch.long), idx
        items = [self.base[i] for i in indices]
        x = torch.stack([torch.as_tensor(it[0]) for it in items])
        y = torch.as_tensor([int(it[1]) for it in items], dtype=torch.long)
        return x, y, idx


def _collated(batch):
    """``collate_fn`` for batches that ``_Indexed.__getitems__`` already assembled."""
    return batch


# ---------------------------------------------------------------------------------------------
# evaluation

@torch.no_grad()
def predict(model, dataset, batch_size: int = 256, device: str | torch.device = "cpu",
            num_workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of a whole dataset, in order."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    model.eval()
    logits, labels = [], []
    loader = torch.utils.data.DataLoader(_Indexed(dataset), batch_size=batch_size,
                                         num_workers=num_workers, pin_memory=cuda,
                                         collate_fn=_collated)
    for x, y, _ in loader:
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            logits.append(model(x).float().cpu())
        labels.append(y)
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


def _jsonable(obj):
    """What ``obj`` reads back as from JSON (tuples become lists), for comparing parameters."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def train_class_counts(ds, num_classes: int) -> list[int]:
    """Training images per class (what the tail classes are defined from), without decoding images
    where the dataset exposes its labels (``labels`` attribute or a ``TensorDataset``)."""
    labels = getattr(ds, "labels", None)
    if labels is None and isinstance(ds, torch.utils.data.TensorDataset) and len(ds.tensors) >= 2:
        labels = ds.tensors[1]
    if labels is None:
        labels = [int(ds[i][1]) for i in range(len(ds))]
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).tolist()


# The camera-trap metrics of every evaluation (metrics.classification_report), per epoch as
# ``val_<name>`` and for the last epoch as ``final_<name>`` in the summary.
EXTRA_METRICS = ("macro_f1", "balanced_acc", "tail_top1", "empty_acc", "ece")


def summarize(history: list[dict], cfg: FinetuneConfig, class_names: list[str]) -> dict:
    """The run's summary from its per-epoch metrics (the last epoch's confusion and per-class)."""
    top1 = [h["val_top1"] for h in history]
    best = int(np.argmax(top1))
    last = history[-1]
    return {
        "final_top1": top1[-1], "final_top5": last["val_top5"],
        **{f"final_{k}": last.get(f"val_{k}") for k in EXTRA_METRICS},
        "tail_classes": last.get("tail_classes"), "ece_bins": M.ECE_BINS,
        "best_top1": top1[best], "best_top5": history[best]["val_top5"], "best_epoch": best + 1,
        "convergence_epoch": M.convergence_epoch(top1, cfg.convergence_tolerance),
        "convergence_tolerance": cfg.convergence_tolerance,
        "convergence_epochs": {str(t): M.convergence_epoch(top1, t) for t in CONVERGENCE_TOLERANCES},
        "train_acc": last["train_acc"], "train_loss": last["train_loss"], "epochs": cfg.epochs,
        "classes": list(class_names), "per_class": last["per_class"], "confusion": last["confusion"],
    }


# ---------------------------------------------------------------------------------------------
# the loop

def finetune(model: torch.nn.Module, train_set, val_set, class_names: list[str], cfg: FinetuneConfig,
             run_dir: str | Path, extra_params: dict | None = None, progress: bool = True) -> dict:
    """Fine-tune ``model`` (any classifier on [0, 1] images) and return the run's summary.

    A complete run directory is returned as it is (nothing is recomputed). An incomplete one with
    the same parameters resumes from its checkpoint; one with different parameters is refused.
    Under an initialized ``torch.distributed`` process group the run is data-parallel (see the
    module docstring); ``cfg.batch_size`` stays the global batch.
    """

    dist = distributed.context()
    run = rundir.RunDir(run_dir)
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError(f"train_set has {len(train_set)} and val_set {len(val_set)} samples; "
                         "both must be non-empty")
    if cfg.batch_size % dist.world_size:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the world size "
                         f"{dist.world_size} (it is the global batch, split over the ranks)")
    params = _jsonable({"finetune": cfg.identity(), "num_classes": len(class_names),
                        "classes": list(class_names), "n_train": len(train_set),
                        "n_val": len(val_set), **(extra_params or {})})
    if run.file(rundir.PARAMS).exists():
        old = run.params()
        if {k: old.get(k) for k in params} != params:
            diff = sorted(k for k in params if old.get(k) != params[k])
            raise ValueError(f"run directory {run.path} holds a run with other parameters "
                             f"(differing: {diff}); choose another run directory or delete it")
        if run.is_complete:
            return run.summary()

    device = dist.device if dist.world_size > 1 else resolve_device(cfg.device)
    cuda = device.type == "cuda"
    if cfg.deterministic:
        use_deterministic_kernels()
    sync_bn = cfg.sync_bn and cuda and dist.world_size > 1
    if dist.is_main:
        run.write_params({**params, "environment": provenance.environment(),
                          "runtime": {"num_workers": cfg.num_workers, "device": str(device),
                                      "world_size": dist.world_size, "backend": dist.backend,
                                      "sync_bn": sync_bn,
                                      "cudnn_benchmark": torch.backends.cudnn.benchmark,
                                      "deterministic_algorithms":
                                          torch.are_deterministic_algorithms_enabled()}})
    counts = train_class_counts(train_set, len(class_names))

    if sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net = model.to(device, memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history, start, elapsed = [], 0, 0.0
    ckpt_path = run.file(rundir.CHECKPOINT)
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        history, start, elapsed = run.metrics()[: ckpt["epoch"]], ckpt["epoch"], ckpt["elapsed"]
    if dist.world_size > 1:
        # gradients are averaged over ranks; initial weights are broadcast from rank 0
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if cuda else None)
    else:
        model = net

    sampler = torch.utils.data.DistributedSampler(
        _Indexed(train_set), num_replicas=dist.world_size, rank=dist.rank, shuffle=True,
        seed=epoch_seed(cfg.seed, 0), drop_last=False)
    loader = torch.utils.data.DataLoader(
        _Indexed(train_set), batch_size=cfg.batch_size // dist.world_size, sampler=sampler,
        num_workers=cfg.num_workers, pin_memory=cuda, persistent_workers=cfg.num_workers > 0,
        collate_fn=_collated)
    steps_per_epoch = len(loader)
    bar = tqdm(total=cfg.epochs * steps_per_epoch, initial=start * steps_per_epoch,
               disable=not (progress and dist.is_main), desc=f"fine-tune {run.path.name}")
    t0 = time.time() - elapsed
    for epoch in range(start, cfg.epochs):
        sampler.set_epoch(epoch)
        aug = augment_params(len(train_set), cfg.seed, epoch) if cfg.augment else None
        model.train()
        # running sums stay on the device: no host synchronisation per step
        stats = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, correct
        seen = 0
        for step, (x, y, idx) in enumerate(loader):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if aug is not None:
                with single_threaded(not cuda):
                    x = augment_batch(x, aug[idx])
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                logits = model(x)
                loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                stats[0] += loss.detach().double() * len(y)
                stats[1] += (logits.argmax(1) == y).sum()
            seen += len(y)
            bar.update(1)
            if progress and dist.is_main and (step % 20 == 0 or step == steps_per_epoch - 1):
                bar.set_postfix(loss=f"{loss.item():.3f}")
        stats = torch.cat([stats, torch.tensor([float(seen)], dtype=torch.float64, device=device)])
        if dist.world_size > 1:
            distributed.all_reduce_sum(stats)
        loss_sum, correct, seen = stats.tolist()
        row = None
        if dist.is_main:
            logits_v, labels_v = predict(net, val_set, device=device, num_workers=cfg.num_workers)
            report = M.classification_report(logits_v, labels_v, class_names, counts)
            row = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": 100 * correct / seen,
                   "val_top1": report["top1"], "val_top5": report["top5"],
                   **{f"val_{k}": report[k] for k in EXTRA_METRICS},
                   "tail_classes": report["tail_classes"],
                   "per_class": report["per_class"], "confusion": report["confusion"],
                   "seconds": time.time() - t0}
        if dist.world_size > 1:
            row = distributed.broadcast_object(row)
        history.append(row)
        if dist.is_main:
            run.write_metrics(history)
            fileio.atomic_torch_save({"model": net.state_dict(), "opt": opt.state_dict(),
                                    "epoch": epoch + 1, "elapsed": time.time() - t0}, ckpt_path)
    bar.close()
    summary = {**summarize(history, cfg, class_names), "wall_seconds": time.time() - t0}
    if dist.world_size > 1:
        summary = distributed.broadcast_object(summary)
    if dist.is_main:
        run.write_summary(summary)  # last: its presence marks the run complete
    if dist.world_size > 1:
        distributed.barrier()  # no rank returns before the run directory is complete
    return summary


def load_finetuned(run_dir: str | Path, model: torch.nn.Module) -> torch.nn.Module:
    """Load a run's final weights into ``model`` (built with the same architecture and head)."""
    ckpt = torch.load(Path(run_dir) / rundir.CHECKPOINT, map_location="cpu", weights_only=True)
    model.load_state_dict(ckpt["model"])
    return model.eval()
