"""Fine-tuning runs by specification: one call from a :class:`~camtrap_ssl.experiments.spec.RunSpec`
to a finished run.

A notebook asks for ``finetune_run("simclr", "syn_serengeti", profile)`` and gets the same summary
whether the run was just trained or completed last week, and only when the finished run is the
one asked for: the run directory is named by the spec's identity (everything that changes the
numbers, see :mod:`camtrap_ssl.experiments.spec`), so another epoch budget, learning rate, seed or
backbone checkpoint trains into its own directory instead of returning someone else's numbers.

Order of work, cheapest checks first: the spec (names, types, ranges), then whether the runs root
can be written, then (only for a run that is not finished) the data and the model; training holds
the run directory's lock (:func:`camtrap_ssl.train.rundir.locked`), so two processes asking for
the same run train it once.
"""
from __future__ import annotations

from pathlib import Path

import torch

from camtrap_ssl.core.profiles import DEFAULT_PROFILE, Profile
from camtrap_ssl.data.datasets import Target, with_label_fraction
from camtrap_ssl.data.targets import get_target, stands_in_for
from camtrap_ssl.experiments.backbones import (
    PRETRAIN_SEED,
    backbone_sha256,
    create_backbone,
    describe_backbone,
)
from camtrap_ssl.experiments.spec import RunSpec
from camtrap_ssl.train import rundir
from camtrap_ssl.train.distributed import main_first
from camtrap_ssl.train.finetune import finetune, finished_summary, load_finetuned


def run(spec: RunSpec, data: Target | None = None, progress: bool = True,
        restart: bool = False) -> tuple[dict, Path]:
    """Run ``spec`` (skipped when its run is complete); (summary, run dir).

    ``data``: the target already loaded (the torchrun launcher loads it on rank 0 first).
    ``restart=True`` discards what the run directory holds and trains from scratch.
    """
    if data is not None and data.name != spec.target:
        raise ValueError(f"data is target {data.name!r} but the spec asks for {spec.target!r}")
    # rank 0 first: the identity may pretrain a missing embedded backbone into the cache
    rd = main_first(spec.check_writable)
    done = None if restart else finished_summary(rd, spec.convergence_tolerance)
    if done is not None:
        return done, rd
    profile = spec.profile
    tgt = data or get_target(spec.target, profile, spec.data_seed, progress=progress)
    train, labels = with_label_fraction(tgt.train, spec.label_fraction, spec.seed)
    model = create_backbone(spec.backbone, len(tgt.classes), profile, spec.seed)
    record = getattr(model, "pretrained_record", {})
    extra = {"identity": spec.identity, "backbone": describe_backbone(spec.backbone),
             "target": spec.target, "stands_in_for": stands_in_for(spec.target),
             "profile": profile.name, "data": tgt.identity, "labels": labels,
             "pretraining": {**{k: record.get(k) for k in ("config", "code_version", "wall_seconds",
                                                            "epochs_done", "probes")},
                             "sha256": backbone_sha256(spec.backbone, profile, PRETRAIN_SEED)}}
    summary = finetune(model, train, tgt.val, tgt.classes, spec.config(), rd, extra_params=extra,
                       progress=progress, restart=restart, lock_timeout=spec.lock_timeout)
    return summary, rd


def finetune_run(backbone: str, target: str | Target, profile: str | Profile = DEFAULT_PROFILE,
                 seed: int = 0, runs_root=None, epochs: int | None = None, lr: float | None = None,
                 convergence_tolerance: float = 0.5, lock_timeout: float | None = None,
                 progress: bool = True, restart: bool = False,
                 label_fraction: float = 1.0) -> tuple[dict, Path]:
    """Fine-tune ``backbone`` on ``target`` (skipped when that exact run is complete); (summary,
    run dir). The arguments are :class:`RunSpec`'s fields; ``target`` may be a loaded target."""
    data = target if isinstance(target, Target) else None
    spec = RunSpec(backbone, data.name if data else target, profile, seed, epochs, lr, runs_root,
                   convergence_tolerance, lock_timeout, label_fraction)
    return run(spec, data, progress=progress, restart=restart)


def finetuned_model(backbone: str, target: str, profile: str | Profile = DEFAULT_PROFILE,
                    seed: int = 0, runs_root=None, progress: bool = True,
                    **spec_fields) -> torch.nn.Module:
    """The fine-tuned classifier of a run (trained first if the run is missing)."""
    spec = RunSpec(backbone, target, profile, seed, runs_root=runs_root, **spec_fields)
    _, rd = run(spec, progress=progress)
    params = rundir.RunDir(rd).params()
    model = create_backbone(backbone, params["num_classes"], spec.profile, seed)
    model = load_finetuned(rd, model)
    model.class_names = params["classes"]
    return model
