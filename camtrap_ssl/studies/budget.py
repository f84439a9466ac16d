"""What a book build will cost, said before it starts: the runs it trains and a time on this machine.

:func:`book_plan` lists, page by page in the order the book runs them, every fine-tuning run the
pages ask for, deduplicated by run identity (Study 2 reuses Study 1's supervised runs; RQ1's
``syn_serengeti_d4`` / 100 % labels / full-budget / whole-frame probe is one probe shared by its
four probed axes; Studies 3 and 4 analyse Study 2's runs), with its image-steps, the RQ1 page's
linear probes, and
each page's other work (world generation, analyses, kernel start) as measured constants. Nothing
is pretrained, generated or trained to make it: the specs are built as the pages build them
(:func:`~camtrap_ssl.experiments.spec.grid_specs` over the notebooks' own default parameters) and
the image counts come from the profile's sizes and ``data.embedded.VAL_FRACTION``.

:func:`calibrate` times a few fine-tuning steps of the profile's network here and now (the layout
and precision :func:`~camtrap_ssl.train.finetune.finetune` uses), :func:`estimate` turns a plan
into seconds and :func:`print_estimate` prints the short table ``build_book`` shows first.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from camtrap_ssl.core.profiles import get_profile
from camtrap_ssl.data.embedded import FAMILY_TARGETS, VAL_FRACTION
from camtrap_ssl.data.embedded import TARGETS as EMBEDDED
from camtrap_ssl.data.synthetic import SIMILAR_CLASSES
from camtrap_ssl.experiments.backbones import (
    embedded_name,
    is_checkpoint_file,
    is_pretrained,
    parse_embedded,
)
from camtrap_ssl.experiments.probing import probe_path
from camtrap_ssl.experiments.spec import RunSpec, grid_specs
from camtrap_ssl.models import create_model
from camtrap_ssl.models.utils import autocast, resolve_precision
from camtrap_ssl.studies.params import SEEDED_STUDIES, STUDIES, notebook_parameters, replicates_for
from camtrap_ssl.studies.rq1 import CAMTRAP_TARGET
from camtrap_ssl.train import rundir
from camtrap_ssl.train.finetune import memory_format

# The pages' work that is not priced by the step calibration, in seconds, per profile and page:
# measured, not calibrated (world generation and decoding before the workers start, galleries,
# attribution, plots, a kernel's start, and what a run costs beyond its image-steps: spawning,
# checkpoints, predictions). Each is a page's time in the fresh-clone fp32 build below less what
# the cost model priced for that page's runs and probes at that build's own calibration (1.74 ms
# per training image, 0.42 ms per evaluated image, two one-thread workers), so that the printed
# estimate adds up to the build on that machine. Name -> (profile, page, seconds, where measured).
_FP32_BUILD = ("book/speed.md, 'Whole commands': `make book PRECISION=fp32` from a fresh clone, "
               "2026-12-06, code d27ede9, 2 idle AMD EPYC cores, fp32, fresh cache")
PAGE_CONSTANTS = {
    "worlds_gallery": ("demo", "worlds", 31.0,
                       _FP32_BUILD + ": the world gallery page, 31 s (it draws the CIFAR, "
                       "Serengeti and ENA24 stand-ins and a sample of the source world)"),
    "study1_overhead": ("demo", "1", 37.0,
                        _FP32_BUILD + ": Study 1's 116 s less the 79 s priced for its 8 runs: "
                        "kernel start, the two targets' worlds decoded, spawning, tables, plots"),
    "study2_overhead": ("demo", "2", 29.0,
                        _FP32_BUILD + ": Study 2's 187 s less the 158 s priced for its 16 runs"),
    "rq1_overhead": ("demo", "rq1", 78.0,
                     _FP32_BUILD + ": the RQ1 page's 197 s less the 99 s priced for its 22 runs "
                     "and the 20 s for its probes' features: the two family worlds drawn side by "
                     "side, the probes' logistic regressions, the gallery, tables and figures"),
    "study3_analyses": ("demo", "3", 22.0, _FP32_BUILD + ": Study 3, 22 s (its runs reused)"),
    "study3_appendix": ("demo", "3-appendix", 8.0, _FP32_BUILD + ": Study 3's appendix, 8 s"),
    "study4_analyses": ("demo", "4", 102.0, _FP32_BUILD + ": Study 4, 102 s (its runs reused, "
                        "its crop-trained pair off)"),
    "compare_page": ("demo", "compare", 24.0, _FP32_BUILD + ": the own-data comparison page, "
                     "24 s (three backbones' features and 54 probe fits)"),
}



# -- sizes ------------------------------------------------------------------------------------------
def target_sizes(target: str, profile) -> tuple[int, int] | None:
    """(training, validation) images of an embedded target at ``profile``, from the profile's sizes
    (the camera-trap stand-ins split by location, about ``VAL_FRACTION`` of the frames in
    validation, brought up to ``profile.validation_frames(target)`` where the profile asks for
    more, as :func:`camtrap_ssl.data.embedded.load_target` does); ``None`` for a target whose
    size is only known by reading it (real data)."""
    p = get_profile(profile)
    n = {"syn_serengeti": p.serengeti_images, "syn_ena24": p.ena24_images,
         **{t: p.family_images for t in FAMILY_TARGETS}}.get(target)
    if target == "syn_cifar":
        return p.similar_per_class * len(SIMILAR_CLASSES), p.similar_test_per_class * len(SIMILAR_CLASSES)
    if not n:
        return None
    n_val = int(round(VAL_FRACTION * n))
    return n - n_val, max(n_val, p.validation_frames(target) or 0)


def epoch_samples(n_train: int, label_fraction: float) -> int:
    """Samples in one epoch of a run on ``label_fraction`` of ``n_train`` labels: the kept images
    repeated to about the whole set's size (``data.datasets.with_label_fraction``: every share gets
    the same steps), counted here with the stratified draw's size approximated by ``ceil(f n)``."""
    if label_fraction >= 1:
        return int(n_train)
    kept = int(np.ceil(label_fraction * n_train))
    return kept * max(1, round(n_train / kept))


