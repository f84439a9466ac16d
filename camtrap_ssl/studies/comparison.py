"""The SSL-against-SL pair that Studies 3 and 4 examine, and the images they look at.

The study compared one model of each paradigm with the same architecture (Barlow Twins R50 and
supervised R50), both fine-tuned on Serengeti. Here the pair is any two backbones fine-tuned on one
target; the fine-tuning runs are the same run directories Studies 1 and 2 wrote (or are trained
now), so the models analysed are exactly the models tabulated.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from camtrap_ssl.analysis import attribution as A
from camtrap_ssl.core import fileio
from camtrap_ssl.core.profiles import get_profile
from camtrap_ssl.data.embedded import load_target
from camtrap_ssl.data.images import load_image_folder
from camtrap_ssl.data.paper import PAPER_TARGETS
from camtrap_ssl.data.targets import get_target
from camtrap_ssl.experiments.backbones import describe_backbone
from camtrap_ssl.experiments.finetuning import finetune_run, finetuned_model
from camtrap_ssl.train import rundir
from camtrap_ssl.train.augment import center_crop, default_crop


@dataclass
class Pair:
    models: dict  # display name -> fine-tuned classifier (eval mode), SSL first
    per_class: dict  # display name -> {class: {precision, recall, support}}
    classes: list
    run_dirs: dict


def model_pair(ssl_backbone: str, sl_backbone: str, dataset: str, profile="demo", seed: int = 0,
               runs_root=None, epochs: int | None = None) -> Pair:
    """Fine-tuned SSL and SL models on ``dataset`` with their final per-class metrics.

    ``epochs``: the runs' budget (None: the profile's), as Studies 1 and 2 were given it, so that
    the pair is the pair those studies tabulated rather than a fresh full-budget run.
    """
    profile = get_profile(profile)
    models, per_class, run_dirs = {}, {}, {}
    classes = None
    for backbone in (ssl_backbone, sl_backbone):
        name = f"{describe_backbone(backbone)['paradigm']} ({backbone})"
        summary, rd = finetune_run(backbone, dataset, profile, seed, runs_root, epochs=epochs,
                                   progress=False)
        models[name] = finetuned_model(backbone, dataset, profile, seed, runs_root, progress=False,
                                       epochs=epochs)
        per_class[name] = summary["per_class"]
        run_dirs[name] = str(rd)
        classes = rundir.RunDir(rd).params()["classes"]
    return Pair(models, per_class, classes, run_dirs)


def eval_view(x: torch.Tensor, profile) -> torch.Tensor:
    """Stored images as the fine-tuned models see them in evaluation: the profile's centre crop
    (224 of the 256 x 256 frames of the paper profile; the whole image in tiny/demo).

    Studies 3 and 4 transform and explain *this* view: the study's translations are pixels of a
    224-px input, and a model evaluated on 256-px frames would be analysed off its own pipeline.
    """
    profile = get_profile(profile)
    return center_crop(x, default_crop(x.shape[-1], profile.augmentation))


def images_of_classes(dataset: str, classes: list, n_per_class: int, profile="demo", seed: int = 0,
                      masks: bool = False, require_animal: bool = True):
    """Up to ``n_per_class`` validation images of each class, in class order, in their
    evaluation view (:func:`eval_view`).

    Returns ``(images [0,1] N x 3 x H x W, labels, masks or None)``. With ``require_animal`` only
    frames whose animal is visible (non-empty mask) are taken where masks exist, so that
    "probability of the true class" is about an animal the model can see.
    """
    target = get_target(dataset, profile, seed, masks=True)
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


def animal_images(dataset: str, n: int, profile="demo", seed: int = 0):
    """``n`` validation images with a visible animal, spread over classes, with masks and labels,
    in their evaluation view (:func:`eval_view`): ``(images, labels, masks, class names)``.

    The study's real datasets carry no animal masks (LILA gives boxes for some images, which are
    not masks): there every validation image counts, and ``masks`` is None.
    """
    if dataset in PAPER_TARGETS:
        target = get_target(dataset, profile, seed, progress=False)
        val = target.val
        labels = np.asarray(val.labels)
        candidates, masks = np.arange(len(labels)), None
    else:
        target = load_target(dataset, profile, seed, masks=True)
        val = target.val
        labels = val.labels.numpy()
        candidates = np.flatnonzero(val.masks.flatten(1).sum(1).numpy() > 0)
        masks = val.masks
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
    a blank map is titled so, and counted in the table's ``blank_<method>`` columns. Written atomically; returns the table that
    is also saved as ``predictions.csv``.
    """
    from pathlib import Path

    from matplotlib.figure import Figure
    from tqdm.auto import tqdm


    bad = [m for m in methods if m not in A.METHODS]
    if bad:
        raise ValueError(f"methods {bad} unknown; allowed: {list(A.METHODS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images, paths = load_image_folder(folder, size, limit=limit)
    rows = []
    for x, path in tqdm(list(zip(images, paths)), desc="explaining", disable=not progress):
        x = x[None]
        fig = Figure(figsize=(2.2 * (1 + len(methods)), 2.3 * len(pair.models)))
        axes = fig.subplots(len(pair.models), 1 + len(methods), squeeze=False)
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
        for ax in axes.flat:
            ax.axis("off")
        fig.tight_layout()
        import io
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        fileio.atomic_write_bytes(out_dir / f"{Path(path).stem}_saliency.png", buf.getvalue())
    table = pd.DataFrame(rows)
    fileio.atomic_write_bytes(out_dir / "predictions.csv", table.to_csv(index=False).encode())
    return table
