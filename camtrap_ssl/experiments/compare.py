"""Which representation for my data: frozen features of several backbones, probed on one target.

``camtrap-ssl compare --target T`` answers a camera-trap team's question with the study's own
comparison made cheap: every backbone's pooled features of the target's images are extracted
*once* (the evaluation view fine-tuning scores: the centre crop of the stored frame, strip cut)
and cached on disk, then two classifiers that train in seconds are fitted on them at several label
shares and seeds, and (``finetune=True``) whole networks are fine-tuned as ``camtrap-ssl finetune``
would.

* **Linear probe**: :func:`camtrap_ssl.pretrain.probes.fit_linear_probe` (standardised features,
  multinomial logistic regression, L-BFGS from zero: deterministic given its training set).
* **k-NN**: majority vote of the ``k`` cosine-nearest labelled images
  (:func:`camtrap_ssl.pretrain.probes.knn_scores`, scikit-learn's ``KNeighborsClassifier`` with
  ``metric="cosine"``); ``k`` is :data:`KNN_K` (the usual 20 of the SSL literature) but never
  more than the labelled images per class on average (:func:`knn_k`): with one labelled image per
  class a vote of 20 would only count classes, so a small share gets a near-1-NN.
* **Seeds** draw which training images are labelled
  (:func:`camtrap_ssl.data.datasets.stratified_fraction`, nested across shares), the subset a
  fine-tuning run of that seed trains on; the validation split is the target's, fixed (drawn with
  seed 0 for a real dataset). With all labels every seed labels the same images, so a probe gives
  the same predictions for every seed: there the interval is a bootstrap over validation images
  instead, and the report says which (:mod:`.compare_stats`).

**The feature cache.** ``<cache>/features/<profile>/<target>/<backbone>-<hash16>.npz``, written
atomically, the hash over everything that changes the features (:func:`feature_identity`: the
backbone's weights, the target's data identity, the profile, the crop and strip); a second
comparison on the same data reads them and runs no network.

Everything the user can get wrong is refused by :func:`plan_compare` before any image is read,
with one message naming the parameter and what it may be.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from camtrap_ssl.core import fileio, paths, provenance
from camtrap_ssl.core.profiles import Profile
from camtrap_ssl.core.progress import progress_bar
from camtrap_ssl.data.datasets import stratified_fraction
from camtrap_ssl.data.user import target_key
from camtrap_ssl.experiments import compare_stats
from camtrap_ssl.experiments.backbones import (
    backbone_names,
    create_backbone,
    describe_backbone,
    is_checkpoint_file,
    parse_embedded,
)
from camtrap_ssl.experiments.checks import _refuse
from camtrap_ssl.experiments.finetuning import finetune_run, load_spec_target
from camtrap_ssl.experiments.spec import (
    RunSpec,
    check_label_fraction,
    check_positive_int,
    check_profile,
)
from camtrap_ssl.models import create_model, get_entry, list_models
from camtrap_ssl.models.weights import load_checkpoint
from camtrap_ssl.pretrain.methods import METHODS
from camtrap_ssl.pretrain.probes import (
    class_scores,
    extract_features,
    fit_linear_probe,
    knn_scores,
)
from camtrap_ssl.train.augment import center_crop
from camtrap_ssl.train.practice import sequence_scores

__all__ = ["COLUMNS", "DEFAULT_FRACTIONS", "DEFAULT_SEEDS", "KNN_K", "MIN_SEEDS", "PROTOCOLS",
           "CompareResult", "ComparePlan", "architecture", "default_backbones", "estimate_seconds",
           "feature_identity", "feature_path", "plan_compare", "render_report", "run_compare",
           "knn_k", "probe_rows", "target_features", "Features"]

DEFAULT_FRACTIONS = (0.05, 0.2, 1.0)
DEFAULT_SEEDS = (0, 1, 2)
MIN_SEEDS = 3  # an interval over two seeds is either huge or, by coincidence, of zero width
KNN_K = 20
PROBE_C = 1.0  # the linear probe's inverse L2 strength (scikit-learn's default, as probing's)
PROTOCOLS = ("linear probe", "kNN", "fine-tune")
METRICS = ("top1", "macro_f1", "balanced_acc")
BATCH = 128
FEATURES_VERSION = 1  # bumped when the way features are extracted changes
# the runs table: one row per (backbone, protocol, label share, seed)
COLUMNS = ("backbone", "method", "paradigm", "family", "architecture", "protocol",
           "label_fraction", "knn_k", "seed", "n_labelled", "n_val", "top1", "macro_f1",
           "balanced_acc", "seq_top1", "source", "code_version", "target", "profile", "row")


def default_backbones(profile) -> list[str]:
    """The backbones a comparison takes when none are named: the embedded ones (the shipped demo
    checkpoints; pretrained on first use at other profiles), at the paper profile the study's
    official checkpoints (every registry name with published weights)."""
    profile = check_profile(profile)
    if profile.name == "paper":
        return [n for n in list_models() if get_entry(n).weights is not None]
    return list(METHODS)


def architecture(backbone: str, profile: Profile) -> str:
    """The network a backbone is (what SSL and SL are paired on): the profile's architecture for
    an embedded name, the checkpoint's recorded one, or ``ResNet-<depth>`` of a registry entry
    (the study's pairing: R50 with R50, R152 with R152, whatever the width)."""
    if parse_embedded(backbone) is not None:
        return profile.arch
    if is_checkpoint_file(backbone):
        return load_checkpoint(backbone)["record"]["config"]["arch"]
    return f"ResNet-{get_entry(backbone).arch.get('depth', '?')}"


def _list(value, name: str) -> list:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise _refuse(name, value, "a non-empty list (or a comma-separated string)")
    return list(value)


@dataclass(frozen=True)
class ComparePlan:
    """A checked comparison: one feature spec per backbone (seed 0, all labels), the shares,
    seeds and protocols. Built by :func:`plan_compare`; run by :func:`run_compare`."""
    specs: tuple  # RunSpec per backbone, in order
    label_fractions: tuple
    seeds: tuple
    protocols: tuple
    knn_k: int
    metric: str
    alpha: float
    out: Path
    render: bool = True
    options: dict = field(default_factory=dict)

    @property
    def target(self) -> str:
        return self.specs[0].target

    @property
    def profile(self) -> Profile:
        return self.specs[0].profile

    @property
    def backbones(self) -> list[str]:
        return [s.backbone for s in self.specs]

    def n_fits(self) -> int:
        return len(self.specs) * len(self.label_fractions) * len(self.seeds)

    def describe(self) -> str:
        probes = [p for p in self.protocols if p != "fine-tune"]
        lines = [f"compare on target {self.target!r} at profile {self.profile.name!r}:",
                 f"  backbones ({len(self.specs)}): {', '.join(self.backbones)}",
                 f"  protocols: {', '.join(self.protocols)} (kNN: cosine, k = {self.knn_k} or the "
                 "labelled images per class, if fewer)",
                 f"  label shares: {', '.join(f'{f:g}' for f in self.label_fractions)}; seeds: "
                 f"{', '.join(map(str, self.seeds))} (the seed draws which images are labelled)",
                 f"  {self.n_fits() * len(probes)} probe fits on frozen features"
                 + (f", {self.n_fits()} fine-tuning runs" if "fine-tune" in self.protocols else ""),
                 f"  verdicts on {self.metric}, Holm-adjusted over the report's family, "
                 f"alpha = {self.alpha}",
                 f"  output: {self.out}"]
        return "\n".join(lines)


def plan_compare(target, backbones=None, profile="demo", label_fractions=DEFAULT_FRACTIONS,
                 seeds=DEFAULT_SEEDS, finetune: bool = False, out=None, knn_k: int = KNN_K,
                 metric: str = "top1", alpha: float = 0.05, render: bool = True,
                 **options) -> ComparePlan:
    """Check a comparison and return its plan; nothing is loaded or computed.

    ``target``: a target name or path (anything :class:`RunSpec` takes); ``backbones``: names
    (a list or comma-separated; default :func:`default_backbones`); ``label_fractions`` in
    (0, 1]; ``seeds``: at least :data:`MIN_SEEDS` distinct integers >= 0; ``out``: the report's
    folder (default ``compare-<target>`` under the runs root); ``options``: any other
    :class:`RunSpec` field (``precision``, ``crop``, ``strip``, ``runs_root``, a path target's
    data options, ...), passed to every spec. A bad value raises one ``ValueError`` naming it."""
    profile = check_profile(profile)
    backbones = default_backbones(profile) if backbones is None else _list(backbones, "backbones")
    if len(set(backbones)) != len(backbones):
        raise _refuse("backbones", backbones, "a list of distinct backbone names")
    fractions = [check_label_fraction(f, "label_fractions") for f in _list(label_fractions,
                                                                           "label_fractions")]
    fractions = sorted(set(fractions))
    seeds = _list(seeds, "seeds")
    seeds = [int(s) if isinstance(s, str) and s.isdigit() else s for s in seeds]
    if any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds) \
            or len(set(seeds)) != len(seeds) or len(seeds) < MIN_SEEDS:
        raise _refuse("seeds", seeds, f"at least {MIN_SEEDS} distinct integers >= 0 (an interval "
                                      "needs them)")
    knn_k = check_positive_int(knn_k, "knn_k")
    if metric not in METRICS:
        raise _refuse("metric", metric, f"one of {list(METRICS)}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise _refuse("alpha", alpha, "a number in (0, 1)")
    bad = sorted(set(options) & {"backbone", "target", "profile", "seed", "label_fraction"})
    if bad:
        raise _refuse(bad[0], options[bad[0]], "set by compare itself (use backbones, target, "
                                               "profile, seeds, label_fractions)")
    specs = []
    for b in backbones:
        try:
            specs.append(RunSpec(b, target, profile, seed=0, **options))
        except ValueError as e:
            if str(e).startswith("backbone="):
                raise _refuse("backbones", b, f"names out of {backbone_names()} or pretraining "
                                              "checkpoint files (.pt)") from None
            raise
        except TypeError as e:  # an option that is not a RunSpec field
            raise ValueError(f"compare: {e}; options are RunSpec fields") from None
    name = target_key(specs[0].target) if specs[0].by_path else specs[0].target
    out = Path(out) if out is not None else specs[0].root / f"compare-{_safe(name)}-{profile.name}"
    if out.exists() and not out.is_dir():
        raise _refuse("out", str(out), "a folder (it is a file)")
    protocols = ("linear probe", "kNN") + (("fine-tune",) if finetune else ())
    return ComparePlan(tuple(specs), tuple(fractions), tuple(seeds), protocols, knn_k, metric,
                       float(alpha), out, render, dict(options))


# -- features ---------------------------------------------------------------------------------
def feature_identity(spec: RunSpec) -> dict:
    """Everything a backbone's features of a target depend on: its weights (content hash, or
    a zoo entry's published file and checksum), the pretraining seed, the target's data identity
    and data seed, the profile (stored size, crop) and the protocol's crop and strip."""
    ident = spec.identity
    proto = spec.protocol()
    return {"kind": "frozen features", "version": FEATURES_VERSION,
            "backbone": ident["backbone"], "pretrain_seed": spec.pretrain_seed,
            "target": ident["target"], "data_seed": spec.data_seed, "profile": ident["profile"],
            "view": {"crop": proto["crop"], "strip": proto["strip"], "eval": "centre crop"},
            "box_view": spec.view_identity()}


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", text).strip("._")[:60] or "x"


def feature_path(spec: RunSpec) -> Path:
    b = _safe(spec.backbone) + (f".pretrain{spec.pretrain_seed}" if spec.pretrain_seed else "")
    h = fileio.fingerprint(feature_identity(spec))
    target = target_key(spec.target) if spec.by_path else spec.target
    return paths.cache_dir() / "features" / spec.profile.name / _safe(target) / f"{b}-{h}.npz"


@dataclass
class Features:
    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    classes: list
    path: Path
    cached: bool  # read from the cache (no network ran)
    val_sequences: np.ndarray | None = None  # sequence (event) id of each validation image


def _extract(model, dataset, crop: int, desc: str, progress: bool) -> np.ndarray:
    """Pooled features of every image of ``dataset`` (centre ``crop``), batch by batch."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in progress_bar(range(0, len(dataset), BATCH), desc=desc, show=progress, leave=False):
            idx = torch.arange(i, min(i + BATCH, len(dataset)))
            x = (dataset.get_batch(idx)[0] if hasattr(dataset, "get_batch")  # in-memory worlds
                 else torch.stack([dataset[int(j)][0] for j in idx]))  # prepared files
            out.append(extract_features(model, center_crop(x, crop), batch_size=BATCH))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _read(path: Path) -> Features:
    with np.load(path, allow_pickle=False) as z:
        return Features(z["train_x"], z["train_y"], z["val_x"], z["val_y"],
                        [str(c) for c in z["classes"]], path, True,
                        z["val_sequences"] if "val_sequences" in z.files else None)


def target_features(spec: RunSpec, target=None, progress: bool = True) -> Features:
    """The features of ``spec``'s backbone on its target: read from the cache, else extracted
    (``target``: the target already loaded) and written there atomically."""
    path = feature_path(spec)
    if path.is_file():
        return _read(path)
    tgt = target if target is not None else load_spec_target(spec, progress)
    model = create_backbone(spec.backbone, None, spec.profile, 0, spec.pretrain_seed)
    crop = spec.protocol()["crop"]
    tx = _extract(model, tgt.train, crop, f"{spec.backbone} train", progress)
    vx = _extract(model, tgt.val, crop, f"{spec.backbone} val", progress)
    arrays = {"train_x": tx, "train_y": np.asarray(tgt.train.labels, np.int64), "val_x": vx,
              "val_y": np.asarray(tgt.val.labels, np.int64),
              "classes": np.asarray([str(c) for c in tgt.classes]),
              "identity": np.asarray(json.dumps(feature_identity(spec), sort_keys=True,
                                                default=str))}
    seqs = getattr(tgt.val, "sequence_ids", None)
    if seqs is not None:  # sequence-level scores (practice: bursts are labelled as one)
        arrays["val_sequences"] = np.asarray([str(q) for q in seqs])
    fileio.atomic_write_npz(path, arrays)
    return Features(tx, arrays["train_y"], vx, arrays["val_y"], list(arrays["classes"]), path,
                    False, arrays.get("val_sequences"))


# -- the estimate --------------------------------------------------------------------------------
def _seconds_per_image(spec: RunSpec, n: int = 16) -> float:
    """A short timed forward pass on this machine: the backbone's architecture at random init
    (the speed does not depend on the weights), ``n`` images at the crop, after a warm-up."""
    if parse_embedded(spec.backbone) is not None:
        model = create_model(spec.profile.arch, num_classes=None)
    elif is_checkpoint_file(spec.backbone):
        model = create_model(load_checkpoint(spec.backbone)["record"]["config"]["arch"],
                             num_classes=None)
    else:
        model = create_model(spec.backbone, pretrained=False, num_classes=None)
    crop = spec.protocol()["crop"]
    x = torch.rand(n, 3, crop, crop)
    model.eval()
    with torch.no_grad():
        model.forward_features(x[:2])
        t0 = time.perf_counter()
        model.forward_features(x)
    return (time.perf_counter() - t0) / n


# Pretrained features take L-BFGS more iterations than separated blobs: measured on the demo
# backbones' features of the Serengeti stand-in, a probe fit took about five times the blob fit.
BLOB_SLOWDOWN = 5.0


def _fit_seconds(n: int, dim: int, n_classes: int) -> float:
    """One linear probe on ``n`` well-separated blobs of ``dim`` features, timed (after a
    warm-up fit, so that importing scikit-learn is not counted), times :data:`BLOB_SLOWDOWN`."""
    g = np.random.default_rng(0)
    y = np.arange(n) % max(n_classes, 2)
    x = g.normal(size=(n, dim)) + 3 * g.normal(size=(max(n_classes, 2), dim))[y]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fit_linear_probe(x[:20], y[:20], PROBE_C)
        t0 = time.perf_counter()
        fit_linear_probe(x, y, PROBE_C)
    return BLOB_SLOWDOWN * (time.perf_counter() - t0)


def estimate_seconds(plan: ComparePlan, todo: list, n_train: int, n_val: int,
                     n_classes: int, dim: int = 128, probes_cached: int = 0) -> dict:
    """Seconds for features (of the backbones in ``todo``), probes and fine-tuning, from a timed
    forward pass and a timed probe fit on this machine; an estimate, said to be one."""
    per = {s.backbone: _seconds_per_image(s) for s in todo}
    feats = sum(per.values()) * (n_train + n_val)
    fresh = len(plan.specs) - probes_cached  # backbones whose probe predictions are not kept
    fits = 0.0
    if fresh:  # the kNN votes cost little beside the logistic regression
        fits = sum(_fit_seconds(max(2, math.ceil(f * n_train)), dim, n_classes)
                   for f in plan.label_fractions) * fresh * len(plan.seeds)
    fine = 0.0
    if "fine-tune" in plan.protocols:
        spi = {s.backbone: per.get(s.backbone) or _seconds_per_image(s) for s in plan.specs}
        epochs = plan.specs[0].config().epochs
        # a training step is about three forward passes (forward, backward), each epoch sees
        # the whole training set (label shares repeat their images) and scores validation
        fine = sum(spi.values()) * (3 * n_train + n_val) * epochs * len(plan.seeds) \
            * len(plan.label_fractions)
    return {"features": feats, "probes": fits, "fine-tune": fine,
            "total": feats + fits + fine, "seconds_per_image": per}


# -- the run ------------------------------------------------------------------------------------
def knn_k(labels, k: int = KNN_K) -> int:
    """The k of a k-NN vote on ``labels``: ``k``, at most the labelled images per class (mean
    over the classes present, rounded down), at least 1."""
    labels = np.asarray(labels)
    return int(max(1, min(k, len(labels) // max(1, len(np.unique(labels))))))


def _scores(protocol: str, feats: Features, keep: np.ndarray, k: int) -> np.ndarray:
    n = len(feats.classes)
    if protocol == "linear probe":
        with warnings.catch_warnings():  # one image per class reads like regression to sklearn
            warnings.simplefilter("ignore", UserWarning)
            clf = fit_linear_probe(feats.train_x[keep], feats.train_y[keep], PROBE_C)
        return class_scores(clf, feats.val_x, n)
    return knn_scores(feats.train_x[keep], feats.train_y[keep], feats.val_x, n,
                      knn_k(feats.train_y[keep], k))


def _probabilities(protocol: str, scores: np.ndarray) -> np.ndarray:
    """A probe's class probabilities: the k-NN's vote shares, the linear probe's softmax (classes
    the labelled images left out score -inf, probability 0)."""
    if protocol == "kNN":
        return scores / np.maximum(scores.sum(1, keepdims=True), 1)
    z = np.exp(scores - scores.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def _sequence_top1(probs, feats: Features) -> float | None:
    """Sequence-level top-1 (points; the mean of each burst's frame probabilities, scored against
    its frames' majority label, :func:`camtrap_ssl.train.practice.sequence_scores`); None where
    the target has no sequences (or an older cache kept no probabilities)."""
    if probs is None or feats.val_sequences is None:
        return None
    return sequence_scores(np.asarray(probs, np.float64), feats.val_y, feats.val_sequences,
                           feats.classes)["top1"]


def _probe_cache(feats: Features) -> Path | None:
    """Where a cached feature file's probe predictions are kept (beside it); None in memory."""
    return feats.path.with_suffix(".probes.npz") if feats.path.is_file() else None


def _read_probe_cache(path: Path | None) -> dict:
    if path is None or not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def probe_rows(plan: ComparePlan, spec: RunSpec, feats: Features, code: str | None = None,
               bar=None) -> tuple[list, dict]:
    """The linear-probe and k-NN rows of one backbone's features over the plan's shares and
    seeds, and each row's validation predictions (``{row index: predicted class}``).

    A probe is a function of its features and labelled images, so its validation predictions
    are kept beside the feature file (keyed by protocol, labelled images, k and C) and a second
    comparison reads them; the metrics are computed from the predictions
    (:func:`.compare_stats.metric_values`, the definitions of :mod:`camtrap_ssl.train.metrics`)."""
    code = provenance.code_version() if code is None else code
    desc = describe_backbone(spec.backbone)
    arch = architecture(spec.backbone, spec.profile)
    cache_path = _probe_cache(feats)
    cache = _read_probe_cache(cache_path)
    n_cached = len(cache)
    rows, preds = [], {}
    for protocol in (p for p in plan.protocols if p != "fine-tune"):
        for f in plan.label_fractions:
            for s in plan.seeds:
                keep = stratified_fraction(feats.train_y, f, s)
                k = knn_k(feats.train_y[keep], plan.knn_k) if protocol == "kNN" else None
                key = fileio.fingerprint({"protocol": protocol, "k": k, "C": PROBE_C,
                                          "version": FEATURES_VERSION, "probabilities": True,
                                          "keep": hashlib.sha256(keep.tobytes()).hexdigest()})
                if key not in cache:  # the same labelled images give the same predictions
                    scores = _scores(protocol, feats, keep, plan.knn_k)
                    cache[key] = scores.argmax(1).astype(np.int32)
                    cache[key + ".p"] = _probabilities(protocol, scores).astype(np.float16)
                pred = cache[key]
                values = compare_stats.metric_values(pred, feats.val_y, len(feats.classes))
                seq = _sequence_top1(cache.get(key + ".p"), feats)
                rows.append({**desc, "architecture": arch, "protocol": protocol,
                             "label_fraction": f, "knn_k": k, "seed": s,
                             "n_labelled": int(len(keep)), "n_val": int(len(pred)),
                             **{m: float(values[m][0]) for m in METRICS}, "seq_top1": seq,
                             "source": str(feats.path), "code_version": code,
                             "target": str(spec.target), "profile": spec.profile.name})
                preds[len(rows) - 1] = pred
                if bar is not None:
                    bar.update(1)
    if cache_path is not None and len(cache) > n_cached:
        fileio.atomic_write_npz(cache_path, cache)
    return rows, preds


def _finetune_rows(plan, spec, code, progress) -> list:
    desc = describe_backbone(spec.backbone)
    arch = architecture(spec.backbone, spec.profile)
    rows = []
    for f in plan.label_fractions:
        for s in plan.seeds:
            summary, rd = finetune_run(spec.replace(seed=s, label_fraction=f), progress=progress)
            params = fileio.read_json(Path(rd) / "params.json")
            labels = params.get("labels") or {}
            rows.append({**desc, "architecture": arch, "protocol": "fine-tune",
                         "label_fraction": f, "knn_k": None, "seed": s,
                         "n_labelled": labels.get("n_labelled"), "n_val": None,
                         **{m: summary.get(f"final_{m}") for m in METRICS},
                         "seq_top1": summary.get("final_seq_top1"), "source": str(rd),
                         "code_version": (params.get("environment") or {}).get("code_version",
                                                                               code),
                         "target": str(spec.target), "profile": spec.profile.name})
    return rows


@dataclass
class CompareResult:
    runs: pd.DataFrame
    summary: pd.DataFrame
    comparisons: pd.DataFrame
    csv: Path
    html: Path | None
    seconds: dict


def run_compare(plan: ComparePlan, progress: bool = True, echo=print) -> CompareResult:
    """Run a plan: print what it computes and the time it should take, extract (or read) the
    features, fit the probes (and fine-tune), write ``runs.csv``, ``predictions.npz``,
    ``summary.csv``, ``comparisons.csv`` and, ``plan.render``, the executed
    ``compare_report.ipynb`` and its HTML into ``plan.out``."""
    t_start = time.perf_counter()
    out = Path(plan.out)
    out.mkdir(parents=True, exist_ok=True)
    todo = [s for s in plan.specs if not feature_path(s).is_file()]
    tgt = None
    if todo:
        tgt = load_spec_target(plan.specs[0], progress)
        sizes = (len(tgt.train), len(tgt.val), len(tgt.classes))
    else:
        cached = _read(feature_path(plan.specs[0]))
        sizes = (len(cached.train_y), len(cached.val_y), len(cached.classes))
    kept = sum(1 for s in plan.specs if s not in todo
               and feature_path(s).with_suffix(".probes.npz").is_file())
    est = estimate_seconds(plan, todo, *sizes, probes_cached=kept)
    echo(plan.describe())
    echo(f"  target: {sizes[0]} training and {sizes[1]} validation images, {sizes[2]} classes; "
         f"features cached for {len(plan.specs) - len(todo)} of {len(plan.specs)} backbones, "
         f"probe predictions for {kept}")
    echo(f"  estimated time on this machine: {est['total']:.0f} s (features {est['features']:.0f}"
         f" s, probes {est['probes']:.0f} s" + (f", fine-tuning {est['fine-tune']:.0f} s"
                                                if est["fine-tune"] else "")
         + "; from a timed forward pass and probe fit, plus the HTML report)")
    code = provenance.code_version()
    rows, preds, t_feat = [], {}, 0.0
    probes = [p for p in plan.protocols if p != "fine-tune"]
    bar = progress_bar(total=plan.n_fits() * len(probes), desc="probes", show=progress)
    for spec in plan.specs:
        t0 = time.perf_counter()
        feats = target_features(spec, tgt, progress)
        t_feat += time.perf_counter() - t0
        new, p = probe_rows(plan, spec, feats, code, bar)
        preds.update({len(rows) + i: v for i, v in p.items()})
        rows += new
        val_y, classes = feats.val_y, feats.classes
    bar.close()
    t_probe = time.perf_counter() - t_start - t_feat
    if "fine-tune" in plan.protocols:
        for spec in plan.specs:
            rows += _finetune_rows(plan, spec, code, progress)
    runs = pd.DataFrame(rows)
    runs["row"] = range(len(runs))
    runs = runs[list(COLUMNS)]
    csv = out / "runs.csv"
    fileio.atomic_write_bytes(csv, runs.to_csv(index=False).encode())
    buf = io.BytesIO()
    np.savez_compressed(buf, labels=val_y, classes=np.asarray(classes),
                        **{f"row{i}": v for i, v in preds.items()})
    fileio.atomic_write_bytes(out / compare_stats.PREDICTIONS, buf.getvalue())
    summary, comparisons = compare_stats.write_report_tables(out, plan.metric, plan.alpha)
    seconds = {"features": t_feat, "probes": t_probe,
               "total before render": time.perf_counter() - t_start, "estimate": est["total"]}
    html = None
    if plan.render:
        t0 = time.perf_counter()
        html = render_report(csv, plan.metric, plan.alpha, progress=progress)
        seconds["render"] = time.perf_counter() - t0
    fileio.atomic_write_json(out / "compare_record.json", {
        "target": str(plan.target), "profile": plan.profile.name, "backbones": plan.backbones,
        "label_fractions": list(plan.label_fractions), "seeds": list(plan.seeds),
        "protocols": list(plan.protocols), "knn_k": plan.knn_k, "metric": plan.metric,
        "alpha": plan.alpha, "options": {k: str(v) for k, v in plan.options.items()},
        "seconds": seconds, **provenance.environment()})
    echo(f"done in {seconds['total before render']:.0f} s (features {t_feat:.0f} s, probes "
         f"{t_probe:.0f} s)" + (f", report rendered in {seconds['render']:.0f} s" if html else "")
         + f"; runs: {csv}" + (f"; report: {html}" if html else ""))
    return CompareResult(runs, summary, comparisons, csv, html, seconds)


REPORT_NOTEBOOK = paths.NOTEBOOKS / "compare_report.ipynb"


def render_report(csv, metric: str = "top1", alpha: float = 0.05, progress: bool = False) -> Path:
    """Execute ``notebooks/compare_report.ipynb`` on a comparison's ``runs.csv`` with papermill
    and render it without its code cells (``nbconvert --no-input``); returns the HTML's path."""
    import nbconvert
    import nbformat
    import papermill

    csv = Path(csv).resolve()
    out = csv.parent / "compare_report.ipynb"
    tmp = out.with_name(f".{out.name}.{os.getpid()}.running.ipynb")
    papermill.execute_notebook(str(REPORT_NOTEBOOK), str(tmp),
                               parameters={"runs_csv": str(csv), "metric": metric,
                                           "alpha": alpha},
                               cwd=str(paths.REPOSITORY), progress_bar=progress,
                               kernel_name="python3")
    os.replace(tmp, out)
    body, _ = nbconvert.HTMLExporter(exclude_input=True).from_notebook_node(
        nbformat.read(str(out), as_version=4))
    return fileio.atomic_write_bytes(out.with_suffix(".html"), body.encode())