# -- the specs each page asks for ---------------------------------------------------------------------
def _defaults(page: str, profile, seeds, runs_root) -> dict:
    p = notebook_parameters(page)
    p.update(profile=profile, runs_root=runs_root)
    if page in SEEDED_STUDIES:
        p["seeds"] = list(seeds)
    if "replicates" in p:
        p["replicates"] = replicates_for(profile, p["replicates"])
    return p


def _rq1(p: dict) -> tuple[list[RunSpec], list[RunSpec]]:
    """(fine-tuning specs, probe specs) of the RQ1 page, built as ``studies.rq1``'s
    distance/label/domain/budget/view functions build them (``tests/test_budget.py`` checks that):
    the distance axis fine-tunes, with the power design's replicates; the other four probe, over
    the book's seeds."""
    common = dict(profile=p["profile"], runs_root=p["runs_root"], epochs=p["epochs"],
                  seeded_pretraining=p["seeded_pretraining"], **p["run_options"])
    seeds, sl, ssl = p["seeds"], p["sl_backbone"], p["ssl_backbones"]
    runs = grid_specs([sl, *ssl], [FAMILY_TARGETS[d] for d in p["distances"]], seeds,
                      replicates=p["replicates"], **common)  # the key comparisons' replicates
    probes = []
    for f in p["label_fractions"]:
        probes += grid_specs([sl, *ssl], [p["label_target"]], seeds, label_fraction=f, **common)
    domain = [sl] + [b for m in p["in_domain"] for b in (m, embedded_name(m, "camtrap"))]
    probes += grid_specs(domain, [CAMTRAP_TARGET], seeds, **common)
    budget = [embedded_name(m, budget=b) for m in ssl for b in p["pretraining_budgets"]]
    probes += grid_specs([sl] + budget, [CAMTRAP_TARGET], seeds, **common)
    for view in p["views"]:
        probes += grid_specs([sl, *ssl], [CAMTRAP_TARGET], seeds, view=view, **common)
    return runs, probes


