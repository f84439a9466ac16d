"""The studies' building blocks on one call each: targets, backbones, fine-tuned models.

A notebook asks for ``load_target("syn_serengeti", profile)`` or ``finetune_run("simclr",
"syn_serengeti", profile)`` and gets the same object whether the data were generated a second ago
or read from the cache, and whether the run was just trained or completed last week. Targets named
``syn_*`` are the embedded synthetic stand-ins (SPEC section 6); each names the study dataset it
stands in for, so tables can set our numbers beside the study's.

Backbones are named either by a pretraining method (``supervised``, ``simclr``, ``barlowtwins``,
``swav``, ``deepclusterv2``: the embedded backbones of the profile) or by a registry name of
:mod:`camtrap_ssl.models` (the paper-scale zoo).
"""
from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import runs
from .finetune import FinetuneConfig, finetune, load_finetuned
from .pretrain import FAMILY, METHODS, PARADIGM, PretrainConfig, load_pretrained, pretrain
from .profiles import Profile, get_profile

TARGETS = ("syn_serengeti", "syn_ena24", "syn_cifar")
STANDS_IN_FOR = {"syn_serengeti": "serengeti", "syn_ena24": "ena24", "syn_cifar": "cifar10"}
SMALL_TARGETS = {"syn_ena24", "ena24"}  # the ENA24 regime: more epochs (SPEC section 4)
SHIPPED = Path(__file__).resolve().parent / "checkpoints"


def cache_dir() -> Path:
    from .synthetic import default_cache_dir
    return Path(default_cache_dir())


# ---------------------------------------------------------------------------------------------
# targets

class ArrayDataset(torch.utils.data.Dataset):
    """uint8 N x 3 x H x W images (kept small in memory) -> float [0, 1] tensors, labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor | None = None):
        self.images, self.labels, self.masks = images, labels, masks

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i].float().div(255), self.labels[i]

    def get_batch(self, idx):
        """A whole batch in one indexing operation (the fine-tuning loop's fast path)."""
        return self.images[idx].float().div(255), self.labels[idx]


@dataclass
class Target:
    name: str
    train: ArrayDataset
    val: ArrayDataset
    classes: list
    identity: dict = field(default_factory=dict)

    @property
    def stands_in_for(self) -> str:
        return STANDS_IN_FOR.get(self.name, self.name)


def _to_uint8_nchw(x01: torch.Tensor) -> torch.Tensor:
    return (x01 * 255).round().clamp(0, 255).to(torch.uint8)


def _resize_uint8(images_nhwc: np.ndarray, size: int) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images_nhwc)).permute(0, 3, 1, 2).float() / 255
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return _to_uint8_nchw(x)


def get_target(name: str, profile: str | Profile = "demo", seed: int = 0, masks: bool = False):
    """Any fine-tuning target by name: an embedded ``syn_*`` one or a real dataset (paper_targets)."""
    from .paper_targets import PAPER_TARGETS, load_paper_target

    if name in PAPER_TARGETS:
        return load_paper_target(name, size=get_profile(profile).input_size, seed=seed)
    return load_target(name, profile, seed, masks=masks)


def load_target(name: str, profile: str | Profile = "demo", seed: int = 0, masks: bool = False) -> Target:
    """The named fine-tuning target at the profile's input size, generated on first use."""
    from . import cct, synthetic

    profile = get_profile(profile)
    if name not in TARGETS:
        raise ValueError(f"target={name!r}; allowed: {list(TARGETS)}")
    size = profile.input_size
    if name == "syn_cifar":
        world = synthetic.similar_world(profile, seed=seed)
        return Target(name,
                      ArrayDataset(_resize_uint8(world.images_train, size), torch.from_numpy(world.labels_train)),
                      ArrayDataset(_resize_uint8(world.images_val, size), torch.from_numpy(world.labels_val)),
                      list(world.classes), {"world": "similar", "profile": profile.name, "seed": seed})
    json_path = synthetic.camtrap_world(name.removeprefix("syn_"), profile, seed=seed)
    index = cct.load_cct(json_path)
    parts = cct.split(index, by="location", val_fraction=0.25, seed=seed)
    sets = []
    for ids in (parts.train, parts.val):
        ds = cct.CCTDataset(index, ids, size, return_mask=masks)
        items = [ds[i] for i in range(len(ds))]
        x = _to_uint8_nchw(torch.stack([it[0] for it in items]))
        y = torch.tensor([it[1] for it in items])
        m = torch.stack([it[2] for it in items]) if masks else None
        sets.append(ArrayDataset(x, y, m))
    return Target(name, sets[0], sets[1], list(index.class_names),
                  {"json": str(json_path), "json_sha256": index.json_sha256, "split": "location",
                   "profile": profile.name, "seed": seed})


