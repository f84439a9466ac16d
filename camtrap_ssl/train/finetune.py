"""Fine-tuning: the study's protocol as defaults, one loop you can read top to bottom.

SPEC section 4: Adam, learning rate 1e-5, weight decay 5e-4, batch size 128, 25 epochs (50 on
ENA24), the whole network trained, Norouzzadeh et al.'s augmentation (random 224 crops of 256
frames, horizontal flips, brightness and contrast jitter; the centre crop for evaluation; see
:mod:`camtrap_ssl.train.augment`). ``augmentation`` and ``crop`` are part of the run's identity,
and ``params.json`` records the crops actually taken in training and evaluation. The learning rate
is constant (``lr_schedule="constant"``, the study's) or decays to 0 along a cosine over all steps
of the run ("cosine"), computed from the global step. Each epoch ends with a validation pass, an
atomic rewrite of the metrics log and a checkpoint, so a killed run resumes from its last epoch.
The pass scores a fixed subset of ``monitor_images`` validation images (``monitor_top1``: the
learning curve, the best and the convergence epoch) after every epoch but the last, and the whole
split (top-1, top-5, per-class precision and recall, confusion matrix) after the last; with
``monitor_images=None`` it scores the whole split every epoch. The run
ends by saving the final evaluation's per-image probabilities (``predictions.npz``, with image,
sequence and location ids where the validation set has them) and scoring them as camera-trap
practice does, per sequence and automated at 95 % accuracy (:mod:`camtrap_ssl.train.predictions`),
into the summary.

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

Tensors are channels_last (:func:`memory_format`): on CPU that measured 1.08-1.3x on the demo's
fine-tuning step (``benchmarks/bench_finetune.py``), except for networks with convolutions narrower
than :data:`CHANNELS_LAST_MIN_CHANNELS` on the CPU, which stay contiguous: oneDNN's channels_last
backward of the tiny profile's 1/8-width ResNet corrupted memory with 2 threads on an AMD EPYC
(torch 2.14.1; "double free or corruption" in ``backward``), and so narrow a network gains nothing
from the layout. The loop runs under bf16 autocast on CUDA and on CPUs that
multiply bf16 in hardware (Intel AMX: 1.6-2.1x over fp32 on the demo's step, same benchmark), fp32
elsewhere (``precision``; the resolved one is part of the run's identity). Augmentation runs on the
device, vectorized over the batch.

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
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from camtrap_ssl.core import fileio, provenance
from camtrap_ssl.core.profiles import LR_SCHEDULES
from camtrap_ssl.core.progress import progress_bar
from camtrap_ssl.models.utils import PRECISIONS, autocast, resolve_precision
from camtrap_ssl.models.weights import load_checkpoint
from camtrap_ssl.train import distributed, rundir
from camtrap_ssl.train import metrics as M
from camtrap_ssl.train import predictions as P
from camtrap_ssl.train.augment import (
    AUGMENTATIONS,
    augment_params,
    center_crop,
    default_crop,
    epoch_seed,
    single_threaded,
    train_transform,
)
from camtrap_ssl.train.metrics import monitor_indices  # noqa: F401  (public here too)

# Convergence epochs recorded in every summary (points of top-1 below the best), for the tables.
CONVERGENCE_TOLERANCES = (0.5, 1.0, 2.0)
# Config fields that never change what is trained: recorded, but not part of a run's identity.
# num_workers changes speed only; convergence_tolerance only how the summary reads the finished
# metrics (a reused run's convergence epoch is recomputed for the tolerance asked, see
# finished_summary), so asking for another tolerance never retrains.
_RUNTIME_FIELDS = ("num_workers", "convergence_tolerance")
MAX_EPOCHS = 10_000  # far above any study's budget; a larger count is a typo (1e20)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 25
    batch_size: int = 128  # the global batch: split over the ranks under data parallelism
    lr: float = 1e-5
    weight_decay: float = 5e-4
    seed: int = 0
    # "norouzzadeh" (the study's camera traps), "crop_flip" (CIFAR), "demo" (the embedded
    # world's) or "none"; see train.augment
    augmentation: str = "norouzzadeh"
    # side the network sees, cut from each stored image (random in training, centred in
    # evaluation); None: 224/256 of the stored side for "norouzzadeh", the whole image otherwise
    crop: int | None = None
    convergence_tolerance: float = 0.5  # points of top-1, see metrics.convergence_epoch
    device: str = "auto"
    sync_bn: bool = True  # SyncBatchNorm under multi-process CUDA (gloo/CPU cannot sync BN)
    num_workers: int = 0  # DataLoader worker processes (speed only)
    deterministic: bool = False  # deterministic CUDA kernels (see the module docstring)
    # "auto": bf16 autocast on CUDA and on CPUs with native bf16 (AMX), fp32 elsewhere; the
    # identity records the resolved one, since the two give different numbers
    precision: str = "auto"
    # "constant" (the study's) or "cosine": lr * (1 + cos(pi * t / T)) / 2 at global step t of T
    lr_schedule: str = "constant"
    # validation images scored after every epoch but the last (a fixed subset, monitor_indices);
    # the last epoch scores the whole split. None: the whole split every epoch.
    monitor_images: int | None = None

    def __post_init__(self):
        # Refuse what would train something else than asked (a float epoch count, a NaN rate)
        # here, before a run directory records it.
        for name, hi in (("epochs", MAX_EPOCHS), ("batch_size", None), ("seed", None),
                         ("num_workers", None)):
            v, lo = getattr(self, name), 0 if name in ("seed", "num_workers") else 1
            if not _is_int(v) or v < lo or (hi is not None and v > hi):
                rng = f"in [{lo}, {hi}]" if hi else f">= {lo}"
                raise ValueError(f"{name}={v!r} is not allowed; {name} must be an integer {rng}")
        for name, lo, strict in (("lr", 0, True), ("weight_decay", 0, False),
                                 ("convergence_tolerance", 0, False)):
            v = getattr(self, name)
            ok = _is_number(v) and math.isfinite(v) and (v > lo if strict else v >= lo)
            if not ok:
                raise ValueError(f"{name}={v!r} is not allowed; {name} must be a finite number "
                                 f"{'>' if strict else '>='} {lo}")
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation={self.augmentation!r}; allowed: {list(AUGMENTATIONS)}")
        if self.crop is not None and (not _is_int(self.crop) or self.crop < 1):
            raise ValueError(f"crop must be None or a positive int, got {self.crop!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device={self.device!r}; allowed: auto, cpu, cuda")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r}; allowed: {list(PRECISIONS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule={self.lr_schedule!r}; allowed: {list(LR_SCHEDULES)}")
        if self.monitor_images is not None and (not _is_int(self.monitor_images)
                                                or self.monitor_images < 1):
            raise ValueError(f"monitor_images={self.monitor_images!r} is not allowed; "
                             "monitor_images must be None or an integer >= 1")

    def identity(self) -> dict:
        """The fields that determine a run's results (what a resumed run must agree on), with
        ``precision`` resolved for this machine (``auto`` is not a result-determining value)."""
        ident = {k: v for k, v in asdict(self).items() if k not in _RUNTIME_FIELDS}
        ident["precision"] = self.resolved_precision()
        return ident

    def resolved_precision(self) -> str:
        """``bf16`` or ``fp32``: what this config computes in on this machine."""
        device = "cuda" if self.device == "auto" and torch.cuda.is_available() else self.device
        return resolve_precision(self.precision, "cpu" if device == "auto" else device)


# the narrowest convolution (in or out channels) for which the CPU runs channels_last
CHANNELS_LAST_MIN_CHANNELS = 16


def memory_format(model: torch.nn.Module, device) -> torch.memory_format:
    """channels_last, except on the CPU for a network with convolutions narrower than
    :data:`CHANNELS_LAST_MIN_CHANNELS` (see the module docstring)."""
    if str(device).startswith("cuda"):
        return torch.channels_last
    widths = [min(m.in_channels, m.out_channels) for m in model.modules()
              if isinstance(m, torch.nn.Conv2d)]
    narrow = bool(widths) and min(widths) < CHANNELS_LAST_MIN_CHANNELS
    return torch.contiguous_format if narrow else torch.channels_last


def use_deterministic_kernels() -> None:
    """Make CUDA kernels deterministic for this process (``FinetuneConfig.deterministic``).

    cuBLAS reads ``CUBLAS_WORKSPACE_CONFIG`` when its first handle is created, so this must run
    before the first CUDA matrix product of the process.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