def _pair(p: dict) -> list[RunSpec]:
    """The runs Studies 3 and 4 analyse (``comparison.model_pair`` of each pooled seed: only the
    seeds scored on the first seed's validation images, ``comparison.seeds_sharing_validation``),
    and Study 4's pair fine-tuned on the animals' boxes (``crop_view``, where the target has masks:
    the embedded camera-trap worlds; the first seed only)."""
    def spec(b, s, **extra):
        seeded = {"pretrain_seed": s} if b in p["seeded_pretraining"] else {}
        return RunSpec(b, p["target"], p["profile"], s, epochs=p["epochs"],
                       runs_root=p["runs_root"], **{**p["run_options"], **seeded, **extra})
    first = spec(p["sl_backbone"], p["seeds"][0]).data_seed
    seeds = [s for s in p["seeds"] if spec(p["sl_backbone"], s).data_seed == first]
    crop = p.get("crop_view") and p["target"] in EMBEDDED and p["target"] != "syn_cifar"
    pairs = [spec(b, s) for s in seeds for b in (p["ssl_backbone"], p["sl_backbone"])]
    # Study 4 fine-tunes one pair on the boxes: the first seed's (crop_seeds in its notebook)
    return pairs + ([spec(b, seeds[0], view="box") for b in (p["ssl_backbone"], p["sl_backbone"])]
                    if crop else [])


def page_specs(page: str, profile, seeds, runs_root=None) -> tuple[list[RunSpec], list[RunSpec]]:
    """(fine-tuning specs, linear-probe specs) a book page asks for, with the notebook's default
    parameters and the ``profile``, ``seeds`` and ``runs_root`` the book passes it."""
    p = _defaults(page, profile, seeds, runs_root)
    if page in ("1", "2"):
        return grid_specs(p["backbones"], p["targets"], p["seeds"], profile=profile,
                          epochs=p["epochs"], runs_root=runs_root,
                          convergence_tolerance=p["convergence_tolerance"],
                          seeded_pretraining=p["seeded_pretraining"], replicates=p["replicates"],
                          **p["run_options"]), []
    if page == "rq1":
        return _rq1(p)
    if page in ("3", "4"):
        return _pair(p), []
    return [], []  # the worlds gallery and Study 3's appendix train nothing


def _weights_known(spec: RunSpec) -> bool:
    """Whether the spec's identity can be computed without pretraining (its checkpoint exists)."""
    if is_checkpoint_file(spec.backbone):
        return True
    if parse_embedded(spec.backbone) is None:
        return True  # a zoo name: its identity is its published URL and checksum
    return is_pretrained(spec.backbone, spec.profile, spec.pretrain_seed)


def run_key(spec: RunSpec) -> tuple[str, str, Path | None]:
    """``(kind, key, run directory)``: the run directory where it can be computed without
    pretraining (``kind`` ``run_dir``), else ``(backbone, target, seed, label_fraction, epochs,
    view, pretrain_seed)``
    (``kind`` ``fallback``: the backbone's checkpoint is missing, or a real dataset is not on
    disk, so the identity hash cannot be read; within one build every page passes the same other
    fields, so that key separates the same runs)."""
    if _weights_known(spec):
        try:
            rd = spec.run_dir()
            return "run_dir", str(rd), rd
        except FileNotFoundError:  # a real dataset not on disk
            pass
    key = (spec.backbone, spec.target, spec.seed, spec.label_fraction, spec.config().epochs,
           spec.view, spec.pretrain_seed)
    return "fallback", repr(key), None