# ---------------------------------------------------------------------------------------------
# backbones

def backbone_names() -> list[str]:
    """Embedded pretraining methods, then every registry name that has published weights."""
    from .models import get_entry, list_models

    return list(METHODS) + [n for n in list_models() if get_entry(n).weights is not None]


def is_checkpoint_file(name: str) -> bool:
    """A backbone can also be a pretraining checkpoint written by ``camtrap-ssl pretrain``."""
    return str(name).endswith(".pt") and Path(name).is_file()


def is_backbone(name: str) -> bool:
    return name in backbone_names() or is_checkpoint_file(name)


def describe_backbone(name: str) -> dict:
    """Paradigm (SL/SSL) and SSL family (instance/cluster) of a backbone name."""
    if is_checkpoint_file(name):
        rec = torch.load(name, map_location="cpu", weights_only=True)["record"]
        method = rec["config"]["method"]
        return {"backbone": name, "method": method, "paradigm": PARADIGM[method], "family": FAMILY[method]}
    if name in METHODS:
        return {"backbone": name, "method": name, "paradigm": PARADIGM[name], "family": FAMILY[name]}
    from .models import get_entry

    e = get_entry(name)
    return {"backbone": name, "method": e.method, "paradigm": e.paradigm, "family": e.family}


def backbone_checkpoint(method: str, profile: str | Profile = "demo", seed: int = 0,
                        retrain: bool = False, progress: bool = True) -> Path:
    """Path of an embedded backbone's checkpoint: the shipped one, or pretrained now and cached.

    The project ships the demo profile's five backbones (``camtrap_ssl/checkpoints``), produced by
    ``camtrap-ssl pretrain`` with their record inside; ``retrain=True`` pretrains from scratch
    instead (minutes per method on a CPU). Other profiles pretrain on first use.
    """
    profile = get_profile(profile)
    if method not in METHODS:
        raise ValueError(f"method={method!r}; allowed: {list(METHODS)}")
    shipped = SHIPPED / f"{profile.name}_{method}.pt"
    if shipped.exists() and not retrain and seed == 0:
        return shipped
    out = cache_dir() / "backbones" / f"{profile.name}_{method}_seed{seed}.pt"
    if out.exists() and not retrain:
        return out
    return pretrain_backbone(method, profile, seed, out, progress=progress)


def pretrain_backbone(method: str, profile: str | Profile, seed: int, out: str | Path,
                      epochs: int | None = None, max_seconds: float | None = None,
                      progress: bool = True) -> Path:
    """Pretrain one embedded backbone on the labelled source world (labels used by SL only)."""
    from . import synthetic

    profile = get_profile(profile)
    world = synthetic.source_world(profile, seed=seed)
    cfg = PretrainConfig(method=method, arch=profile.arch,
                         epochs=epochs or profile.pretrain_epochs[method],
                         batch_size=min(profile.pretrain_batch_size, len(world.images_train)),
                         seed=seed, input_size=profile.pretrain_size)
    identity = {"world": "source", "profile": profile.name, "seed": seed,
                "n_images": int(len(world.images_train)), "classes": list(world.classes)}
    return pretrain(cfg, world.images_train, world.labels_train, out, num_classes=len(world.classes),
                    progress=progress, data_identity=identity, max_seconds=max_seconds)


def probe_backbone(checkpoint: str | Path, profile: str | Profile, seed: int = 0) -> dict:
    """Linear and k-NN probes of a checkpoint on held-out source images, beside raw pixels and
    the same architecture at random initialization (the evidence that pretraining learned)."""
    from . import synthetic
    from .models import create_model
    from .probes import probe_table

    profile = get_profile(profile)
    world = synthetic.source_world(profile, seed=seed)
    trained = load_pretrained(checkpoint)
    torch.manual_seed(seed)
    random_init = create_model(trained.pretrained_record["config"]["arch"], num_classes=None)
    table = probe_table({"pretrained": trained, "random init": random_init},
                        world.tensors("train"), world.tensors("val"))
    return {row: {k: float(v) for k, v in vals.items()} for row, vals in table.iterrows()}


