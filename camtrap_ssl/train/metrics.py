"""Classification metrics the study reports, and those camera-trap users read beside them.

The study reports top-1, top-5 and per-class precision and recall. On a long-tailed camera-trap
target top-1 is mostly about the commonest species, so the field reads per-class summaries too:
macro-F1 (WILDS iWildCam ranks by it), balanced accuracy, top-1 on the tail classes, whether an
empty frame is told from an animal, and calibration (expected calibration error). All percentages
are in points (0-100) like top-1.

Kept free of torch training code so that notebooks can recompute them from saved predictions.
"""
from __future__ import annotations

import numpy as np

# Expected calibration error: equal-width confidence bins, the 15 of Guo et al. (ICML 2017).
ECE_BINS = 15
# The class name whose presence makes "empty vs animal" a question (LILA's camera-trap sets).
# the names of the class of frames without an animal: "empty" (LILA), "blank" (Camtrap DP's
# observationType), "nothing" (some LILA sets); data.cct.EMPTY_NAMES is the same set
EMPTY_NAMES = ("empty", "blank", "nothing")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``cm[i, j]`` counts images of true class ``i`` predicted as ``j``."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def top1_accuracy(logits: np.ndarray, y_true: np.ndarray) -> float:
    """Top-1 in points: share of images whose highest score is their true class, times 100."""
    return 100 * float((np.asarray(logits).argmax(1) == np.asarray(y_true)).mean())


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


def macro_f1(cm: np.ndarray) -> float:
    """Mean F1 over the classes present in the evaluation set (support > 0), in points.

    A class that is never predicted has F1 = 0 (scikit-learn's ``zero_division=0``); a class
    absent from the evaluation set cannot be scored and is left out, as scikit-learn does when
    given the present labels.
    """
    cm = np.asarray(cm)
    present = cm.sum(1) > 0
    tp = np.diag(cm).astype(float)
    denom = cm.sum(0) + cm.sum(1)  # 2 TP + FP + FN
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return 100 * float(f1[present].mean())


def balanced_accuracy(cm: np.ndarray) -> float:
    """Mean recall over the classes present in the evaluation set, in points."""
    cm = np.asarray(cm)
    present = cm.sum(1) > 0
    return 100 * float((np.diag(cm)[present] / cm.sum(1)[present]).mean())


def tail_classes(train_counts) -> list[int]:
    """Indices of the classes seen less often in training than the median class.

    Strictly below the median, so a uniform training set has no tail (and no tail score).
    """
    counts = np.asarray(train_counts, dtype=float)
    return np.flatnonzero(counts < np.median(counts)).tolist()


def tail_top1(cm: np.ndarray, tail: list[int]) -> float | None:
    """Top-1 over the evaluation images whose true class is a tail class; ``None`` if there are none."""
    cm = np.asarray(cm)
    n = cm[tail].sum() if len(tail) else 0
    return None if n == 0 else 100 * float(np.diag(cm)[tail].sum() / n)


def empty_vs_animal_accuracy(cm: np.ndarray, empty: int) -> float:
    """Share of images whose "empty or animal" call is right, whatever species is named, in points.

    The first question a camera-trap pipeline answers (most frames are empty): an animal
    predicted as another species still counts as right here.
    """
    cm = np.asarray(cm)
    total = cm.sum()
    both_empty = cm[empty, empty]
    both_animal = total - cm[empty].sum() - cm[:, empty].sum() + both_empty
    return 100 * float((both_empty + both_animal) / total)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE in points: the image-weighted mean |accuracy - confidence| over equal-width bins.

    Confidence is the top softmax probability; bin ``b`` holds confidences in
    ``(b / n_bins, (b + 1) / n_bins]`` (the first bin also takes 0), following Guo et al. (2017).
    """
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(1)
    correct = probs.argmax(1) == np.asarray(y_true)
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        m = bins == b
        ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return 100 * float(ece)


def classification_report(logits: np.ndarray, y_true: np.ndarray, class_names: list[str],
                          train_counts=None) -> dict:
    """Everything the fine-tuning loop records for one evaluation, JSON-serialisable.

    ``train_counts`` (images per class in the training split) defines the tail classes; without
    it ``tail_top1`` is ``None``. ``empty_acc`` is ``None`` unless a class is named as empty frames are (:data:`EMPTY_NAMES`).
    """
    n = len(class_names)
    y_true = np.asarray(y_true)
    pred = logits.argmax(1)
    cm = confusion_matrix(y_true, pred, n)
    precision, recall = precision_recall(cm)
    tail = tail_classes(train_counts) if train_counts is not None else []
    empty = [i for i, c in enumerate(class_names) if str(c).strip().lower() in EMPTY_NAMES]
    return {
        "top1": top1_accuracy(logits, y_true),
        "top5": 100 * topk_accuracy(logits, y_true, 5),
        "macro_f1": macro_f1(cm),
        "balanced_acc": balanced_accuracy(cm),
        "tail_top1": tail_top1(cm, tail),
        "tail_classes": [class_names[i] for i in tail],
        "empty_acc": empty_vs_animal_accuracy(cm, empty[0]) if empty else None,
        "ece": expected_calibration_error(softmax(logits), y_true),
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
    tolerance is a parameter of every fine-tuning run. It is measured against the run's *own*
    best, so a run that plateaus lower "converges" sooner: compare backbones with
    :func:`epochs_to_reach` and a threshold common to them (:func:`common_threshold`).
    """
    if not top1_by_epoch:
        raise ValueError("no epochs to judge convergence on")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 points, got {tolerance}")
    best = max(top1_by_epoch)
    return next(i + 1 for i, v in enumerate(top1_by_epoch) if v >= best - tolerance)


def common_threshold(final_top1s, share: float = 0.95) -> float:
    """The top-1 every backbone on a target is asked to reach: ``share`` of the best final top-1."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    values = [float(v) for v in final_top1s]
    if not values:
        raise ValueError("no final top-1 values to set a common threshold from")
    return share * max(values)


def monitor_indices(n_val: int, k: int | None) -> np.ndarray:
    """The validation images scored after every epoch: the sorted first ``k`` of a permutation of
    ``n_val`` drawn from seed 0, so every run on a target watches the same ones; all ``n_val``
    where ``k`` is None or at least ``n_val``."""
    if k is None or k >= n_val:
        return np.arange(n_val)
    return np.sort(np.random.default_rng(0).permutation(n_val)[:k])


def monitor_curve(rows: list[dict]) -> list[float]:
    """The per-epoch monitor top-1 of a fine-tuning metrics log (``monitor_top1``, scored every
    epoch on a fixed validation subset; see :mod:`camtrap_ssl.train.finetune`). Logs written before
    the subset existed scored the whole split every epoch: their ``val_top1`` is that curve."""
    return [r["monitor_top1"] if "monitor_top1" in r else r["val_top1"] for r in rows]


def epochs_to_reach(top1_by_epoch: list[float], threshold: float) -> int | None:
    """The first epoch (1-based) whose validation top-1 reaches ``threshold``; ``None``: not reached."""
    return next((i + 1 for i, v in enumerate(top1_by_epoch) if v >= threshold), None)
