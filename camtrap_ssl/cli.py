"""``camtrap-ssl``: the command line over the package.

Every option is checked before anything is computed, so a typo fails in a second with the allowed
values instead of an hour into a run. Every command checks its values through the same checks:
the run options of ``finetune`` and ``grid`` are :class:`~camtrap_ssl.experiments.spec.RunSpec`'s
fields (:func:`camtrap_ssl.experiments.spec.add_arguments`), and the other commands' options go
through :func:`camtrap_ssl.studies.params.rules`, the checks of the study notebooks, which are
RunSpec's own where they overlap. Argparse only parses; a refused value prints ``camtrap-ssl
<command>: <message>`` (the parameter, the value, what is allowed) and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import fields
from pathlib import Path

# First, before anything loads torch: sets OpenMP's thread count and wait policy (core/threads.py).
from camtrap_ssl.core import threads  # isort: skip
import pandas as pd

from camtrap_ssl.core.profiles import DEFAULT_PROFILE, PROFILES, get_profile
from camtrap_ssl.data import lila, synthetic
from camtrap_ssl.data.embedded import TARGETS
from camtrap_ssl.data.images import list_images
from camtrap_ssl.experiments import compare, finetuning, grid, predict
from camtrap_ssl.experiments.backbones import (
    POOLS,
    backbone_names,
    describe_backbone,
    pretrain_and_probe,
)
from camtrap_ssl.experiments.spec import RunSpec, add_arguments, parse_as, specs_from_args
from camtrap_ssl.pretrain.methods import METHODS
from camtrap_ssl.studies import comparison
from camtrap_ssl.studies.book import build_book
from camtrap_ssl.studies.params import STUDIES, execute_study, rules
from camtrap_ssl.train import rundir


# option -> the rule (studies.params.rules) that checks it, for the commands without a RunSpec
CHECKED = {"profile": "profile", "seed": "seed", "epochs": "pretrain_epochs",
           "max_minutes": "max_minutes", "limit": "limit", "ssl_backbone": "ssl_backbone",
           "sl_backbone": "sl_backbone", "target": "target", "methods": "methods",
           "folder": "image_folder"}


def _check(args: argparse.Namespace) -> list[str]:
    """Every problem with the parsed options (one line each), through the rules the studies use."""
    checks, problems = rules(), []
    for option, rule in CHECKED.items():
        value = getattr(args, option, None)
        if value is None:
            continue  # not an option of this command, or an optional one left out
        try:
            checks[rule](str(value) if isinstance(value, Path) else value, option)
        except ValueError as e:
            problems.append(f"--{option.replace('_', '-')}: {e}")
    return problems


def _json_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="camtrap-ssl", description=__doc__.splitlines()[0].strip("`: "))
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="datasets: generate the embedded world, download LILA data")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    g = data_sub.add_parser("generate", help="write the embedded synthetic worlds into the cache")
    g.add_argument("--profile", default=DEFAULT_PROFILE, help=f"one of {sorted(PROFILES)}")
    g.add_argument("--seed", type=parse_as(int), default=0)
    lila.add_cli(data_sub)

    pt = sub.add_parser("pretrain", help="pretrain an embedded backbone on the synthetic source world "
                                         "(or the unlabelled camera-trap pool); budget snapshots "
                                         "(<out>.b25.pt and <out>.b50.pt, in the backbones' "
                                         "arch.tag names) are written beside --out")
    pt.add_argument("--method", choices=METHODS, required=True)
    pt.add_argument("--pool", choices=POOLS, default="source",
                    help="source: the labelled source world; camtrap: unlabelled frames of the "
                         "Serengeti stand-in's training sites (SSL methods only)")
    pt.add_argument("--profile", default=DEFAULT_PROFILE, help=f"one of {sorted(PROFILES)}")
    pt.add_argument("--seed", type=parse_as(int), default=0)
    pt.add_argument("--epochs", type=parse_as(int), default=None, help="default: the profile's")
    pt.add_argument("--max-minutes", type=parse_as(float), default=None,
                    help="stop after this many minutes (resume later with the same command)")
    pt.add_argument("--out", type=Path, required=True, help="checkpoint path (.pt)")
    pt.add_argument("--no-probe", action="store_true", help="skip the linear/k-NN probes")

    ft = sub.add_parser("finetune", help="fine-tune one backbone on one target (resumes; reuses "
                                         "a finished run only if it is exactly the one asked for)")
    add_arguments(ft)
    ft.add_argument("--restart", action="store_true",
                    help="discard what the run directory holds (e.g. a truncated checkpoint) and "
                         "train it from scratch")

    gr = sub.add_parser("grid", help="fine-tune backbones x targets as papermill runs "
                                     "(skips complete runs, resumes interrupted ones)")
    add_arguments(gr, many=True)
    gr.add_argument("--quiet", action="store_true", help="no progress bar")

    st = sub.add_parser("study", help="run one study notebook with papermill")
    st.add_argument("number", choices=list(STUDIES), help="which notebook")
    st.add_argument("--output-dir", type=Path, default=Path("book/studies"))
    st.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="notebook parameter (VALUE parsed as JSON when it can be)")

    b = sub.add_parser("book", help="run the four studies and build the Jupyter Book")
    b.add_argument("--profile", default=DEFAULT_PROFILE, help=f"one of {sorted(PROFILES)}")
    b.add_argument("--seed", type=parse_as(int), default=0)
    b.add_argument("--skip-studies", action="store_true", help="only rebuild the HTML")
    b.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                   help="every run's precision (auto: bf16 where the CPU has it natively); fp32 "
                        "measures on such a CPU what a CPU without it takes")

    ex = sub.add_parser("explain", help="saliency of the SSL/SL pair on a folder of JPEGs (Study 4)")
    ex.add_argument("folder", type=Path, help="a folder of camera-trap images, any size or mode")
    ex.add_argument("--out", type=Path, required=True, help="folder for the PNGs and predictions.csv")
    ex.add_argument("--ssl-backbone", default="simclr",
                    help="a pretraining method, a registry name or a checkpoint file (.pt)")
    ex.add_argument("--sl-backbone", default="supervised")
    ex.add_argument("--ssl-run", type=Path, default=None,
                    help="a finished fine-tuning run (its folder or checkpoint.pt) to explain "
                         "instead of fine-tuning --ssl-backbone")
    ex.add_argument("--sl-run", type=Path, default=None, help="the same for the SL side")
    ex.add_argument("--runs-root", type=Path, default=None,
                    help="where the pair's runs are looked up or written")
    ex.add_argument("--target", default="syn_serengeti",
                    help=f"the target both backbones are fine-tuned on: one of {list(TARGETS)} or "
                         "the path of your own data (a COCO Camera Traps JSON, a Camtrap DP "
                         "package, a folder of class folders)")
    ex.add_argument("--profile", default=DEFAULT_PROFILE, help=f"one of {sorted(PROFILES)}")
    ex.add_argument("--seed", type=parse_as(int), default=0)
    ex.add_argument("--methods", type=lambda t: [m for m in t.split(",") if m],
                    default=["guided_backprop", "gradcam", "scorecam"],
                    help="comma-separated attribution methods")
    ex.add_argument("--limit", type=parse_as(int), default=None, help="at most this many images")

    pr = sub.add_parser("predict", help="a finished run's classifier on your images: a MegaDetector "
                                        "batch output file (and Camtrap DP observations)")
    pr.add_argument("--run", type=Path, required=True, help="a finished fine-tuning run (its folder "
                                                             "or checkpoint.pt)")
    pr.add_argument("--target", type=Path, required=True,
                    help="a COCO Camera Traps .json, a Camtrap DP package or a folder of images")
    pr.add_argument("--out", type=Path, required=True, help="folder for megadetector.json, "
                                                             "camtrapdp/ and predict.json")
    pr.add_argument("--detections", type=Path, default=None,
                    help="a MegaDetector results file on the same images: its boxes are classified "
                         "(crop-view runs) or receive the frame's classification, merged into it")
    pr.add_argument("--threshold", type=parse_as(float), default=None,
                    help="detector confidence for a box (default: the file's typical threshold, "
                         "else 0.2)")
    pr.add_argument("--taxa", type=Path, default=None,
                    help="CSV class,scientificName: Camtrap DP names (default: the class names)")
    pr.add_argument("--batch-size", type=parse_as(int), default=256)
    pr.add_argument("--quiet", action="store_true", help="no progress bar")

    sub.add_parser("models", help="list the registered backbones")

    cm = sub.add_parser("compare", help="which representation for my data: linear probe and k-NN "
                                        "on cached frozen features of several backbones (and "
                                        "fine-tuning with --finetune), one CSV and one HTML report")
    cm.add_argument("--target", required=True, help="a target name, a COCO Camera Traps JSON, a "
                                                    "Camtrap DP package or a folder of class folders")
    cm.add_argument("--backbones", default=None, help="comma-separated (default: the profile's "
                                                      "embedded ones; paper: the study's checkpoints)")
    cm.add_argument("--profile", default=DEFAULT_PROFILE, help=f"one of {sorted(PROFILES)}")
    cm.add_argument("--label-fractions", default="0.05,0.2,1",
                    type=lambda t: [parse_as(float)(x) for x in t.split(",") if x.strip()],
                    help="comma-separated shares of the training labels, each in (0, 1]")
    cm.add_argument("--seeds", default="0,1,2",
                    type=lambda t: [parse_as(int)(x) for x in t.split(",") if x.strip()],
                    help="comma-separated, at least 3 (each draws which images are labelled)")
    cm.add_argument("--finetune", action="store_true", help="also fine-tune every backbone, share "
                                                            "and seed (camtrap-ssl finetune's runs)")
    cm.add_argument("--knn-k", type=parse_as(int), default=20)
    cm.add_argument("--metric", default="top1", help="the metric of the verdicts: top1, macro_f1 "
                                                     "or balanced_acc")
    cm.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                    help="any other run option (a RunSpec field: precision, crop, runs_root, a "
                         "path target's split, ...; VALUE parsed as JSON when it can be)")
    cm.add_argument("--no-report", action="store_true", help="write the CSVs only, no HTML")
    cm.add_argument("--out", type=Path, required=True, help="folder for runs.csv and the report")

    return p


# subcommands whose refusals (ValueError, missing data, a busy run) become one line and status 2
_REFUSING = ("data", "pretrain", "finetune", "grid", "study", "book", "models", "predict")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # finetune and grid check through RunSpec, study through the notebook's rules; predict and
    # compare take a --target of their own kind (a folder of images; a target with options) and
    # check it themselves, before anything is loaded
    problems = [] if args.command in ("finetune", "grid", "study", "predict", "compare") else _check(args)
    if args.command == "explain":
        problems += _explain_problems(args)
    if problems:  # all of them at once, before anything is loaded
        print(f"camtrap-ssl {args.command}: " + "; ".join(problems), file=sys.stderr)
        return 2
    threads.configure()  # torch's threads = the cores this process may use (or OMP_NUM_THREADS)
    if args.command == "data" and args.data_command != "generate":
        return args.func(args)
    if args.command not in _REFUSING:
        return _run(args)
    try:
        return _run(args)
    except (ValueError, FileNotFoundError, TimeoutError) as e:
        print(f"camtrap-ssl {args.command}: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # a failed study or grid cell: the message names what it left
        print(f"camtrap-ssl {args.command}: {e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "data":
        prof = get_profile(args.profile)
        synthetic.source_world(prof, seed=args.seed)
        synthetic.similar_world(prof, seed=args.seed)
        for name in ("serengeti", "ena24"):
            print(synthetic.camtrap_world(name, prof, seed=args.seed))
    elif args.command == "pretrain":
        rec = pretrain_and_probe(args.method, args.profile, args.seed, args.out, epochs=args.epochs,
                                 max_seconds=None if args.max_minutes is None else 60 * args.max_minutes,
                                 probe=not args.no_probe, pool=args.pool)
        print(json.dumps({k: rec[k] for k in ("wall_seconds", "epochs_done", "probes") if k in rec}, indent=2))
    elif args.command == "finetune":
        spec, = specs_from_args(args)
        summary, rd = finetuning.finetune_run(spec, restart=args.restart)
        print(rd)
        print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, (dict, list))}, indent=2))
    elif args.command == "grid":
        df = grid.run_specs(specs_from_args(args), progress=not args.quiet)
        cols = [c for c in ("backbone", "target", "seed", "executed", "top1", "top5", "best_top1",
                            "convergence_epoch", "run_dir") if c in df.columns]
        with pd.option_context("display.width", 200, "display.max_colwidth", 80):
            print(df[cols].to_string(index=False))
    elif args.command == "study":
        params = {name: _json_value(value) for name, value in args.param}
        print(execute_study(args.number, args.output_dir, **params))
    elif args.command == "book":
        t0 = time.time()
        out = build_book(args.profile, args.seed, run_studies_first=not args.skip_studies,
                         precision=args.precision)
        print(f"book built in {time.time() - t0:.0f} s: {out}")
    elif args.command == "explain":
        prof = get_profile(args.profile)
        try:
            pair = comparison.model_pair(args.ssl_backbone, args.sl_backbone, args.target, prof,
                                         args.seed, args.runs_root, progress=True,
                                         ssl_run=args.ssl_run, sl_run=args.sl_run)
        except ValueError as e:
            raise SystemExit(f"camtrap-ssl explain: {e}") from None
        n = min(len(list_images(args.folder)), args.limit or 10**9)
        print(f"explaining {n} images with {', '.join(args.methods)} for both models", flush=True)
        table = comparison.explain_folder(pair, args.folder, args.out, args.methods, prof.input_size,
                                          limit=args.limit)
        print(table.to_string(index=False))
        t = table.attrs
        print(f"explained {t['images']} images in {t['seconds']:.1f} s ({t['seconds_per_image']:.2f} s "
              f"per image, load average {os.getloadavg()[0]:.1f} on {threads.available_cpus()} "
              f"cores); PNGs and predictions.csv in {args.out}")
    elif args.command == "predict":
        if args.threshold is not None and not 0 <= args.threshold <= 1:
            raise ValueError(f"--threshold={args.threshold!r}: allowed: a confidence in [0, 1]")
        if args.batch_size < 1:
            raise ValueError(f"--batch-size={args.batch_size!r}: allowed: an integer >= 1")
        report = predict.predict(args.run, args.target, args.out, detections=args.detections,
                                 threshold=args.threshold, taxa=args.taxa,
                                 batch_size=args.batch_size, progress=not args.quiet)
        c = report["counts"]
        print(f"{c['predictions']} predictions on {c['images']} images in {report['seconds']} s "
              f"({c['failed']} unreadable, {c['no_box']} without a box); names: "
              f"{report['scientificName']}")
        for key in ("megadetector", "camtrapdp"):
            if key in report:
                print(f"{key}: {report[key]}")
    elif args.command == "compare":
        try:
            options = dict(_run_option(o) for o in args.option)
            plan = compare.plan_compare(args.target, args.backbones, args.profile,
                                        args.label_fractions, args.seeds, args.finetune, args.out,
                                        args.knn_k, args.metric, render=not args.no_report,
                                        **options)
        except ValueError as e:  # refused before anything is loaded
            print(f"camtrap-ssl compare: {e}", file=sys.stderr)
            return 2
        compare.run_compare(plan)
    elif args.command == "models":
        for name in backbone_names():
            d = describe_backbone(name)
            print(f"{name:28s} {d['paradigm']:4s} {d['family'] or '':9s} {d['method']}")
    return 0


def _run_option(text: str) -> tuple[str, object]:
    """``NAME=VALUE`` of ``compare --option``: VALUE parsed as ``finetune --NAME VALUE`` parses it
    (the RunSpec field's own parser), so both commands take the same spellings."""
    name, _, value = text.partition("=")
    name = name.strip().replace("-", "_")
    field = {f.name: f for f in fields(RunSpec)}.get(name)
    if field is None:
        raise ValueError(f"--option {text!r}: {name!r} is not a run option; options: "
                         f"{[f.name for f in fields(RunSpec)]}")
    parse = field.metadata["parse"]
    try:
        return name, parse(value) if parse else value
    except ValueError as e:
        raise ValueError(f"--option {text!r}: {e}") from None


def _explain_problems(args: argparse.Namespace) -> list[str]:
    """What the rules cannot see: a given run must be finished, the folder must hold images."""
    problems = []
    for flag, run in (("ssl", args.ssl_run), ("sl", args.sl_run)):
        if run is not None:
            try:
                rundir.finished_run(run)
            except FileNotFoundError as e:
                problems.append(f"--{flag}-run: {e}")
    return problems


if __name__ == "__main__":
    sys.exit(main())