# -- the plan -----------------------------------------------------------------------------------------
PLAN_COLUMNS = ["page", "kind", "backbone", "target", "view", "seed", "label_fraction", "epochs",
                "n_train", "n_val", "image_steps", "eval_images", "key_kind", "key", "finished",
                "shared_with", "seconds", "constant", "measured"]


def book_plan(profile, seeds=None, runs_root=None, pages=tuple(STUDIES)) -> pd.DataFrame:
    """One row per distinct fine-tuning run (``kind`` ``finetune``), per distinct linear probe
    (``probe``) and per measured constant (``other``), each under the first page that asks for it
    (``shared_with``: the later pages that reuse it).

    A ``finetune`` row trains ``image_steps`` = epochs x training images (a share of the labels is
    repeated to the same size, :func:`epoch_samples`) and evaluates ``eval_images`` = (epochs - 1)
    x the profile's monitor subset + the validation images (forward only: the subset after each
    epoch, the whole split after the last); a ``probe`` row extracts features of the target's training and validation images once per
    backbone, pretraining seed and view (the probing layer caches them) and fits a logistic regression (not counted). ``finished``: the
    run directory (or probe file) is already complete, so the build reuses it. ``seeds``: the
    profile's ``finetune_seeds`` by default, as ``run_studies`` passes them.
    """
    profile = get_profile(profile)
    seeds = list(profile.finetune_seeds if seeds is None else seeds)
    rows, seen, featured = [], {}, set()
    for page in pages:
        runs, probes = page_specs(page, profile, seeds, runs_root)
        for kind, specs in (("finetune", runs), ("probe", probes)):
            for spec in specs:
                key_kind, key, rd = run_key(spec)
                if kind == "probe":
                    key = f"probe {key}"
                if key in seen:
                    first = rows[seen[key]]
                    if page != first["page"] and page not in first["shared_with"]:
                        first["shared_with"].append(page)
                    continue
                seen[key] = len(rows)
                sizes = target_sizes(spec.target, profile)
                n_train, n_val = sizes if sizes else (np.nan, np.nan)
                epochs = spec.config().epochs
                if kind == "finetune":
                    labelled = epoch_samples(n_train, spec.label_fraction) if sizes else np.nan
                    # the monitor subset after every epoch but the last, the whole split after it
                    monitor = min(n_val, profile.monitor_images or n_val) if sizes else np.nan
                    steps, evals = epochs * labelled, (epochs - 1) * monitor + n_val
                    finished = rd is not None and rundir.RunDir(rd).is_complete
                else:
                    feat = (spec.backbone, spec.pretrain_seed, spec.target, spec.view)
                    steps, evals = 0, 0 if feat in featured else n_train + n_val
                    featured.add(feat)
                    finished = rd is not None and probe_path(spec).is_file()
                rows.append({"page": page, "kind": kind, "backbone": spec.backbone,
                             "target": spec.target, "view": spec.view, "seed": spec.seed,
                             "label_fraction": spec.label_fraction, "epochs": epochs,
                             "n_train": n_train, "n_val": n_val, "image_steps": steps,
                             "eval_images": evals, "key_kind": key_kind, "key": key,
                             "finished": bool(finished), "shared_with": [],
                             "seconds": 0.0, "constant": "", "measured": ""})
        for name, (prof, where, seconds, measured) in PAGE_CONSTANTS.items():
            if where == page and prof == profile.name:
                rows.append({"page": page, "kind": "other", "key_kind": "constant",
                             "key": name, "finished": False, "shared_with": [],
                             "image_steps": 0, "eval_images": 0, "seconds": seconds,
                             "constant": name, "measured": measured})
    plan = pd.DataFrame(rows, columns=PLAN_COLUMNS)
    plan["shared_with"] = [",".join(s) for s in plan.shared_with]
    plan.attrs.update(profile=profile.name, seeds=seeds,
                      fallback_keys=int((plan.key_kind == "fallback").sum()))
    return plan