def probe_records(methods=METHODS, profile: str | Profile = "demo", seed: int = 0):
    """The probe table of the embedded backbones: one row per method plus the two baselines.

    ``margin over baselines`` is the smaller of the two probes' leads over the better of raw
    pixels and random initialization; ``learned`` says it is positive.

    Shipped checkpoints carry their probe scores in their record (measured when they were made);
    a checkpoint without them (a profile pretrained on first use) is probed now.
    """
    import pandas as pd

    rows = {}
    for method in methods:
        path = backbone_checkpoint(method, profile, seed, progress=False)
        rec = torch.load(path, map_location="cpu", weights_only=True)["record"]
        probes = rec.get("probes") or probe_backbone(path, profile, seed)
        rows.setdefault("raw pixels", probes["raw pixels"])
        rows.setdefault("random init", probes["random init"])
        rows[method] = {**probes["pretrained"], "epochs": rec["epochs_done"],
                        "pretrain minutes": round(rec["wall_seconds"] / 60, 1)}
    order = ["raw pixels", "random init", *methods]
    table = pd.DataFrame.from_dict(rows, orient="index").loc[order]
    # The evidence the book states must come from the numbers: a backbone learned if both of its
    # probes beat the better baseline, and by how much (in points of top-1) it did.
    baseline = table.loc[["raw pixels", "random init"], ["linear", "knn"]].max()
    margin = (table[["linear", "knn"]] - baseline).min(axis=1).loc[list(methods)]
    table["margin over baselines"] = margin
    table["learned"] = margin > 0
    return table.rename(columns={"linear": "linear probe", "knn": "k-NN probe"})


def pretrain_and_probe(method: str, profile: str | Profile, seed: int, out: str | Path,
                       epochs: int | None = None, max_seconds: float | None = None,
                       probe: bool = True) -> dict:
    """Pretrain, probe, and store the probe scores in the checkpoint's record; return the record."""
    out = pretrain_backbone(method, profile, seed, out, epochs=epochs, max_seconds=max_seconds)
    ckpt = torch.load(out, map_location="cpu", weights_only=True)
    ckpt["record"]["command"] = "camtrap-ssl " + " ".join(sys.argv[1:]) if sys.argv else ""
    if probe:
        ckpt["record"]["probes"] = probe_backbone(out, profile, seed)
    runs.atomic_torch_save(ckpt, out)
    return ckpt["record"]


def create_backbone(name: str, num_classes: int | None, profile: str | Profile = "demo",
                    seed: int = 0) -> torch.nn.Module:
    """A pretrained backbone with a fresh classifier: embedded (by method), a pretraining
    checkpoint file, or from the zoo."""
    if is_checkpoint_file(name):
        model = load_pretrained(name, num_classes=num_classes)
    elif name in METHODS:
        model = load_pretrained(backbone_checkpoint(name, profile, seed), num_classes=num_classes)
    else:
        from .models import create_model
        model = create_model(name, pretrained=True, num_classes=num_classes)
    model.backbone_name = name
    return model


# ---------------------------------------------------------------------------------------------
# fine-tuning runs

def default_runs_root() -> Path:
    return Path(os.environ.get("CAMTRAP_SSL_RUNS", Path(__file__).resolve().parent.parent / "runs"))


def run_dir_for(backbone: str, target: str, profile: Profile, seed: int, runs_root=None) -> Path:
    if is_checkpoint_file(backbone):  # one folder per checkpoint content, named by its file
        from .runs import sha256_file
        backbone = f"{Path(backbone).stem}-{sha256_file(backbone)[:8]}"
    return Path(runs_root or default_runs_root()) / profile.name / target / backbone / f"seed{seed}"


def backbone_sha256(backbone: str, profile: Profile, seed: int) -> str | None:
    """Content hash of the checkpoint an embedded backbone or a checkpoint file loads; ``None``
    for zoo names (their downloads are checked against published checksums instead)."""
    if is_checkpoint_file(backbone):
        return runs.sha256_file(backbone)
    if backbone in METHODS:
        return runs.sha256_file(backbone_checkpoint(backbone, profile, seed, progress=False))
    return None


