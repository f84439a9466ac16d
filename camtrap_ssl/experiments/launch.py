"""``torchrun ... -m camtrap_ssl.experiments.launch``: one data-parallel fine-tuning run.

The fine-tuning loop detects the process group by itself (:mod:`camtrap_ssl.train.distributed`);
this launcher only joins the group, fills the caches on rank 0 first, and runs the cell. Its run
options are ``camtrap-ssl finetune``'s (:func:`camtrap_ssl.experiments.spec.add_arguments`), checked
by the same :class:`~camtrap_ssl.experiments.spec.RunSpec` before the process group starts.

Command line (one node, two GPUs)::

    torchrun --nproc-per-node 2 -m camtrap_ssl.experiments.launch --backbone simclrv2_r50_1x_sk1 \\
        --target serengeti --profile paper
"""
from __future__ import annotations

import argparse
import sys

from camtrap_ssl.experiments import backbones
from camtrap_ssl.experiments.finetuning import finetune_run, load_spec_target
from camtrap_ssl.experiments.spec import add_arguments, specs_from_args
from camtrap_ssl.train.distributed import BACKENDS, init_from_env, main_first, teardown
from camtrap_ssl.train.finetune import finished_summary

PROG = "torchrun ... -m camtrap_ssl.experiments.launch"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description="one data-parallel fine-tuning run (see module doc)")
    add_arguments(p)
    p.set_defaults(profile="paper")  # a data-parallel run is the study's scale
    p.add_argument("--backend", choices=BACKENDS, default=None)
    args = p.parse_args(argv)
    try:
        spec, = specs_from_args(args)
    except ValueError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    ctx = init_from_env(args.backend)
    prof = spec.profile

    try:
        # data caches and embedded backbones are written on first use: rank 0 fills them first
        rd = main_first(spec.check_writable)
        target = None
        if finished_summary(rd, spec.convergence_tolerance) is None:  # else nothing to load
            main_first(backbones.create_backbone, spec.backbone, None, prof, spec.seed,
                       spec.pretrain_seed)
            # the spec's own data seed and strip: the world trained on is the world recorded
            target = main_first(load_spec_target, spec, ctx.is_main)
        summary, rd = finetune_run(spec, target, progress=ctx.is_main)
        if ctx.is_main:
            print(rd)
            print({k: v for k, v in summary.items() if not isinstance(v, (dict, list))})
    finally:
        teardown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