# -- calibration --------------------------------------------------------------------------------------
def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name from ``/proc/cpuinfo`` ("unknown CPU" where there is none)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def _median_step(fn, steps: int) -> tuple[float, float]:
    """(median wall, median process CPU) seconds of ``fn()`` over ``steps`` calls after one
    warm-up call (it pays for allocation). The median, not the fastest: the build will run at
    this machine's load too."""
    fn()
    wall, cpu = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def calibrate(profile, precision: str = "auto", steps: int = 9, num_classes: int = 10,
              workers: int = 1) -> dict:
    """Seconds per image of the profile's fine-tuning step (forward, backward, Adam step) and of
    its evaluation (forward only), timed here and now on the CPU with the layout and precision
    ``finetune`` uses: a batch of ``profile.batch_size`` images at ``profile.input_size``.

    Returns ``train_seconds_per_image`` and ``forward_seconds_per_image`` (wall clock; the
    ``cpu_`` ones: process CPU time, which a loaded machine does not inflate), the CPU's model
    name, the resolved ``precision``, torch's threads and the load average when measured.
    ``workers`` > 1: the runs train in that many one-thread processes side by side
    (``studies.report.collect``), so the step is timed on one thread and divided by ``workers``.
    The median of ``steps`` = 9 calls (about 3 s for the demo's step at fp32 on one thread): the
    median of 3 once read 3.39 ms per image where the same freshly installed machine measured
    1.76-1.86 in three later calibrations and its build ran at that speed.
    """
    p = get_profile(profile)
    if workers > 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            one = calibrate(profile, precision, steps, num_classes)
        finally:
            torch.set_num_threads(threads)
        return {**one, "workers": workers, "threads": 1,
                **{k: one[k] / workers for k in one if k.endswith("seconds_per_image")}}
    device = torch.device("cpu")
    prec = resolve_precision(precision, device)
    torch.manual_seed(0)
    model = create_model(p.arch, num_classes=num_classes)
    layout = memory_format(model, device)
    model = model.to(memory_format=layout)
    opt = torch.optim.Adam(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    x = torch.rand(p.batch_size, 3, p.input_size, p.input_size).contiguous(memory_format=layout)
    y = torch.randint(0, num_classes, (p.batch_size,))

    def train_step():
        model.train()
        with autocast(device, prec):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def forward():
        model.eval()
        with torch.no_grad(), autocast(device, prec):
            model(x)

    t0 = time.perf_counter()
    train_wall, train_cpu = _median_step(train_step, steps)
    fwd_wall, fwd_cpu = _median_step(forward, steps)
    n = p.batch_size
    return {"cpu": cpu_model(), "device": "cpu", "precision": prec, "threads": torch.get_num_threads(),
            "arch": p.arch, "input_size": p.input_size, "batch_size": n, "profile": p.name,
            "train_seconds_per_image": train_wall / n, "forward_seconds_per_image": fwd_wall / n,
            "cpu_train_seconds_per_image": train_cpu / n, "cpu_forward_seconds_per_image": fwd_cpu / n,
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "calibration_seconds": time.perf_counter() - t0}


def seconds_per_train_image(profile, precision: str = "auto") -> float:
    """One fine-tuning step of the profile's network, timed here and now (so an estimate reflects
    this machine's load), per image: :func:`calibrate`'s ``train_seconds_per_image``."""
    return calibrate(profile, precision)["train_seconds_per_image"]


# -- the estimate ---------------------------------------------------------------------------------------
def estimate(plan: pd.DataFrame, calibration: dict) -> dict:
    """Seconds the plan's unfinished work takes at the calibration's speed: training image-steps
    times ``train_seconds_per_image`` plus evaluation and probe-feature images times
    ``forward_seconds_per_image`` (``train_seconds``: linear in the calibration), plus the pages'
    measured constants (``other_seconds``: not scaled). Per page in ``pages``."""
    todo = plan[~plan.finished.astype(bool)]
    train = (todo.image_steps.fillna(0) * calibration["train_seconds_per_image"]
             + todo.eval_images.fillna(0) * calibration["forward_seconds_per_image"])
    other = todo.seconds.fillna(0).where(todo.kind == "other", 0.0)
    per_page = {}
    for page in dict.fromkeys(plan.page):
        m = todo.page == page
        per_page[page] = {"runs": int(((todo.kind == "finetune") & m).sum()),
                          "probes": int(((todo.kind == "probe") & m).sum()),
                          "image_steps": int(todo.image_steps[m].fillna(0).sum()),
                          "train_seconds": float(train[m].sum()),
                          "other_seconds": float(other[m].sum()),
                          "seconds": float(train[m].sum() + other[m].sum())}
    runs = plan[plan.kind == "finetune"]
    return {"seconds": float(train.sum() + other.sum()), "train_seconds": float(train.sum()),
            "other_seconds": float(other.sum()), "pages": per_page,
            "runs": int((todo.kind == "finetune").sum()),
            "finished_runs": int(runs.finished.sum()),
            "probes": int((todo.kind == "probe").sum()),
            "image_steps": int(todo.image_steps.fillna(0).sum()),
            "eval_images": int(todo.eval_images.fillna(0).sum()),
            "unknown_sizes": int(runs.n_train.isna().sum()),
            "cpu": calibration.get("cpu"), "precision": calibration.get("precision")}


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}"


