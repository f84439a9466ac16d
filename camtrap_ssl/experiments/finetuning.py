"""Fine-tuning runs by specification: one call from a :class:`~camtrap_ssl.experiments.spec.RunSpec`
to a finished run.

A notebook asks for ``finetune_run(RunSpec("simclr", "syn_serengeti", profile))`` and gets the
same summary whether the run was just trained or completed last week, and only when the finished
run is the one asked for: the run directory is named by the spec's identity (everything that
changes the numbers, see :mod:`camtrap_ssl.experiments.spec`), so another epoch budget, learning
rate, seed, protocol or backbone checkpoint trains into its own directory instead of returning
someone else's numbers.

Order of work, cheapest checks first: the spec (names, types, ranges), then whether the runs root
can be written, then (only for a run that is not finished) the data and the model; training holds
the run directory's lock (:func:`camtrap_ssl.train.rundir.locked`), so two processes asking for
the same run train it once.
"""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from camtrap_ssl.data.datasets import Target, with_label_fraction
from camtrap_ssl.data.targets import get_target, load_user_target, stands_in_for, target_key
from camtrap_ssl.experiments.backbones import backbone_sha256, create_backbone, describe_backbone
from camtrap_ssl.experiments.spec import RunSpec
from camtrap_ssl.train.distributed import main_first
from camtrap_ssl.train.finetune import finetune, finished_summary


def load_spec_target(spec: RunSpec, progress: bool = True, masks: bool = False) -> Target:
    """The target a spec trains on: its data seed (:attr:`RunSpec.data_seed`) and its strip. Every
    entry point (this module, the torchrun launcher, the studies) loads a spec's data here, so the
    world trained on is the world the run records. A target given by path is read with the spec's
    data options (:meth:`RunSpec.data_options`), its split drawn with the data seed."""
    if spec.by_path:
        opts = spec.data_options()
        return load_user_target(spec.target, **opts, size=spec.profile.resize_size,
                                profile=spec.profile, seed=spec.data_seed, progress=progress)
    return get_target(spec.target, spec.profile, spec.data_seed, masks=masks, progress=progress,
                      strip_fraction=spec.protocol()["strip"])


def finetune_run(spec: RunSpec, data: Target | None = None, progress: bool = True,
                 restart: bool = False) -> tuple[dict, Path]:
    """Run ``spec`` (skipped when its run is complete); (summary, run dir).

    ``data``: the target already loaded (the torchrun launcher loads it on rank 0 first).
    ``restart=True`` discards what the run directory holds and trains from scratch.
    """
    if not isinstance(spec, RunSpec):
        raise TypeError(f"finetune_run takes a RunSpec, got {type(spec).__name__}; build one with "
                        "RunSpec(backbone, target, profile, ...)")
    if data is not None and data.name != (target_key(spec.target) if spec.by_path else spec.target):
        raise ValueError(f"data is target {data.name!r} but the spec asks for {spec.target!r}")
    # rank 0 first: the identity may pretrain a missing embedded backbone into the cache
    rd = main_first(spec.check_writable)
    done = None if restart else finished_summary(rd, spec.convergence_tolerance)
    if done is not None:
        return done, rd
    profile = spec.profile
    tgt = data or load_spec_target(spec, progress)
    train, labels = with_label_fraction(tgt.train, spec.label_fraction, spec.seed)
    model = create_backbone(spec.backbone, len(tgt.classes), profile, spec.seed, spec.pretrain_seed)
    record = getattr(model, "pretrained_record", {})
    spec_record = {f.name: v for f, v in zip(fields(spec), spec.to_params().values())
                   if f.metadata["identity"]}
    extra = {"identity": spec.identity, "spec": spec_record,
             "backbone": describe_backbone(spec.backbone),
             "target": spec.target, "stands_in_for": stands_in_for(spec.target),
             "profile": profile.name, "data": tgt.identity, "labels": labels,
             "pretraining": {**{k: record.get(k) for k in ("config", "code_version", "wall_seconds",
                                                            "epochs_done", "probes")},
                             "sha256": backbone_sha256(spec.backbone, profile, spec.pretrain_seed)}}
    summary = finetune(model, train, tgt.val, tgt.classes, spec.config(), rd, extra_params=extra,
                       progress=progress, restart=restart, lock_timeout=spec.lock_timeout)
    return summary, rd