def lr_at(step: int, total: int, lr: float, schedule: str) -> float:
    """The learning rate of global step ``step`` (0-based, counted over all epochs) of ``total``:
    ``lr`` throughout ("constant"), or ``lr * (1 + cos(pi * step / total)) / 2`` ("cosine").
    A function of the step alone, so a resumed run continues the schedule where it stopped."""
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * 0.5 * (1 + math.cos(math.pi * step / total))
    raise ValueError(f"lr_schedule={schedule!r}; allowed: {list(LR_SCHEDULES)}")


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
            num_workers: int = 0, crop: int | None = None,
            precision: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of a whole dataset, in order; ``crop``: its centre crop (evaluation);
    ``precision``: see :func:`camtrap_ssl.models.utils.resolve_precision`."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    precision = resolve_precision(precision, device)
    model.eval()
    logits, labels = [], []
    loader = torch.utils.data.DataLoader(_Indexed(dataset), batch_size=batch_size,
                                         num_workers=num_workers, pin_memory=cuda,
                                         collate_fn=_collated)
    layout = memory_format(model, device)  # once: it walks the model's modules
    for x, y, _ in loader:
        x = x.to(device, non_blocking=True)
        if crop is not None:
            x = center_crop(x, crop)
        x = x.contiguous(memory_format=layout)
        with autocast(device, precision):
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
    # best and convergence read the monitor top-1, the one score every epoch has; final_* read
    # the last row, which scored the whole split. best_top5: None unless that epoch scored it.
    top1 = M.monitor_curve(history)
    best = int(np.argmax(top1))
    last = history[-1]
    return {
        "final_top1": last["val_top1"], "final_top5": last["val_top5"],
        **{f"final_{k}": last.get(f"val_{k}") for k in EXTRA_METRICS},
        "tail_classes": last.get("tail_classes"), "ece_bins": M.ECE_BINS,
        "best_top1": top1[best], "best_top5": history[best].get("val_top5"), "best_epoch": best + 1,
        "monitor_images": last.get("monitor_images"), "lr_schedule": cfg.lr_schedule,
        "convergence_epoch": M.convergence_epoch(top1, cfg.convergence_tolerance),
        "convergence_tolerance": cfg.convergence_tolerance,
        "convergence_epochs": {str(t): M.convergence_epoch(top1, t) for t in CONVERGENCE_TOLERANCES},
        "train_acc": last["train_acc"], "train_loss": last["train_loss"], "epochs": cfg.epochs,
        "classes": list(class_names), "per_class": last["per_class"], "confusion": last["confusion"],
    }