def print_estimate(plan: pd.DataFrame, calibration: dict, file=None) -> dict:
    """Print the build's plan and estimated time, one line and a short table per page; return
    :func:`estimate`'s dict."""
    file = file or sys.stdout
    est = estimate(plan, calibration)
    load = calibration.get("load_average")
    reused = f", reusing {est['finished_runs']} finished" if est["finished_runs"] else ""
    print(f"[book] this build will train {est['runs']} runs ({est['image_steps']:,} image-steps, "
          f"{est['eval_images']:,} evaluation images) and {est['probes']} linear probes{reused}: "
          f"about {est['seconds'] / 60:.0f} min on this machine ({calibration['cpu']}, "
          f"{calibration['device'].upper()}, {calibration['precision']}, "
          + (f"{calibration['workers']} one-thread workers" if calibration.get("workers", 1) > 1
             else f"{calibration['threads']} threads")
          + (f", load {load:.1f}" if load is not None else "")
          + f"; {1e3 * calibration['train_seconds_per_image']:.2f} ms per training image, "
          f"{1e3 * calibration['forward_seconds_per_image']:.2f} ms per evaluated image)",
          file=file)
    print(f"  {'page':<11s}{'runs':>6s}{'probes':>8s}{'image-steps':>13s}{'train min':>11s}"
          f"{'other min':>11s}{'total min':>11s}", file=file)
    for page, e in est["pages"].items():
        print(f"  {page:<11s}{e['runs']:>6d}{e['probes']:>8d}{e['image_steps']:>13,d}"
              f"{_minutes(e['train_seconds']):>11s}{_minutes(e['other_seconds']):>11s}"
              f"{_minutes(e['seconds']):>11s}", file=file)
    notes = []
    if not (plan.kind == "other").any():
        notes.append(f"the pages' other work is not measured at profile {plan.attrs.get('profile')!r}: "
                     "not counted")
    else:
        notes.append("other: measured constants (camtrap_ssl.studies.budget.PAGE_CONSTANTS), not "
                     "calibrated")
    if plan.attrs.get("fallback_keys"):
        notes.append(f"{plan.attrs['fallback_keys']} runs of backbones not pretrained yet are told "
                     "apart by (backbone, target, seed, labels, epochs); their pretraining is not "
                     "counted")
    if est["unknown_sizes"]:
        notes.append(f"{est['unknown_sizes']} runs on data of unknown size are not counted")
    for n in notes:
        print(f"  ({n})", file=file)
    file.flush()
    return est
