"""``torchrun ... -m camtrap_ssl.experiments.launch``: one data-parallel fine-tuning run.

The fine-tuning loop detects the process group by itself (:mod:`camtrap_ssl.train.distributed`);
this launcher only joins the group, fills the caches on rank 0 first, and runs the cell.

Command line (one node, two GPUs)::

    torchrun --nproc-per-node 2 -m camtrap_ssl.experiments.launch --backbone simclrv2_r50_1x_sk1 \\
        --target serengeti --profile paper
"""
from __future__ import annotations

import argparse

from camtrap_ssl.core.profiles import get_profile
from camtrap_ssl.data import embedded, paper
from camtrap_ssl.experiments import backbones
from camtrap_ssl.experiments.finetuning import finetune_run
from camtrap_ssl.train.distributed import BACKENDS, init_from_env, main_first, teardown


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="torchrun ... -m camtrap_ssl.experiments.launch",
                                description="one data-parallel fine-tuning run (see module doc)")
    p.add_argument("--backbone", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--profile", default="paper")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--runs-root", default=None)
    p.add_argument("--backend", choices=BACKENDS, default=None)
    args = p.parse_args(argv)
    if args.backbone not in backbones.backbone_names():
        p.error(f"--backbone {args.backbone!r}; allowed: {backbones.backbone_names()}")
    prof = get_profile(args.profile)
    known = list(embedded.TARGETS) + list(paper.PAPER_TARGETS)
    if args.target not in known:
        p.error(f"--target {args.target!r}; allowed: {known}")
    ctx = init_from_env(args.backend)

    def load_target():
        if args.target in embedded.TARGETS:
            return embedded.load_target(args.target, prof, args.seed)
        return paper.load_paper_target(args.target, size=prof.resize_size, seed=args.seed,
                                       progress=ctx.is_main, strip_fraction=prof.strip_fraction)

    try:
        # data caches and embedded backbones are written on first use: rank 0 fills them first
        main_first(backbones.create_backbone, args.backbone, None, prof, args.seed)
        target = main_first(load_target)
        summary, rd = finetune_run(args.backbone, target, prof, args.seed,
                                            args.runs_root, epochs=args.epochs,
                                            progress=ctx.is_main)
        if ctx.is_main:
            print(rd)
            print({k: v for k, v in summary.items() if not isinstance(v, (dict, list))})
    finally:
        teardown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
