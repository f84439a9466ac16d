"""The SSL-against-SL pair that Studies 3 and 4 examine, and the images they look at.

The study compared one model of each paradigm with the same architecture (Barlow Twins R50 and
supervised R50), both fine-tuned on Serengeti. Here the pair is any two backbones fine-tuned on one
target; the fine-tuning runs are the same run directories Studies 1 and 2 wrote (or are trained
now), so the models analysed are exactly the models tabulated.
"""
from __future__ import annotations

import contextlib
import io
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from camtrap_ssl.analysis import attribution as A
from camtrap_ssl.core import fileio
from camtrap_ssl.core.profiles import DEFAULT_PROFILE, get_profile
from camtrap_ssl.core.progress import progress_bar
from camtrap_ssl.data.images import load_image_folder
from camtrap_ssl.experiments.backbones import (
    PRETRAIN_SEED,
    SHIPPED,
    create_backbone,
    describe_backbone,
    is_pretrained,
)
from camtrap_ssl.experiments.finetuning import finetune_run, load_spec_target
from camtrap_ssl.experiments.spec import RunSpec
from camtrap_ssl.models.weights import load_checkpoint
from camtrap_ssl.pretrain.methods import METHODS
from camtrap_ssl.studies.budget import seconds_per_train_image as _seconds_per_train_image
from camtrap_ssl.train import rundir
from camtrap_ssl.train.augment import center_crop, default_crop


@dataclass
class Pair:
    models: dict  # display name -> fine-tuned classifier (eval mode), SSL first
    per_class: dict  # display name -> {class: {precision, recall, support}}
    classes: list
    run_dirs: dict


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


TARGET_SIZE = {"syn_serengeti": "serengeti_images", "syn_ena24": "ena24_images"}


def pair_plan(backbones: dict, dataset: str, profile, seed: int, runs_root=None,
              runs: dict | None = None, epochs: int | None = None) -> list[str]:
    """What :func:`model_pair` will compute for ``backbones`` (paradigm -> name), one line each,
    with a rough duration: a finished run is reused; a missing one is fine-tuned (epochs x
    images x the time of one training step measured now), after pretraining an embedded backbone
    that is neither shipped nor cached (estimated from the shipped checkpoint's recorded time)."""
    profile = get_profile(profile)
    runs = runs or {}
    lines, per_image = [], None
    for side, backbone in backbones.items():
        if runs.get(side):
            lines.append(f"{side}: the finished run {rundir.finished_run(runs[side]).path}")
            continue
        spec = RunSpec(backbone, dataset, profile, seed, epochs=epochs, runs_root=runs_root)
        if backbone in METHODS and not is_pretrained(backbone, profile, PRETRAIN_SEED):
            # its run directory is named by the weights' hash: known once it is pretrained
            shipped = SHIPPED / f"demo_{backbone}.pt"
            est = (load_checkpoint(shipped)["record"]["wall_seconds"]
                   if profile.name == "demo" and shipped.exists() else None)
            lines.append(f"{side}: pretrain {backbone} ({profile.name}, seed {PRETRAIN_SEED}) first"
                         + (f", about {_minutes(est)} on idle cores" if est else ""))
            rd = "its run directory"
        else:
            rd = spec.run_dir()
            if rundir.RunDir(rd).is_complete:
                lines.append(f"{side}: reuse the finished run {rd}")
                continue
        per_image = per_image or _seconds_per_train_image(profile)
        n_epochs = spec.config().epochs
        # about three quarters of the frames train; validation (forward only) adds ~10 %
        n = int(0.75 * (getattr(profile, TARGET_SIZE.get(dataset, ""), None)
                        or 10 * profile.similar_per_class))
        lines.append(f"{side}: fine-tune {backbone} on {dataset} ({n_epochs} epochs x ~{n} images), "
                     f"about {_minutes(1.1 * n_epochs * n * per_image)} at this machine's current load"
                     f", into {rd} (the {dataset} world is generated first if it is not cached)")
    return lines