# ---------------------------------------------------------------------------------------------
# the loop

def finetune(model: torch.nn.Module, train_set, val_set, class_names: list[str], cfg: FinetuneConfig,
             run_dir: str | Path, extra_params: dict | None = None, progress: bool = True,
             restart: bool = False, lock_timeout: float | None = None) -> dict:
    """Fine-tune ``model`` (any classifier on [0, 1] images) and return the run's summary.

    A complete run directory is returned as it is (nothing is recomputed). An incomplete one with
    the same parameters resumes from its checkpoint; one with different parameters is refused.
    ``restart=True`` discards what the directory holds (a truncated checkpoint, say) and trains
    from scratch. Training holds the run directory's lock (:func:`camtrap_ssl.train.rundir.locked`):
    a second process on the same directory waits, at most ``lock_timeout`` seconds, and then
    returns the run the first one finished.
    Under an initialized ``torch.distributed`` process group the run is data-parallel (see the
    module docstring); ``cfg.batch_size`` stays the global batch. Only rank 0 takes the lock; it
    tells the other ranks whether there is anything left to train.
    """

    dist = distributed.context()
    run = rundir.RunDir(run_dir)
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError(f"train_set has {len(train_set)} and val_set {len(val_set)} samples; "
                         "both must be non-empty")
    P.fields_of(val_set)  # its image, sequence and location ids fit it, or fail before training
    if cfg.batch_size % dist.world_size:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the world size "
                         f"{dist.world_size} (it is the global batch, split over the ranks)")
    stored = int(torch.as_tensor(train_set[0][0]).shape[-1])
    crop = cfg.crop or default_crop(stored, cfg.augmentation)
    if crop > stored:
        raise ValueError(f"crop={crop} is larger than the {stored}-pixel training images")
    kind = "random" if cfg.augmentation in ("norouzzadeh", "crop_flip") else "centre"
    preprocessing = {"augmentation": cfg.augmentation, "stored_size": stored,
                     "train_crop": "none" if crop == stored else f"{kind} {crop} of {stored}",
                     "eval_crop": "none" if crop == stored else f"centre {crop} of {stored}"}
    params = _jsonable({"finetune": cfg.identity(), "preprocessing": preprocessing,
                        "num_classes": len(class_names),
                        "classes": list(class_names), "n_train": len(train_set),
                        "n_val": len(val_set), **(extra_params or {})})
    if not restart:  # a finished run is read without the lock: its summary is written last
        done = _finished(run, params, cfg)
        if done is not None:
            return done
    with rundir.locked(run.path, lock_timeout) if dist.is_main else nullcontext():
        state = None
        if dist.is_main:
            if restart:
                run.clear()
            try:  # the holder we waited for may have finished this run
                state = ("done", _finished(run, params, cfg))
            except ValueError as e:
                state = ("error", str(e))
        if dist.world_size > 1:
            state = distributed.broadcast_object(state)
        if state[0] == "error":
            raise ValueError(state[1])
        if state[1] is not None:
            return state[1]
        return _train(model, train_set, val_set, class_names, cfg, run, params, dist, progress, crop)


