"""Fine-tuning runs by name: one call from (backbone, target, profile, seed) to a finished run.

A notebook asks for ``finetune_run("simclr", "syn_serengeti", profile)`` and gets the same summary
whether the run was just trained or completed last week. The run directory's place and identity
are decided here (``runs/<profile>/<target>/<backbone>/seed<k>/``), as is the policy for a run made
from since-replaced weights (moved aside, never reused).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from camtrap_ssl.core import fileio, paths
from camtrap_ssl.core.profiles import Profile, get_profile
from camtrap_ssl.data.datasets import Target
from camtrap_ssl.data.embedded import TARGETS, load_target
from camtrap_ssl.data.paper import PAPER_TARGETS, load_paper_target
from camtrap_ssl.data.targets import SMALL_TARGETS, stands_in_for
from camtrap_ssl.experiments.backbones import (
    PRETRAIN_SEED,
    backbone_names,
    backbone_sha256,
    create_backbone,
    describe_backbone,
    is_backbone,
    is_checkpoint_file,
)
from camtrap_ssl.train import rundir
from camtrap_ssl.train.distributed import main_first
from camtrap_ssl.train.finetune import FinetuneConfig, finetune, load_finetuned


# Every fine-tuning seed of a cell runs on the same embedded target world (and, see
# backbones.PRETRAIN_SEED, from the same backbone): a run's seed is its fine-tuning seed.
WORLD_SEED = 0


def run_dir_for(backbone: str, target: str, profile: Profile, seed: int, runs_root=None) -> Path:
    if is_checkpoint_file(backbone):  # one folder per checkpoint content, named by its file
        backbone = f"{Path(backbone).stem}-{fileio.sha256_file(backbone)[:8]}"
    return paths.runs_root(runs_root) / profile.name / target / backbone / f"seed{seed}"


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
    run = rundir.RunDir(run_dir)
    if is_checkpoint_file(backbone) or not run.file(rundir.PARAMS).exists():
        return False
    current = backbone_sha256(backbone, get_profile(profile), PRETRAIN_SEED)
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
    if name not in TARGETS and name not in PAPER_TARGETS:
        raise ValueError(f"target={name!r}; allowed: {list(TARGETS) + list(PAPER_TARGETS)}")
    if not is_backbone(backbone):
        raise ValueError(f"backbone={backbone!r}; allowed: {backbone_names()} or a pretraining "
                         "checkpoint file (.pt)")
    rd = main_first(current_run_dir, backbone, name, profile, seed, runs_root)
    if rundir.RunDir(rd).is_complete:
        return rundir.RunDir(rd).summary(), rd
    tgt = tgt or (load_target(name, profile, WORLD_SEED) if name in TARGETS
                  else load_paper_target(name, size=profile.input_size, seed=seed, progress=progress))
    cfg = finetune_config(name, profile, seed, epochs, convergence_tolerance)
    model = create_backbone(backbone, len(tgt.classes), profile, seed)
    record = getattr(model, "pretrained_record", {})
    extra = {"backbone": describe_backbone(backbone), "target": name,
             "stands_in_for": stands_in_for(name), "profile": profile.name,
             "data": tgt.identity,
             "pretraining": {**{k: record.get(k) for k in ("config", "code_version", "wall_seconds",
                                                            "epochs_done", "probes")},
                             "sha256": backbone_sha256(backbone, profile, PRETRAIN_SEED)}}
    summary = finetune(model, tgt.train, tgt.val, tgt.classes, cfg, rd, extra_params=extra,
                       progress=progress)
    return summary, rd


def finetuned_model(backbone: str, target: str, profile: str | Profile = "demo", seed: int = 0,
                    runs_root=None, progress: bool = True) -> torch.nn.Module:
    """The fine-tuned classifier of a run (trained first if the run is missing)."""
    profile = get_profile(profile)
    summary, rd = finetune_run(backbone, target, profile, seed, runs_root, progress=progress)
    params = rundir.RunDir(rd).params()
    model = create_backbone(backbone, params["num_classes"], profile, seed)
    model = load_finetuned(rd, model)
    model.class_names = params["classes"]
    return model