def model_pair(ssl_backbone: str, sl_backbone: str, dataset: str, profile=DEFAULT_PROFILE, seed: int = 0,
               runs_root=None, progress: bool = False, ssl_run=None, sl_run=None,
               epochs: int | None = None, seeded_pretraining=(), **run_options) -> Pair:
    """Fine-tuned SSL and SL models on ``dataset`` with their final per-class metrics.

    ``epochs``: the runs' budget (None: the profile's), as Studies 1 and 2 were given it, so that
    the pair is the pair those studies tabulated rather than a fresh full-budget run;
    ``run_options``: any other :class:`RunSpec` field of both runs, passed on unchanged;
    ``seeded_pretraining``: the backbones whose run of ``seed`` starts from pretraining seed
    ``seed`` (as :func:`~camtrap_ssl.experiments.spec.grid_specs` builds Studies 1 and 2's runs).

    ``ssl_run`` / ``sl_run``: a finished run directory (or its ``checkpoint.pt``) to use instead
    of the run of ``(backbone, dataset, profile, seed)``. With ``progress`` the plan
    (:func:`pair_plan`) is printed first and each stage shows a progress bar.
    """
    profile = get_profile(profile)
    runs = {"SSL": ssl_run, "SL": sl_run}
    if progress:
        print("camtrap-ssl explain will:\n  " + "\n  ".join(pair_plan(
            {"SSL": ssl_backbone, "SL": sl_backbone}, dataset, profile, seed, runs_root, runs,
            epochs)),
            flush=True)
    models, per_class, run_dirs = {}, {}, {}
    classes = None
    for side, backbone in (("SSL", ssl_backbone), ("SL", sl_backbone)):
        if runs[side]:
            rd = rundir.finished_run(runs[side]).path
        else:
            spec = RunSpec(backbone, dataset, profile, seed, epochs=epochs, runs_root=runs_root,
                           **({"pretrain_seed": seed} if backbone in seeded_pretraining else {}),
                           **run_options)
            _, rd = finetune_run(spec, progress=progress)
        model = create_backbone(rd)  # the fine-tuned classifier of the run
        backbone = model.backbone_name
        summary = rundir.RunDir(rd).summary()
        run_classes = model.class_names
        if classes is not None and run_classes != classes:
            raise ValueError(f"the two runs have different classes ({classes} and {run_classes}): "
                             "both models must be fine-tuned on the same target")
        classes = run_classes
        name = f"{describe_backbone(backbone)['paradigm']} ({backbone})"
        models[name] = model
        per_class[name] = summary["per_class"]
        run_dirs[name] = str(rd)
    return Pair(models, per_class, classes, run_dirs)


def eval_view(x: torch.Tensor, profile) -> torch.Tensor:
    """Stored images as the fine-tuned models see them in evaluation: the profile's centre crop
    (224 of the 256 x 256 frames of the paper profile; the whole image in tiny/demo).

    Studies 3 and 4 transform and explain *this* view: the study's translations are pixels of a
    224-px input, and a model evaluated on 256-px frames would be analysed off its own pipeline.
    """
    profile = get_profile(profile)
    return center_crop(x, default_crop(x.shape[-1], profile.augmentation))


def _validation_of(dataset: str, profile, seed: int, run_options: dict):
    """The target the runs of ``seed`` were scored on (their data seed, strip and, for a target
    by path, data options), with masks where the target has them."""
    spec = RunSpec("supervised", dataset, profile, seed, **run_options)
    return load_spec_target(spec, progress=False, masks=True)


def seeds_sharing_validation(dataset: str, profile, seeds, **run_options) -> list[int]:
    """The seeds whose runs were scored on the same validation images as the first seed's: all of
    them on an embedded target (one world), only the first on a real dataset or a target by path,
    whose split is drawn with the run's seed (a later seed's pair may have trained on the first
    seed's validation images, so pooling it would score models on their training data)."""
    seeds = list(seeds)
    first = RunSpec("supervised", dataset, profile, seeds[0], **run_options).data_seed
    return [s for s in seeds if RunSpec("supervised", dataset, profile, s, **run_options).data_seed == first]