def _finished(run: rundir.RunDir, params: dict, cfg: FinetuneConfig) -> dict | None:
    """The summary of the complete run in ``run`` (``None`` if unfinished); refuse a run there
    with other parameters, naming the fields that differ."""
    if not run.file(rundir.PARAMS).exists():
        return None
    old = run.params()
    if {k: old.get(k) for k in params} != params:
        diff = sorted(k for k in params if old.get(k) != params[k])
        raise ValueError(f"run directory {run.path} holds a run with other parameters "
                         f"(differing: {diff}); choose another run directory or delete it")
    return finished_summary(run.path, cfg.convergence_tolerance)


def finished_summary(run_dir: str | Path, convergence_tolerance: float) -> dict | None:
    """The summary of a complete run, read at ``convergence_tolerance`` (``None``: unfinished).

    The tolerance is not part of a run's identity: a run finished at another one is read again
    from its metrics log, never retrained.
    """
    run = rundir.RunDir(run_dir)
    if not run.is_complete:
        return None
    summary = run.summary()
    if summary.get("convergence_tolerance") != convergence_tolerance:
        top1 = M.monitor_curve(run.metrics())  # val_top1 for runs from before the monitor
        summary = {**summary, "convergence_tolerance": convergence_tolerance,
                   "convergence_epoch": M.convergence_epoch(top1, convergence_tolerance)}
    return summary


def _load_checkpoint(path: Path) -> dict:
    """The resume state, or a ``ValueError`` that names the file and says how to start over.

    Read through :func:`camtrap_ssl.models.weights.load_checkpoint` (tensors and plain containers
    only): a file that would run code is refused as unsafe, not offered a restart."""
    try:
        return load_checkpoint(path)  # on the CPU; load_state_dict moves it to the model's device
    except ValueError as e:
        # a truncated zip, a bad pickle opcode, ...: the file cannot be resumed
        raise ValueError(
            f"{path} cannot be read ({type(e).__name__}): the checkpoint is truncated or corrupt, "
            "so this run cannot resume. Train it from scratch with restart=True "
            "(camtrap-ssl finetune --restart), or delete that file") from None


