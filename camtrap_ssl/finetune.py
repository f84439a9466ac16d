"""Fine-tuning: the study's protocol as defaults, one loop you can read top to bottom.

SPEC section 4: Adam, learning rate 1e-5, weight decay 5e-4, batch size 128, 25 epochs (50 on
ENA24), the whole network trained, Norouzzadeh-style augmentation (random crops, horizontal flips,
brightness and contrast changes). Each epoch ends with a validation pass (top-1, top-5, per-class
precision and recall, confusion matrix), an atomic rewrite of the metrics log and a checkpoint, so
a killed run resumes from its last epoch. The shuffling and augmentation of epoch ``e`` depend only
on ``(seed, e)``, which makes a resumed run end with the same metrics as an uninterrupted one.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import metrics as M
from . import runs


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 25
    batch_size: int = 128
    lr: float = 1e-5
    weight_decay: float = 5e-4
    seed: int = 0
    augment: bool = True
    convergence_tolerance: float = 0.5  # points of top-1, see metrics.convergence_epoch
    device: str = "auto"

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device={self.device!r}; allowed: auto, cpu, cuda")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def augment_batch(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Camera-trap augmentation on a batch in [0, 1]: flip, shifted crop, brightness, contrast."""
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None].to(x.device), x.flip(3), x)
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dx, dy = torch.randint(0, 2 * pad + 1, (2, n), generator=g).tolist()
    x = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    bright = (1 + 0.4 * (torch.rand(n, 1, 1, 1, generator=g) - 0.5)).to(x.device)
    contrast = (1 + 0.4 * (torch.rand(n, 1, 1, 1, generator=g) - 0.5)).to(x.device)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean * bright).clamp(0, 1)


@torch.no_grad()
def predict(model, dataset, batch_size: int = 256, device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of a whole dataset, in order."""
    device = torch.device(device)
    model.eval()
    logits, labels = [], []
    for x, y in torch.utils.data.DataLoader(dataset, batch_size=batch_size):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits.append(model(x.to(device)).float().cpu())
        labels.append(y)
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


def finetune(model: torch.nn.Module, train_set, val_set, class_names: list[str], cfg: FinetuneConfig,
             run_dir: str | Path, extra_params: dict | None = None, progress: bool = True) -> dict:
    """Fine-tune ``model`` (any classifier on [0, 1] images) and return the run's summary.

    A complete run directory is returned as it is (nothing is recomputed). An incomplete one with
    the same parameters resumes from its checkpoint; one with different parameters is refused.
    """
    run = runs.RunDir(run_dir)
    params = {"finetune": asdict(cfg), "num_classes": len(class_names), "classes": class_names,
              "n_train": len(train_set), "n_val": len(val_set), **(extra_params or {})}
    if run.file(runs.PARAMS).exists():
        old = run.params()
        if {k: old.get(k) for k in params} != params:
            raise ValueError(f"{run.path} holds a run with other parameters; "
                             "choose another run directory or delete it")
        if run.is_complete:
            return run.summary()
    run.write_params({**params, "environment": runs.environment()})

    device = resolve_device(cfg.device)
    cuda = device.type == "cuda"
    model = model.to(device, memory_format=torch.channels_last if cuda else torch.preserve_format)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history, start, elapsed = [], 0, 0.0
    ckpt_path = run.file(runs.CHECKPOINT)
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        history, start, elapsed = run.metrics()[: ckpt["epoch"]], ckpt["epoch"], ckpt["elapsed"]

    steps = cfg.epochs * -(-len(train_set) // cfg.batch_size)
    bar = tqdm(total=steps, initial=start * -(-len(train_set) // cfg.batch_size),
               disable=not progress, desc=f"fine-tune {run.path.name}")
    t0 = time.time() - elapsed
    for epoch in range(start, cfg.epochs):
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        loader = torch.utils.data.DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True,
                                             generator=g)
        model.train()
        losses, correct, seen = [], 0, 0
        for x, y in loader:
            if cfg.augment:
                x = augment_batch(x, g)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                logits = model(x)
                loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        logits, labels = predict(model, val_set, device=device)
        report = M.classification_report(logits, labels, class_names)
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                        "train_acc": 100 * correct / seen, "val_top1": report["top1"],
                        "val_top5": report["top5"], "per_class": report["per_class"],
                        "confusion": report["confusion"], "seconds": time.time() - t0})
        run.write_metrics(history)
        runs.atomic_torch_save({"model": model.state_dict(), "opt": opt.state_dict(),
                                "epoch": epoch + 1, "elapsed": time.time() - t0}, ckpt_path)
    bar.close()
    top1 = [h["val_top1"] for h in history]
    best = int(np.argmax(top1))
    summary = {
        "final_top1": top1[-1], "final_top5": history[-1]["val_top5"],
        "best_top1": top1[best], "best_top5": history[best]["val_top5"], "best_epoch": best + 1,
        "convergence_epoch": M.convergence_epoch(top1, cfg.convergence_tolerance),
        "train_acc": history[-1]["train_acc"], "epochs": cfg.epochs,
        "per_class": history[-1]["per_class"], "wall_seconds": time.time() - t0,
    }
    run.write_summary(summary)
    return summary


def load_finetuned(run_dir: str | Path, model: torch.nn.Module) -> torch.nn.Module:
    """Load a run's final weights into ``model`` (built with the same architecture and head)."""
    ckpt = torch.load(Path(run_dir) / runs.CHECKPOINT, map_location="cpu", weights_only=True)
    model.load_state_dict(ckpt["model"])
    return model.eval()
