"""A run's per-image validation predictions, kept beside its summary, and the practice scores on them.

Every fine-tuning run ends by saving what its final evaluation predicted for each validation image
(``predictions.npz`` in the run directory, :data:`camtrap_ssl.train.rundir.PREDICTIONS`): the class
probabilities and the true labels, and, where the validation set carries them (the embedded
camera-trap targets and users' own cameras do, CIFAR does not), each image's ``ids``,
``sequence_ids`` and ``locations``. From that file alone a notebook rescores the run per sequence
or at any automation target (:mod:`camtrap_ssl.train.practice`) without loading a network.

Why this form:

* **float16 softmax probabilities**, N x C: a tenth of a float64 logit matrix, exact enough for
  every practice score (each row sums to 1 within 2^-11, inside the 1e-3 that
  :mod:`~camtrap_ssl.train.practice` accepts). Rounding to float16 can make the top two
  probabilities of a row equal where the logits were not; the predicted class is then raised by
  one float16 step (:func:`probabilities`), so the file's argmax is the evaluation's prediction
  and reproduces the summary's top-1 exactly.
* **Byte-identical for the same run**: ``np.savez`` stamps the current time into the zip, so the
  file is written with fixed member dates (:func:`npz_bytes`); its sha256 then identifies the
  predictions as the checkpoint's identifies the weights.
* **The summary's sequence and automation figures are computed from the saved file's arrays**
  (:func:`practice_summary`), not from the float32 logits, so recomputing them from the file gives
  the recorded numbers.
"""
from __future__ import annotations

import io
import zipfile

import numpy as np

from camtrap_ssl.train import metrics as M
from camtrap_ssl.train import practice

#: per-image fields copied from the validation dataset where it has them (same names everywhere)
FIELDS = ("ids", "sequence_ids", "locations")
#: the automation target the summary reports (``coverage_at_95``) and its bootstrap size
AUTOMATION_TARGET = 0.95
AUTOMATION_BOOT = 200
NO_SEQUENCES = {"unit": "sequence", "available": False, "why": "the target has no sequence ids"}
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def probabilities(logits: np.ndarray) -> np.ndarray:
    """float16 softmax of ``logits`` whose row argmax is that of the logits (see the module)."""
    logits = np.asarray(logits)
    p = M.softmax(logits).astype(np.float16)
    pred = logits.argmax(1)
    rows = np.flatnonzero(p.argmax(1) != pred)  # float16 rounding tied the top two
    p[rows, pred[rows]] = np.nextafter(p[rows, pred[rows]], np.float16(1))
    return p


def fields_of(val_set) -> dict[str, np.ndarray]:
    """The :data:`FIELDS` that ``val_set`` has, as arrays of str; a ``ValueError`` unless each
    has one entry per image (checked before training, not after it)."""
    out = {}
    for name in FIELDS:
        values = getattr(val_set, name, None)
        if values is None:
            continue
        values = np.asarray([str(v) for v in values])
        if values.shape != (len(val_set),):
            raise ValueError(f"the validation set's {name} has {values.shape[0]} entries for "
                             f"{len(val_set)} images")
        out[name] = values
    return out


def predictions_record(logits: np.ndarray, labels: np.ndarray, val_set) -> dict[str, np.ndarray]:
    """The arrays of ``predictions.npz``: ``probs``, ``labels`` and :func:`fields_of` ``val_set``."""
    return {"probs": probabilities(logits), "labels": np.asarray(labels, dtype=np.int64),
            **fields_of(val_set)}


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` archive (readable by ``np.load``, no pickles) that depends only on ``arrays``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def practice_summary(record: dict, class_names: list[str], seed: int) -> dict:
    """The summary's practice figures from a :func:`predictions_record` (or a read file).

    ``sequence``: :func:`camtrap_ssl.train.practice.sequence_scores` (frames pooled by the mean)
    with ``available: True``, or :data:`NO_SEQUENCES` where the record has no sequence ids;
    ``automation``: :func:`camtrap_ssl.train.practice.automation_report` at 95 % (the bootstrap
    over sequences, else locations, else images, ``seed`` the run's); and the flat scalars tables
    read: ``final_seq_top1``, ``final_seq_macro_f1``, ``final_seq_balanced_acc`` (points;
    ``None`` without sequences), ``coverage_at_95`` (share automated at 95 % accuracy; 0 where
    that accuracy is never reached, as the bootstrap counts it) and ``final_aurc``. Where there
    are sequences, ``sequence["coverage_at_target"]`` is the same automation per sequence (the
    bursts' mean probabilities: a burst is accepted or not as one).
    """
    probs, labels = record["probs"], record["labels"]
    seqs = record.get("sequence_ids")
    if seqs is None:
        sequence = dict(NO_SEQUENCES)
    else:
        sequence = {"available": True,
                    **practice.sequence_scores(probs, labels, seqs, class_names, rule="mean")}
    automation = practice.automation_report(
        probs, labels, class_names, target=AUTOMATION_TARGET, sequences=seqs,
        locations=record.get("locations"), n_boot=AUTOMATION_BOOT, seed=seed)
    at = automation["coverage_at_target"]
    if seqs is not None:  # automation per sequence: a burst is accepted or not as one
        agg = practice.aggregate_sequences(probs, labels, seqs, rule="mean")
        scored = agg.labels >= 0  # a burst whose frames tie has no label to score against
        per_seq = practice.coverage_at_accuracy(agg.probs[scored], agg.labels[scored],
                                                AUTOMATION_TARGET, unit="sequence")
        sequence["coverage_at_target"] = per_seq.as_dict()
    return {
        "sequence": sequence, "automation": automation,
        "final_seq_top1": sequence.get("top1"), "final_seq_macro_f1": sequence.get("macro_f1"),
        "final_seq_balanced_acc": sequence.get("balanced_acc"),
        f"coverage_at_{round(100 * AUTOMATION_TARGET)}": at["coverage"] if at["reached"] else 0.0,
        "final_aurc": automation["aurc"],
    }
