"""Linear probes on a target: how far a *frozen* pretrained representation gets with few labels.

RQ1's label-budget axis fine-tunes whole networks (:mod:`camtrap_ssl.experiments.finetuning`)
and also asks the classic SSL question: how well do the pretrained features separate the target's
classes when nothing but a linear classifier is trained on them? A probe here is multinomial
logistic regression (:func:`camtrap_ssl.pretrain.probes.fit_linear_probe`, the probe the
pretrained backbones are checked with: standardized features, L-BFGS from zero, so deterministic
given its features) on the pooled backbone features, at the centre crop fine-tuning scores, of a
class-stratified share of the target's training labels, scored on the whole validation split with
the metrics a fine-tuning run records.

The seed draws which images are labelled (:func:`camtrap_ssl.data.datasets.stratified_fraction`,
nested across shares for one seed), the same subset the fine-tuning run of that seed trains on.
Nothing else is random, so with all the labels every seed gives the same number: such a point has
no seed variance to show, and its interval has zero width (the book says so).

Each probe is a recorded run: ``<runs root>/<profile>/<target>/<backbone>/probe-f<share>-seed<k>-
<hash8>.json``, the hash over everything that changes its number (backbone weights, target data,
profile, share, seed), written atomically; a finished probe is read, never recomputed.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from camtrap_ssl.core import fileio, provenance
from camtrap_ssl.data.datasets import stratified_fraction
from camtrap_ssl.experiments.backbones import (
    backbone_sha256,
)
from camtrap_ssl.experiments.compare import PROBE_C, target_features
from camtrap_ssl.experiments.spec import RunSpec
from camtrap_ssl.pretrain.probes import class_scores, fit_linear_probe
from camtrap_ssl.train import metrics as M



def _feature_spec(spec: RunSpec) -> RunSpec:
    """What a probe's features depend on: the spec without what only the classifier on top sees
    (the fine-tuning seed and label share, the fine-tuning budget and its bookkeeping)."""
    return spec.replace(seed=0, label_fraction=1.0, epochs=None, lr=None, runs_root=None,
                        convergence_tolerance=0.5, lock_timeout=None)


def probe_identity(spec: RunSpec) -> dict:
    """What a probe's number depends on: backbone weights (of the spec's pretraining seed),
    target data, profile, protocol (the evaluation crop and the strip), share, seed."""
    return {"kind": "linear probe", "backbone": spec.backbone,
            "weights": backbone_sha256(spec.backbone, spec.profile, spec.pretrain_seed),
            "target": {"name": spec.target, **spec.data_identity},
            "profile": spec.profile.to_dict(), "label_fraction": spec.label_fraction,
            "protocol": {k: v for k, v in spec.protocol().items() if k != "augmentation"},
            **({"view": spec.view_identity()} if spec.view != "frame" else {}),
            "seed": spec.seed, "C": PROBE_C}


def probe_path(spec: RunSpec) -> Path:
    ident = probe_identity(spec)
    leaf = f"probe-f{spec.label_fraction:g}-seed{spec.seed}-{fileio.fingerprint(ident)[:8]}.json"
    b = spec.run_dir().parent.name  # the backbone's folder, pretraining seed included
    return spec.root / spec.profile.name / spec.target / b / leaf


def linear_probe_run(spec: RunSpec) -> dict:
    """The probe of ``spec`` (backbone, target, profile, seed, label_fraction): read when
    recorded, else computed and recorded. Returns the metrics (in points) and the run's path."""
    path = probe_path(spec)
    if path.is_file():
        return json.loads(path.read_text())
    # the features of compare's disk cache (one extraction per backbone, target and view)
    f = target_features(_feature_spec(spec), progress=False)
    tx, ty, vx, vy, classes = f.train_x, f.train_y, f.val_x, f.val_y, f.classes
    keep = stratified_fraction(ty, spec.label_fraction, spec.seed)
    clf = fit_linear_probe(tx[keep], ty[keep], PROBE_C)
    scores = class_scores(clf, vx, len(classes))
    counts = np.bincount(ty[keep], minlength=len(classes))
    report = M.classification_report(scores, vy, classes, counts)
    out = {"identity": probe_identity(spec), "path": str(path), "n_labelled": int(len(keep)),
           **{k: report[k] for k in ("top1", "top5", "macro_f1", "balanced_acc", "tail_top1",
                                     "empty_acc")},
           "environment": provenance.environment()}
    fileio.atomic_write_json(path, out)
    return out