def _train(model, train_set, val_set, class_names, cfg: FinetuneConfig, run: rundir.RunDir,
           params: dict, dist, progress: bool, crop: int) -> dict:
    """The loop, under the run directory's lock: resume from its checkpoint, train, summarize."""
    device = dist.device if dist.world_size > 1 else resolve_device(cfg.device)
    cuda = device.type == "cuda"
    precision = cfg.resolved_precision()
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
    layout = memory_format(model, device)
    net = model.to(device, memory_format=layout)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history, start, elapsed = [], 0, 0.0
    ckpt_path = run.file(rundir.CHECKPOINT)
    if ckpt_path.exists():
        ckpt = _load_checkpoint(ckpt_path)
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
    # scored after every epoch but the last, which scores the whole split (see monitor_indices)
    monitor = monitor_indices(len(val_set), cfg.monitor_images)
    whole = len(monitor) == len(val_set)  # the subset is the split: score it whole every epoch
    monitor_set = val_set if whole else torch.utils.data.Subset(val_set, monitor.tolist())
    final_eval = None  # the last whole-split (logits, labels) on rank 0, for predictions.npz
    steps_per_epoch = len(loader)
    total_steps = cfg.epochs * steps_per_epoch
    bar = progress_bar(total=cfg.epochs * steps_per_epoch, initial=start * steps_per_epoch,
                       show=progress and dist.is_main, desc=f"fine-tune {run.path.name}")
    t0 = time.time() - elapsed
    for epoch in range(start, cfg.epochs):
        sampler.set_epoch(epoch)
        aug = augment_params(len(train_set), cfg.seed, epoch) if cfg.augmentation != "none" else None
        model.train()
        # running sums stay on the device: no host synchronisation per step
        stats = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, correct
        seen = 0
        for step, (x, y, idx) in enumerate(loader):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with single_threaded(not cuda):
                x = train_transform(x, None if aug is None else aug[idx], cfg.augmentation, crop)
            x = x.contiguous(memory_format=layout)
            with autocast(device, precision):
                logits = model(x)
                loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            # from the global step alone: a resumed run continues the schedule where it stopped
            lr = lr_at(epoch * steps_per_epoch + step, total_steps, cfg.lr, cfg.lr_schedule)
            for group in opt.param_groups:
                group["lr"] = lr
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
            full = whole or epoch == cfg.epochs - 1  # the whole split, else the monitor subset
            logits_v, labels_v = predict(net, val_set if full else monitor_set, device=device,
                                         num_workers=cfg.num_workers, crop=crop, precision=precision)
            # the whole split's metrics, None in rows that scored the monitor subset only
            report = M.classification_report(logits_v, labels_v, class_names, counts) if full else {}
            if full:  # the monitor top-1 read from the same predictions, no second pass
                final_eval = (logits_v, labels_v)
                logits_v, labels_v = logits_v[monitor], labels_v[monitor]
            row = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": 100 * correct / seen,
                   "monitor_top1": M.top1_accuracy(logits_v, labels_v), "monitor_images": len(monitor),
                   **{f"val_{k}": report.get(k) for k in ("top1", "top5", *EXTRA_METRICS)},
                   **{k: report.get(k) for k in ("tail_classes", "per_class", "confusion")},
                   "seconds": time.time() - t0}
        if dist.world_size > 1:
            row = distributed.broadcast_object(row)
        history.append(row)
        if dist.is_main:
            run.write_metrics(history)
            fileio.atomic_torch_save({"model": net.state_dict(), "opt": opt.state_dict(),
                                    "epoch": epoch + 1, "elapsed": time.time() - t0}, ckpt_path)
    bar.close()
    summary = summarize(history, cfg, class_names)
    if dist.is_main:
        if final_eval is None:  # resumed after the last epoch's checkpoint: evaluate it again
            final_eval = predict(net, val_set, device=device, num_workers=cfg.num_workers,
                                 crop=crop, precision=precision)
        record = P.predictions_record(*final_eval, val_set)
        run.write_predictions(P.npz_bytes(record))
        # computed from the saved arrays, so that the file reproduces them
        summary.update(_jsonable(P.practice_summary(record, class_names, cfg.seed)))
    summary["wall_seconds"] = time.time() - t0
    if dist.world_size > 1:
        summary = distributed.broadcast_object(summary)
    if dist.is_main:
        run.write_summary(summary)  # last: its presence marks the run complete
    if dist.world_size > 1:
        distributed.barrier()  # no rank returns before the run directory is complete
    return summary


def load_finetuned(run_dir: str | Path, model: torch.nn.Module) -> torch.nn.Module:
    """Load a run's final weights into ``model`` (built with the same architecture and head)."""
    ckpt = load_checkpoint(Path(run_dir) / rundir.CHECKPOINT)
    model.load_state_dict(ckpt["model"])
    return model.eval()
