"""Classification metrics the study reports: top-1, top-5, per-class precision and recall.

Kept free of torch training code so that notebooks can recompute them from saved predictions.
"""
from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``cm[i, j]`` counts images of true class ``i`` predicted as ``j``."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def topk_accuracy(logits: np.ndarray, y_true: np.ndarray, k: int) -> float:
    """Share of images whose true class is among the ``k`` highest scores (k capped at #classes)."""
    k = min(k, logits.shape[1])
    topk = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return float((topk == np.asarray(y_true)[:, None]).any(1).mean())


def precision_recall(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class precision and recall from a confusion matrix; NaN where undefined (0/0)."""
    tp = np.diag(cm).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / cm.sum(0)
        recall = tp / cm.sum(1)
    return precision, recall


def classification_report(logits: np.ndarray, y_true: np.ndarray, class_names: list[str]) -> dict:
    """Everything the fine-tuning loop records for one evaluation, JSON-serialisable."""
    n = len(class_names)
    y_true = np.asarray(y_true)
    pred = logits.argmax(1)
    cm = confusion_matrix(y_true, pred, n)
    precision, recall = precision_recall(cm)
    return {
        "top1": 100 * float((pred == y_true).mean()),
        "top5": 100 * topk_accuracy(logits, y_true, 5),
        "per_class": {
            name: {"precision": None if np.isnan(p) else float(p),
                   "recall": None if np.isnan(r) else float(r), "support": int(s)}
            for name, p, r, s in zip(class_names, precision, recall, cm.sum(1))
        },
        "confusion": cm.tolist(),
    }


def convergence_epoch(top1_by_epoch: list[float], tolerance: float = 0.5) -> int:
    """The first epoch (1-based) whose validation top-1 is within ``tolerance`` points of the best.

    The study reports "epochs to converge" without defining it; this is our definition, and the
    tolerance is a parameter of every fine-tuning run.
    """
    if not top1_by_epoch:
        raise ValueError("no epochs to judge convergence on")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 points, got {tolerance}")
    best = max(top1_by_epoch)
    return next(i + 1 for i, v in enumerate(top1_by_epoch) if v >= best - tolerance)