def seed_pairs(ssl_backbone: str, sl_backbone: str, target: str, profile, seeds, runs_root=None,
               epochs: int | None = None, seeded_pretraining=(), **run_options) -> dict:
    """``{seed: Pair}`` of every seed whose runs were scored on the first seed's validation
    images (:func:`seeds_sharing_validation`; a note says which seeds are left out and why): the
    pairs Studies 3 and 4 pool their measures over, an image under one seed's pair one unit of
    their intervals."""
    pooled = seeds_sharing_validation(target, profile, seeds, **run_options)
    if pooled != list(seeds):
        print(f"{target}: each seed draws its own validation split, so only seed {pooled} is "
              "analysed (a pair of another seed may have trained on these images)")
    return {s: model_pair(ssl_backbone, sl_backbone, target, profile, s, runs_root, epochs=epochs,
                          seeded_pretraining=seeded_pretraining, **run_options) for s in pooled}


def curves_path(runs_root, profile, target: str, ssl_backbone: str, sl_backbone: str, seeds) -> Path:
    """Where Study 3 writes its invariance curves and its appendix reads them: one name, built
    from the parameters both pages take (the seeds asked for, not those pooled)."""
    name = f"curves_{target}_{ssl_backbone}_{sl_backbone}_seeds{'-'.join(map(str, seeds))}.csv"
    return Path(runs_root) / get_profile(profile).name / "study3" / name


def images_of_classes(dataset: str, classes: list, n_per_class: int, profile=DEFAULT_PROFILE, seed: int = 0,
                      masks: bool = False, require_animal: bool = True, **run_options):
    """Up to ``n_per_class`` validation images of each class, in class order, in their
    evaluation view (:func:`eval_view`), from the validation split the runs of ``seed`` were
    scored on (``run_options``: the runs' other RunSpec fields, e.g. a target by path's options).

    Returns ``(images [0,1] N x 3 x H x W, labels, masks or None)``. With ``require_animal`` only
    frames whose animal is visible (non-empty mask) are taken where masks exist, so that
    "probability of the true class" is about an animal the model can see.
    """
    target = _validation_of(dataset, profile, seed, run_options)
    val = target.val
    labels_all = np.asarray([int(val[i][1]) for i in range(len(val))]) if not hasattr(val, "labels") \
        else np.asarray(val.labels)
    rng = np.random.default_rng(seed)
    picked = []
    for cls in classes:
        if cls not in target.classes:
            raise ValueError(f"class {cls!r} is not a class of {dataset}; classes: {target.classes}")
        label = target.classes.index(cls)
        idx = np.flatnonzero(labels_all == label)
        if require_animal and getattr(val, "masks", None) is not None:
            idx = idx[val.masks[idx].flatten(1).sum(1).numpy() > 0]
        picked.extend(rng.permutation(idx)[:n_per_class].tolist())
    if not classes:
        raise ValueError("classes is empty: select at least one class (see "
                         "ClassSelection.classes_or_fallback for weak models)")
    if not picked:
        raise ValueError(f"no validation image of {dataset} shows a visible animal of the classes "
                         f"{list(classes)}")
    x = eval_view(torch.stack([val[i][0] for i in picked]), profile)
    y = torch.as_tensor(labels_all[picked], dtype=torch.long)
    vm = getattr(val, "masks", None)
    m = eval_view(vm[torch.tensor(picked, dtype=torch.long)], profile) if masks and vm is not None else None
    return x, y, m


def animal_images(dataset: str, n: int, profile=DEFAULT_PROFILE, seed: int = 0, **run_options):
    """``n`` validation images with a visible animal, spread over classes, with masks and labels,
    in their evaluation view (:func:`eval_view`): ``(images, labels, masks, class names)``, from
    the validation split the runs of ``seed`` were scored on.

    Real data (the study's datasets, a user's own) carry no animal masks (LILA and Camtrap DP give
    boxes for some images, which are not masks): there every validation image counts, and
    ``masks`` is None.
    """
    target = _validation_of(dataset, profile, seed, run_options)
    val = target.val
    labels = np.asarray(val.labels)
    masks = getattr(val, "masks", None)
    candidates = (np.arange(len(labels)) if masks is None
                  else np.flatnonzero(masks.flatten(1).sum(1).numpy() > 0))
    rng = np.random.default_rng(seed)
    # round-robin over classes so a long tail does not fill the sample with one species
    by_class = {}
    for i in rng.permutation(candidates):
        by_class.setdefault(int(labels[i]), []).append(int(i))
    order = []
    while len(order) < n and any(by_class.values()):
        for c in sorted(by_class):
            if by_class[c] and len(order) < n:
                order.append(by_class[c].pop())
    x = eval_view(torch.stack([val[i][0] for i in order]), profile)
    y = torch.as_tensor(labels[order], dtype=torch.long)
    m = None if masks is None else eval_view(masks[torch.tensor(order, dtype=torch.long)], profile)
    return x, y, m, target.classes