def current_run_dir(backbone: str, target: str, profile: str | Profile, seed: int = 0,
                    runs_root=None) -> Path:
    """The run directory of a cell, after moving aside a run there made from another backbone.

    An embedded backbone keeps its name when its checkpoint is replaced (a new shipped version,
    ``retrain``), so a finished run under that name may have fine-tuned the old weights. Such a
    run is renamed ``seed<k>.stale-<n>`` (kept, never deleted) and the cell counts as not run.
    """
    profile = get_profile(profile)
    rd = run_dir_for(backbone, target, profile, seed, runs_root)
    if not is_stale(rd, backbone, profile, seed):
        return rd
    n = 1
    while rd.with_name(f"{rd.name}.stale-{n}").exists():
        n += 1
    aside = rd.rename(rd.with_name(f"{rd.name}.stale-{n}"))
    warnings.warn(f"{rd} was fine-tuned from another version of backbone {backbone!r}; "
                  f"kept as {aside}, running it again", stacklevel=2)
    return rd


def is_stale(run_dir: str | Path, backbone: str, profile: str | Profile, seed: int = 0) -> bool:
    """Whether ``run_dir`` holds a run of ``backbone`` made from other weights than its current ones.

    Never for a checkpoint file: its run directory is already named by the file's content.
    """
    run = runs.RunDir(run_dir)
    if is_checkpoint_file(backbone) or not run.file(runs.PARAMS).exists():
        return False
    current = backbone_sha256(backbone, get_profile(profile), seed)
    recorded = (run.params().get("pretraining") or {}).get("sha256")
    return current is not None and recorded != current


def finetune_config(target: str, profile: Profile, seed: int, epochs: int | None = None,
                    convergence_tolerance: float = 0.5) -> FinetuneConfig:
    default = profile.finetune_epochs_small if target in SMALL_TARGETS else profile.finetune_epochs
    return FinetuneConfig(epochs=epochs or default, batch_size=profile.batch_size, lr=profile.lr,
                          weight_decay=profile.weight_decay, seed=seed,
                          convergence_tolerance=convergence_tolerance)


def finetune_run(backbone: str, target: str | Target, profile: str | Profile = "demo", seed: int = 0,
                 runs_root=None, epochs: int | None = None, convergence_tolerance: float = 0.5,
                 progress: bool = True) -> tuple[dict, Path]:
    """Fine-tune ``backbone`` on ``target`` (skipped when the run is complete); (summary, run dir)."""
    profile = get_profile(profile)
    tgt = target if isinstance(target, Target) else None
    name = tgt.name if tgt else target
    from .paper_targets import PAPER_TARGETS, load_paper_target
    if name not in TARGETS and name not in PAPER_TARGETS:
        raise ValueError(f"target={name!r}; allowed: {list(TARGETS) + list(PAPER_TARGETS)}")
    if not is_backbone(backbone):
        raise ValueError(f"backbone={backbone!r}; allowed: {backbone_names()} or a pretraining "
                         "checkpoint file (.pt)")
    from .distributed import main_first
    rd = main_first(current_run_dir, backbone, name, profile, seed, runs_root)
    if runs.RunDir(rd).is_complete:
        return runs.RunDir(rd).summary(), rd
    tgt = tgt or (load_target(name, profile, seed) if name in TARGETS
                  else load_paper_target(name, size=profile.input_size, seed=seed, progress=progress))
    cfg = finetune_config(name, profile, seed, epochs, convergence_tolerance)
    model = create_backbone(backbone, len(tgt.classes), profile, seed)
    record = getattr(model, "pretrained_record", {})
    extra = {"backbone": describe_backbone(backbone), "target": name,
             "stands_in_for": STANDS_IN_FOR.get(name, name), "profile": profile.name,
             "data": tgt.identity,
             "pretraining": {**{k: record.get(k) for k in ("config", "code_version", "wall_seconds",
                                                            "epochs_done", "probes")},
                             "sha256": backbone_sha256(backbone, profile, seed)}}
    summary = finetune(model, tgt.train, tgt.val, tgt.classes, cfg, rd, extra_params=extra,
                       progress=progress)
    return summary, rd


def finetuned_model(backbone: str, target: str, profile: str | Profile = "demo", seed: int = 0,
                    runs_root=None, progress: bool = True) -> torch.nn.Module:
    """The fine-tuned classifier of a run (trained first if the run is missing)."""
    profile = get_profile(profile)
    summary, rd = finetune_run(backbone, target, profile, seed, runs_root, progress=progress)
    params = runs.RunDir(rd).params()
    model = create_backbone(backbone, params["num_classes"], profile, seed)
    model = load_finetuned(rd, model)
    model.class_names = params["classes"]
    return model
