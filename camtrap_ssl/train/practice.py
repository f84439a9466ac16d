"""Scores the way camera-trap practice decides: per sequence, and automation at a confidence threshold.

Camera-trap teams label and classify *sequences* (the burst of frames one trigger takes), and let a
classifier decide only where it is confident, sending the rest to people (Norouzzadeh et al., PNAS
2018: keeping the confident predictions automates 99.3 % of Snapshot Serengeti images at 96.6 %
accuracy). This module turns a run's saved per-image class probabilities into those numbers:

* :func:`aggregate_sequences` and :func:`sequence_scores`: top-1, macro-F1 and balanced accuracy
  per sequence (frames pooled by the mean, or decided by the most confident frame);
* :func:`coverage_curve`, :func:`coverage_at_accuracy`, :func:`aurc`: how much can be automated at
  a required accuracy (the risk-coverage view of selective classification);
* :func:`precision_recall_at_threshold`, :func:`empty_vs_animal_at_threshold`: what is automated
  per species at one threshold;
* :func:`coverage_at_accuracy_interval`: a bootstrap interval over sequences (or locations, or
  images), the unit named in the result.

Units. Sequence-level top-1, macro-F1 and balanced accuracy are in points (0-100), like
:func:`camtrap_ssl.train.metrics.classification_report`, so they sit beside the frame-level
numbers. Everything about automation -- coverage, accuracy on the accepted set, the target, risk,
AURC, precision and recall at a threshold -- is a share in [0, 1], as in the selective
classification literature (``target=0.95`` asks for 95 %).

Pure functions over arrays (probabilities ``(N, C)``, labels ``(N,)``, sequence ids ``(N,)``,
class names), free of training code, so notebooks recompute them from saved predictions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from camtrap_ssl.train import metrics as M

#: class names that mean "nothing in the frame" (LILA's sets say "empty", Camtrap DP "blank")
EMPTY_NAMES = M.EMPTY_NAMES  # one list of the empty class's names
#: how frames' probabilities become a sequence's
RULES = ("mean", "max")
CONFIDENCE = 0.95
# rows of a probability matrix must sum to 1 within this (saved float16/float32 probabilities)
_SUM_TOLERANCE = 1e-3


def _check(probs, labels=None) -> tuple[np.ndarray, np.ndarray | None]:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"probs must be an (N, C) array with N, C >= 1, got shape {p.shape}")
    if not np.isfinite(p).all() or p.min() < -_SUM_TOLERANCE or p.max() > 1 + _SUM_TOLERANCE \
            or np.abs(p.sum(1) - 1).max() > _SUM_TOLERANCE:
        raise ValueError("probs must be class probabilities (rows in [0, 1] summing to 1); "
                         "for logits pass camtrap_ssl.train.metrics.softmax(logits)")
    if labels is None:
        return p, None
    y = np.asarray(labels)
    if y.shape != (p.shape[0],):
        raise ValueError(f"labels must have shape ({p.shape[0]},) to match probs, got {y.shape}")
    if y.size and (y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels must be class indices in [0, {p.shape[1]}), got {y.dtype} "
                         f"values {np.unique(y)[:10].tolist()}")
    return p, y.astype(np.int64)


def empty_index(class_names) -> int | None:
    """Index of the class named "empty" or "blank" (any case), ``None`` if there is none."""
    found = [i for i, c in enumerate(class_names) if str(c).strip().lower() in EMPTY_NAMES]
    if len(found) > 1:
        raise ValueError(f"more than one empty class: {[class_names[i] for i in found]}")
    return found[0] if found else None


# ------------------------------------------------------------------------------------- sequences

@dataclass(frozen=True)
class SequencePredictions:
    """Frames pooled into sequences (one row per sequence, in order of first appearance).

    ``labels`` is the given sequence-level label where there is one, else the frames' majority
    (-1 where the frames' labels tie); ``agree`` is False for a sequence without a given label
    whose frames do not all carry one label. Those are scored apart, never forced to a label.
    """

    ids: np.ndarray  # (S,) the sequence ids
    probs: np.ndarray  # (S, C) the sequence's class probabilities
    labels: np.ndarray  # (S,) int64
    n_frames: np.ndarray  # (S,) int64
    agree: np.ndarray  # (S,) bool
    rule: str

    @property
    def disagreeing(self) -> np.ndarray:
        return ~self.agree


def aggregate_sequences(probs, labels, sequence_ids, rule: str = "mean",
                        sequence_labels: Mapping | None = None) -> SequencePredictions:
    """Pool per-frame probabilities into per-sequence ones.

    ``rule="mean"`` (the default) averages the frames' probability vectors. The frames of a
    sequence are exchangeable noisy views of one scene (one animal, one trigger, seconds apart),
    so each frame's probabilities are an estimate of the sequence's class and their mean is the
    natural pooled estimate: every frame counts once, and one confidently wrong frame (the animal
    half out of the picture, motion blur, a flash glare) moves the mean by only 1/n of its
    error instead of deciding the sequence. This is roughly what the field's tools do when they
    smooth a sequence: MegaDetector's ``classification_postprocessing.
    smooth_classification_results_sequence_level`` lets the dominant class of a sequence
    overwrite its minority classifications ("deer/deer/elk/deer is really a deer"), and animl's
    ``sequence_classification`` pools the frames' class probabilities over the sequence
    (weighted by the detector's confidence); both assume one species per sequence, as we do.

    ``rule="max"``: the frame with the highest top probability decides, its whole probability
    vector becoming the sequence's (ties go to the earlier frame). It trusts the clearest view,
    and also the most confidently wrong one; it is offered beside the mean to show the difference.

    The sequence's label: ``sequence_labels[id]`` where given (sequence-level annotation, as in
    Snapshot Serengeti or Camtrap DP event observations), else the majority of its frames'
    ``labels``. A sequence without a given label whose frames disagree (an animal walking out
    leaves empty frames; two species) is marked ``agree=False`` and its label is the majority (-1
    on a tie), so that callers report it apart instead of silently forcing one label on it.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    p, y = _check(probs, labels)
    ids_in = np.asarray(sequence_ids)
    if ids_in.shape != (p.shape[0],):
        raise ValueError(f"sequence_ids must have shape ({p.shape[0]},), got {ids_in.shape}")
    uniq, first, inverse = np.unique(ids_in, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # sequences in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    seq = rank[inverse.reshape(-1)]
    ids, n_seq, n_classes = uniq[order], order.size, p.shape[1]
    n_frames = np.bincount(seq, minlength=n_seq)

    if rule == "mean":
        pooled = np.zeros((n_seq, n_classes))
        np.add.at(pooled, seq, p)
        pooled /= n_frames[:, None]
    else:
        by = np.lexsort((np.arange(seq.size), -p.max(1), seq))  # per sequence, most confident first
        starts = np.r_[0, np.cumsum(n_frames)[:-1]]
        pooled = p[by[starts]]

    counts = np.zeros((n_seq, n_classes), dtype=np.int64)
    np.add.at(counts, (seq, y), 1)
    top = counts.max(1)
    tied = (counts == top[:, None]).sum(1) > 1
    seq_labels = np.where(tied, -1, counts.argmax(1))
    agree = top == n_frames
    if sequence_labels is not None:
        for i, sid in enumerate(ids.tolist()):
            if sid in sequence_labels:
                lab = int(sequence_labels[sid])
                if not 0 <= lab < n_classes:
                    raise ValueError(f"sequence {sid!r}: given label {lab} is not in [0, {n_classes})")
                seq_labels[i], agree[i] = lab, True
    return SequencePredictions(ids, pooled, seq_labels.astype(np.int64), n_frames.astype(np.int64),
                               agree, rule)


def _scores(probs: np.ndarray, labels: np.ndarray, n_classes: int, empty: int | None) -> dict:
    if labels.size == 0:
        return {"n": 0, "top1": None, "macro_f1": None, "balanced_acc": None, "empty_acc": None}
    pred = probs.argmax(1)
    cm = M.confusion_matrix(labels, pred, n_classes)
    return {"n": int(labels.size), "top1": 100 * float((pred == labels).mean()),
            "macro_f1": M.macro_f1(cm), "balanced_acc": M.balanced_accuracy(cm),
            "empty_acc": None if empty is None else M.empty_vs_animal_accuracy(cm, empty)}


def sequence_scores(probs, labels, sequence_ids, class_names, rule: str = "mean",
                    sequence_labels: Mapping | None = None) -> dict:
    """Top-1, macro-F1, balanced accuracy (and empty-vs-animal accuracy) per sequence, in points.

    The scores are over the sequences with one label (given, or all frames agreeing). Sequences
    whose frames disagree are counted and scored apart, against their majority label (those
    whose frames tie have no label and are only counted). JSON-serialisable.
    """
    seqs = aggregate_sequences(probs, labels, sequence_ids, rule, sequence_labels)
    n_classes = len(class_names)
    if seqs.probs.shape[1] != n_classes:
        raise ValueError(f"{len(class_names)} class names for {seqs.probs.shape[1]} probability columns")
    empty = empty_index(class_names)
    ok = seqs.agree
    apart = ~ok & (seqs.labels >= 0)
    main = _scores(seqs.probs[ok], seqs.labels[ok], n_classes, empty)
    return {
        "unit": "sequence", "rule": rule, "n_images": int(seqs.n_frames.sum()),
        "n_sequences": int(ok.size), "n_scored": main.pop("n"), **main,
        "disagreeing": {
            "n": int((~ok).sum()), "n_tied": int((~ok & (seqs.labels < 0)).sum()),
            "ids": seqs.ids[~ok].tolist(),
            "against_majority": _scores(seqs.probs[apart], seqs.labels[apart], n_classes, empty),
        },
    }


# ------------------------------------------------------------------------------------ automation

def _tie_blocks(conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The order by decreasing confidence and the last position of each block of equal confidence.

    A threshold accepts all images of a confidence or none, so the curve steps block by block.
    """
    order = np.argsort(-conf, kind="stable")
    c = conf[order]
    ends = np.flatnonzero(np.r_[c[1:] != c[:-1], True])
    return order, ends


@dataclass(frozen=True)
class CoverageCurve:
    """The coverage-accuracy (risk-coverage) curve: one point per distinct confidence.

    At ``thresholds[i]`` the images (or sequences) whose top probability is ``>=`` it are
    accepted: ``coverage[i]`` is their share and ``accuracy[i]`` the share of them classified
    right. Thresholds decrease, so coverage increases to 1.
    """

    thresholds: np.ndarray
    coverage: np.ndarray
    accuracy: np.ndarray
    n: int
    unit: str

    @property
    def risk(self) -> np.ndarray:
        return 1 - self.accuracy

    def as_dict(self) -> dict:
        return {"unit": self.unit, "n": self.n, "thresholds": self.thresholds.tolist(),
                "coverage": self.coverage.tolist(), "accuracy": self.accuracy.tolist()}


def coverage_curve(probs, labels, unit: str = "image") -> CoverageCurve:
    """The coverage-accuracy curve of the top softmax probability as the confidence.

    ``unit`` only names what a row is ("image", or "sequence" for :class:`SequencePredictions`'
    ``probs``/``labels``).
    """
    p, y = _check(probs, labels)
    conf, correct = p.max(1), p.argmax(1) == y
    order, ends = _tie_blocks(conf)
    k = ends + 1
    right = np.cumsum(correct[order])[ends]
    return CoverageCurve(conf[order][ends], k / y.size, right / k, int(y.size), unit)


def _check_target(target: float) -> float:
    if not 0 < target <= 1:
        raise ValueError(f"target is a share in (0, 1] (0.95 for 95 %), got {target}")
    return float(target)


@dataclass(frozen=True)
class CoverageAtAccuracy:
    """The most that can be automated at a required accuracy.

    ``reached``: the largest ``coverage`` whose accepted set has ``accuracy >= target``, accepted
    at top probability ``>= threshold``. Not reached: ``threshold`` is ``None`` and ``coverage``,
    ``accuracy`` are those of the curve's most accurate point (the largest coverage among ties).
    """

    target: float
    reached: bool
    coverage: float
    accuracy: float
    threshold: float | None
    n: int
    unit: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def coverage_at_accuracy(probs, labels, target: float = 0.95, unit: str = "image") -> CoverageAtAccuracy:
    """How much can be automated while the automated part stays at least ``target`` accurate."""
    target = _check_target(target)
    curve = coverage_curve(probs, labels, unit)
    # counts, not ratios, decide ">= target" so that 19 of 20 meets 0.95 exactly
    k = np.rint(curve.coverage * curve.n)
    ok = np.rint(curve.accuracy * k) >= target * k - 1e-9
    if ok.any():
        i = int(np.flatnonzero(ok)[-1])
        return CoverageAtAccuracy(target, True, float(curve.coverage[i]), float(curve.accuracy[i]),
                                  float(curve.thresholds[i]), curve.n, unit)
    i = int(np.flatnonzero(curve.accuracy == curve.accuracy.max())[-1])
    return CoverageAtAccuracy(target, False, float(curve.coverage[i]), float(curve.accuracy[i]),
                              None, curve.n, unit)


def aurc(probs, labels) -> float:
    """Area under the risk-coverage curve (AURC), a share in [0, 1]; lower is better.

    The risk-coverage curve is that of selective classification (Geifman & El-Yaniv, NeurIPS
    2017); its area as a single score is AURC (Geifman, Uziel & El-Yaniv, ICLR 2019). Definition:
    order the N predictions by decreasing confidence; the risk at coverage k/N is the error rate
    of the k most confident; AURC = (1/N) sum_{k=1}^{N} risk(k/N). Images of equal confidence
    cannot be told apart, so within a block of ties the errors are spread evenly (the expected
    AURC over the orders of the tied images): a constant confidence gives AURC = the error rate.
    Its lowest value for the errors made is :func:`optimal_aurc`.
    """
    p, y = _check(probs, labels)
    conf, wrong = p.max(1), (p.argmax(1) != y).astype(float)
    order, ends = _tie_blocks(conf)
    n = y.size
    size = np.diff(np.r_[-1, ends])
    start = ends + 1 - size  # images before each block
    err_before = np.r_[0.0, np.cumsum(wrong[order])[ends][:-1]]
    rate = np.add.reduceat(wrong[order], start) / size
    block = np.repeat(np.arange(ends.size), size)
    k = np.arange(1, n + 1)
    risk = (err_before[block] + (k - start[block]) * rate[block]) / k
    return float(risk.mean())


def optimal_aurc(n: int, n_errors: int) -> float:
    """The AURC of a perfect confidence ranking (every correct prediction above every error).

    With ``e`` errors among ``n``, risk(k) = 0 for k <= n - e and (k - (n - e)) / k after, so
    AURC* = (1/n) sum_{k=n-e+1}^{n} (1 - (n - e) / k); for large n it tends to
    r + (1 - r) ln(1 - r) with r = e / n (Geifman et al. 2019). ``aurc - optimal_aurc`` is
    their excess AURC (E-AURC).
    """
    if n < 1 or not 0 <= n_errors <= n:
        raise ValueError(f"need n >= 1 and 0 <= n_errors <= n, got n={n}, n_errors={n_errors}")
    k = np.arange(n - n_errors + 1, n + 1)
    return float((1 - (n - n_errors) / k).sum() / n)


def precision_recall_at_threshold(probs, labels, class_names, threshold: float) -> dict:
    """Per-species precision and recall when only predictions with top probability ``>= threshold``
    are automated; the rest go to people ("not automated").

    How deferred images enter: they are no prediction, so they do not count in any species'
    precision (automated right / automated as that species; ``None`` where none is automated as
    it), but they do count against recall (automated right / *all* images of that species): a
    species a person must still label is not found by the automation. ``automated`` is the share
    of the species' images that passed the threshold. Shares in [0, 1]; JSON-serialisable.
    """
    p, y = _check(probs, labels)
    if len(class_names) != p.shape[1]:
        raise ValueError(f"{len(class_names)} class names for {p.shape[1]} probability columns")
    accepted = p.max(1) >= threshold
    pred = p.argmax(1)
    n_classes = p.shape[1]
    cm = M.confusion_matrix(y[accepted], pred[accepted], n_classes)
    support = np.bincount(y, minlength=n_classes)
    right, predicted, passed = np.diag(cm), cm.sum(0), cm.sum(1)

    def share(a, b):
        return None if b == 0 else float(a / b)

    return {
        "threshold": float(threshold), "n": int(y.size), "coverage": float(accepted.mean()),
        "accuracy": share(right.sum(), accepted.sum()),
        "per_class": {
            str(name): {"precision": share(right[i], predicted[i]), "recall": share(right[i], support[i]),
                        "automated": share(passed[i], support[i]), "support": int(support[i]),
                        "predicted": int(predicted[i])}
            for i, name in enumerate(class_names)},
    }


def empty_vs_animal_at_threshold(probs, labels, class_names, threshold: float) -> dict | None:
    """Empty-vs-animal accuracy of the automated images (top probability ``>= threshold``).

    ``None`` where no class is named "empty" or "blank". Any species called for an animal counts
    as right (:func:`camtrap_ssl.train.metrics.empty_vs_animal_accuracy`). ``accuracy`` is a share
    in [0, 1], ``None`` when nothing passes the threshold.
    """
    empty = empty_index(class_names)
    if empty is None:
        return None
    p, y = _check(probs, labels)
    accepted = p.max(1) >= threshold
    cm = M.confusion_matrix(y[accepted], p.argmax(1)[accepted], p.shape[1])
    return {"threshold": float(threshold), "coverage": float(accepted.mean()),
            "n_automated": int(accepted.sum()),
            "accuracy": M.empty_vs_animal_accuracy(cm, empty) / 100 if accepted.any() else None}


# ------------------------------------------------------------------------------------- intervals

@dataclass(frozen=True)
class CoverageInterval:
    """Coverage at a target accuracy with a percentile-bootstrap interval.

    ``unit`` is what was resampled ("sequence", "location" or "image") and ``n_units`` how many
    there were. ``coverage`` is the point estimate on the data as given; a resample (or the
    data) whose curve never reaches the target automates nothing and counts as coverage 0, and
    ``reached_share`` is the share of resamples that reached it.
    """

    target: float
    coverage: float
    low: float
    high: float
    confidence: float
    unit: str
    n_units: int
    n_boot: int
    reached_share: float
    seed: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _weighted_coverage(correct_sorted, ends, weights, target):
    """Coverage at target accuracy for each row of ``weights`` (resample counts per image)."""
    w_cum = np.cumsum(weights, axis=1)[:, ends]
    r_cum = np.cumsum(weights * correct_sorted, axis=1)[:, ends]
    ok = (w_cum > 0) & (r_cum >= target * w_cum - 1e-9)
    cov = np.where(ok, w_cum / w_cum[:, -1:], 0.0)
    return cov.max(1), ok.any(1)


def coverage_at_accuracy_interval(probs, labels, target: float = 0.95, *, sequences=None,
                                  locations=None, n_boot: int = 2000, seed: int = 0,
                                  confidence: float = CONFIDENCE) -> CoverageInterval:
    """Bootstrap interval of the coverage at ``target`` accuracy of per-image predictions.

    Frames of one sequence (and sequences of one camera) are not independent, so the resampled
    unit is the sequence where ``sequences`` (ids, ``(N,)``) is given, else the location where
    ``locations`` is, else the image; a drawn unit brings all its images. The draws come from
    ``seed`` alone. To score sequences themselves, pass :class:`SequencePredictions`' ``probs``
    and ``labels`` (the unit is then the row: "image" here means one row).
    """
    target = _check_target(target)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 10:
        raise ValueError(f"n_boot must be >= 10, got {n_boot}")
    p, y = _check(probs, labels)
    if sequences is not None:
        unit, groups = "sequence", np.asarray(sequences)
    elif locations is not None:
        unit, groups = "location", np.asarray(locations)
    else:
        unit, groups = "image", np.arange(y.size)
    if groups.shape != y.shape:
        raise ValueError(f"{unit} ids must have shape {y.shape}, got {groups.shape}")
    _, group = np.unique(groups, return_inverse=True)
    group = group.reshape(-1)
    n_units = int(group.max()) + 1
    conf, correct = p.max(1), (p.argmax(1) == y).astype(float)
    order, ends = _tie_blocks(conf)
    correct_sorted, group_sorted = correct[order], group[order]
    point, _ = _weighted_coverage(correct_sorted, ends, np.ones((1, y.size)), target)
    rng = np.random.default_rng(seed)
    covs, reached = [], []
    chunk = max(1, min(n_boot, 2_000_000 // y.size))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        counts = rng.multinomial(n_units, np.full(n_units, 1 / n_units), size=b)
        c, r = _weighted_coverage(correct_sorted, ends, counts[:, group_sorted].astype(float), target)
        covs.append(c)
        reached.append(r)
    covs, reached = np.concatenate(covs), np.concatenate(reached)
    lo, hi = np.quantile(covs, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return CoverageInterval(target, float(point[0]), float(lo), float(hi), confidence, unit, n_units,
                            n_boot, float(reached.mean()), seed)


# ----------------------------------------------------------------------------------------- report

def automation_report(probs, labels, class_names, target: float = 0.95, threshold: float | None = None,
                      *, sequences=None, locations=None, n_boot: int = 1000, seed: int = 0) -> dict:
    """Everything about automating one evaluation set, JSON-serialisable (shares in [0, 1]).

    ``coverage_at_target`` (with its bootstrap ``interval`` over sequences, locations or images:
    see :func:`coverage_at_accuracy_interval`), ``aurc`` and ``excess_aurc`` (AURC minus that of
    a perfect ranking of the same errors), and per species and empty-vs-animal at ``threshold``,
    which defaults to the threshold that reaches the target (``None`` results when it is not
    reached and none is given).
    """
    p, y = _check(probs, labels)
    at = coverage_at_accuracy(p, y, target)
    interval = coverage_at_accuracy_interval(p, y, target, sequences=sequences, locations=locations,
                                             n_boot=n_boot, seed=seed)
    value = aurc(p, y)
    thr = at.threshold if threshold is None else float(threshold)
    return {
        "unit": "image", "n": int(y.size), "target": at.target,
        "coverage_at_target": at.as_dict(), "interval": interval.as_dict(),
        "aurc": value, "excess_aurc": value - optimal_aurc(y.size, int((p.argmax(1) != y).sum())),
        "threshold": thr,
        "at_threshold": None if thr is None else precision_recall_at_threshold(p, y, class_names, thr),
        "empty_vs_animal": None if thr is None else empty_vs_animal_at_threshold(p, y, class_names, thr),
    }