@torch.no_grad()
def prediction_table(models: dict, variants: dict, labels: torch.Tensor) -> pd.DataFrame:
    """Accuracy and mean true-class probability of each model on each image variant."""
    rows = []
    for vname, x in variants.items():
        for mname, model in models.items():
            p = model.eval()(x).softmax(1)
            rows.append({"model": mname, "images": vname,
                         "accuracy": float((p.argmax(1) == labels).float().mean()),
                         "p_true": float(p[torch.arange(len(labels)), labels].mean())})
    return pd.DataFrame(rows).pivot(index="images", columns="model").round(3)


def explain_folder(pair: Pair, folder, out_dir, methods=("guided_backprop", "gradcam", "scorecam"),
                   size: int = 64, limit: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Saliency of both models on every JPEG of ``folder``: one PNG per image, and a prediction table.

    Images of any size and mode (multi-megapixel originals, small crops, night infrared greyscale)
    are squashed to ``size`` like the training images. Each PNG shows the image and, per model and
    method, the map for that model's predicted class (real photos carry no label to explain);
    a blank map is titled so, and counted in the table's ``blank_<method>`` columns. Written
    atomically; returns the table that is also saved as ``predictions.csv``, with the time spent
    in ``table.attrs`` (``images``, ``seconds``, ``seconds_per_image``; image loading excluded).
    """
    from matplotlib.figure import Figure

    bad = [m for m in methods if m not in A.METHODS]
    if bad:
        raise ValueError(f"methods {bad} unknown; allowed: {list(A.METHODS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images, files = load_image_folder(folder, size, limit=limit)
    rows = []
    t0 = time.perf_counter()
    for x, path in progress_bar(list(zip(images, files)), desc="explaining", unit="image",
                                show=progress):
        x = x[None]
        fig = Figure(figsize=(2.2 * (1 + len(methods)), 2.3 * len(pair.models)))
        axes = fig.subplots(len(pair.models), 1 + len(methods), squeeze=False)
        # fixed margins instead of tight_layout, axes off from the start: laying out tick
        # labels that are never shown was most of the time per image on the tiny profile
        fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.86, wspace=0.04, hspace=0.42)
        for ax in axes.flat:
            ax.set_axis_off()
        for r, (name, model) in enumerate(pair.models.items()):
            with torch.no_grad():
                p = model.eval()(x).softmax(1)[0]
            pred = int(p.argmax())
            rows.append({"image": Path(path).name, "model": name, "prediction": pair.classes[pred],
                         "probability": float(p[pred])})
            axes[r][0].imshow(x[0].permute(1, 2, 0).numpy())
            axes[r][0].set_title(f"{name}\n{pair.classes[pred]} ({float(p[pred]):.2f})", fontsize=7)
            for c, method in enumerate(methods, start=1):
                heat = A.normalize_map(A.attribute(model, x, pred, method))[0, 0]
                blank = bool(heat.max() <= 0)  # say so on the panel instead of an empty overlay
                A.overlay(x[0], heat, ax=axes[r][c], title=f"{method} (blank)" if blank else method)
                rows[-1][f"blank_{method}"] = blank
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        fileio.atomic_write_bytes(out_dir / f"{Path(path).stem}_saliency.png", buf.getvalue())
    seconds = time.perf_counter() - t0
    table = pd.DataFrame(rows)
    fileio.atomic_write_bytes(out_dir / "predictions.csv", table.to_csv(index=False).encode())
    table.attrs.update(images=len(files), seconds=seconds,
                       seconds_per_image=seconds / len(files) if len(files) else 0.0)
    return table


@contextlib.contextmanager
def warnings_as_notes(prefix: str = "note: "):
    """Catch the warnings raised inside and print each distinct message once, as a line of the
    page (stdout), without the file and line a warning names: a published page shows what was
    found (e.g. "guided_gradcam: 13 of 23 maps are blank (all zero)", counted in the tables as
    ``n_blank``), not a stderr block with a path of the machine that built it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for message in dict.fromkeys(str(w.message) for w in caught):
        print(prefix + message)
