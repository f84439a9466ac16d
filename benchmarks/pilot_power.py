"""Pilot of the demo's variance components and the power calculation that follows (issue 20).

What makes a paired SSL − SL top-1 difference on a demo target uncertain, measured rather than
assumed, on the key comparison (the supervised backbone against SimCLR, the best instance-based
method by linear probe) on the Serengeti and CIFAR stand-ins:

* **fine-tuning seed**: the same two backbones fine-tuned with ``--seeds`` (head, data order,
  augmentation), their paired differences' spread;
* **validation sampling**: the spread of a paired accuracy difference over draws of the shared
  validation images, from each pair of runs' per-image predictions (``predictions.npz``):
  McNemar's discordant share (:func:`camtrap_ssl.core.power.paired_accuracy_sd`);
* **pretraining seed**: where backbones of other pretraining seeds exist (shipped in
  ``checkpoints/seed<k>/`` or cached; ``camtrap-ssl pretrain --seed k``), the between-pretraining
  variance of the paired difference (:func:`camtrap_ssl.core.power.variance_components`).

Then :func:`camtrap_ssl.core.power.design_table` predicts, for validation sizes, fine-tuning and
pretraining seeds, the half-width of the 95 % interval of the mean paired difference and the
smallest difference found with 80 % power, and the run cost from the measured seconds per run:
which design meets the issue's goal of a half-width of at most 3 points. Runs are ordinary
recorded fine-tuning runs (``runs_root``), so a second call reuses them. Prints a table and writes
``--out`` (JSON) with the CPU, the precision and the load.

    python benchmarks/pilot_power.py [--profile demo] [--seeds 0 1 2 3 4] [--out pilot.json]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from camtrap_ssl.core import power, provenance
from camtrap_ssl.experiments.backbones import is_pretrained
from camtrap_ssl.experiments.finetuning import finetune_run
from camtrap_ssl.experiments.spec import RunSpec
from camtrap_ssl.models.utils import resolve_precision
from camtrap_ssl.studies.budget import cpu_model
from camtrap_ssl.train import rundir


def _run(spec: RunSpec) -> dict:
    t0 = time.perf_counter()
    summary, rd = finetune_run(spec, progress=False)
    rec = rundir.RunDir(rd).predictions()
    return {"backbone": spec.backbone, "target": spec.target, "seed": spec.seed,
            "pretrain_seed": spec.pretrain_seed, "top1": summary["final_top1"],
            "seq_top1": summary.get("final_seq_top1"), "coverage_at_95": summary.get("coverage_at_95"),
            "correct": rec["probs"].argmax(1) == rec["labels"], "seconds": time.perf_counter() - t0,
            "run_dir": str(rd)}


def epoch_scan(profile: str, targets, sl: str, ssl: str, epochs, runs_root) -> list[dict]:
    """Final top-1 and the monitor curve of seed 0 of both backbones at each schedule length in
    ``epochs`` (the cosine schedule ends on a plateau at any length, so what decides the budget
    is how much a longer schedule still gains): the measured curves the demo's epochs are
    chosen from."""
    rows = []
    for target in targets:
        for e in epochs:
            for b in (sl, ssl):
                t0 = time.perf_counter()
                summary, rd = finetune_run(RunSpec(b, target, profile, 0, epochs=e,
                                                   runs_root=runs_root), progress=False)
                rows.append({"target": target, "epochs": e, "backbone": b,
                             "final_top1": summary["final_top1"],
                             "monitor_curve": [m["monitor_top1"] for m in rundir.RunDir(rd).metrics()],
                             "seconds": round(time.perf_counter() - t0, 1)})
                print(f"  {target}, {e} epochs, {b}: final top-1 {summary['final_top1']:.1f}, "
                      f"monitor {' '.join(f'{v:.0f}' for v in rows[-1]['monitor_curve'])}", flush=True)
    return rows


def pilot(profile: str, targets, sl: str, ssl: str, seeds, pretrain_seeds, runs_root,
          epochs: int | None = None) -> dict:
    out = {}
    for target in targets:
        rows = []
        for p in pretrain_seeds:
            for s in seeds:
                pair = [_run(RunSpec(b, target, profile, s, pretrain_seed=p, epochs=epochs,
                                     runs_root=runs_root)) for b in (ssl, sl)]
                a, b = pair
                q = float(np.mean(a["correct"] != b["correct"]))  # discordant share
                n = len(a["correct"])
                rows.append({"pretrain_seed": p, "finetune_seed": s, "diff": a["top1"] - b["top1"],
                             "ssl_top1": a["top1"], "sl_top1": b["top1"], "n_val": n,
                             "ssl_seq_top1": a["seq_top1"], "sl_seq_top1": b["seq_top1"],
                             "ssl_coverage_at_95": a["coverage_at_95"],
                             "sl_coverage_at_95": b["coverage_at_95"],
                             "discordance": q,
                             "validation_sd": 100 * power.paired_accuracy_sd(
                                 a["top1"] / 100, b["top1"] / 100, q, n),
                             "seconds": a["seconds"] + b["seconds"]})
        t = pd.DataFrame(rows)
        n_val = int(t.n_val.iloc[0])
        per_image_sd = float(np.median(t.validation_sd)) * np.sqrt(n_val)
        val_var = float(np.median(t.validation_sd)) ** 2
        if len(pretrain_seeds) > 1:
            vc = power.variance_components(t, validation_var=val_var)
            pretrain_sd, finetune_sd = vc.pretrain_sd, vc.finetune_sd
        else:  # one pretraining run: the runs' spread is fine-tuning plus validation sampling
            pretrain_sd = 0.0
            finetune_sd = float(np.sqrt(max(t["diff"].var(ddof=1) - val_var, 0.0)))
        comp = power.DesignComponents(pretrain_sd=pretrain_sd, finetune_sd=finetune_sd,
                                      per_image_sd=per_image_sd)
        run_s = float(t.seconds.median()) / 2
        costs = power.DesignCosts(pretrain_s=0.0, finetune_s=run_s,
                                  eval_s_per_image=run_s / (20 * n_val))
        designs = power.design_table(comp, costs, n_val_options=(n_val, 1000, 2000, 4000),
                                     finetune_options=(3, 5, 10), pretrain_options=(1, 3, 5)
                                     if comp.pretrain_sd > 0 else (1,))
        meets = [d for d in designs if d.half_width <= 3.0]
        out[target] = {
            "runs": t.drop(columns=["seconds"]).to_dict("records"),
            "n_val": n_val, "mean_diff": float(t["diff"].mean()),
            "sd_diff_over_runs": float(t["diff"].std(ddof=1)),
            "finetune_sd": finetune_sd, "pretrain_sd": pretrain_sd if len(pretrain_seeds) > 1
            else None, "validation_sd_one_run": float(np.median(t.validation_sd)),
            "per_image_sd": per_image_sd, "seconds_per_run": run_s,
            "current_design": {"n_val": n_val, "finetune_seeds": len(seeds),
                               "half_width": power.half_width(float(t["diff"].std(ddof=1)),
                                                              len(t)),
                               "min_detectable": power.min_detectable_difference(
                                   float(t["diff"].std(ddof=1)), len(t))},
            "cheapest_design_within_3_points": (min(meets, key=lambda d: d.cost).__dict__
                                                if meets else None),
            "designs": [d.__dict__ for d in designs[:12]]}
    return out


def views(profile: str, sl: str, ssl: str, seeds, runs_root, target: str) -> dict:
    """SSL - SL top-1 on the whole frames and on the animals' boxes, paired by seed, with its 95 %
    t-interval (per comparison): the RQ1 page's crop axis (``rq1.view_results``) for one pair."""
    from camtrap_ssl.studies import rq1

    results = rq1.view_results([sl, ssl], seeds=seeds, target=target, profile=profile,
                               runs_root=runs_root)
    d = rq1.differences(results, "view", sl)
    return {view: {"mean": r.top1_diff, "low": r.top1_low, "high": r.top1_high}
            for view, r in zip(["frame", "box"], d.sort_values("condition", key=lambda c: c.map(
                {"whole frame": 0, "animal crop": 1})).itertuples())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--targets", nargs="+", default=["syn_serengeti", "syn_cifar"])
    ap.add_argument("--sl", default="supervised")
    ap.add_argument("--ssl", default="simclr")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--runs-root", default=None)
    ap.add_argument("--epochs", type=int, default=None, help="None: the profile's")
    ap.add_argument("--pretrain-seeds", nargs="+", type=int, default=[0, 1, 2],
                    help="used where both backbones are pretrained at that seed")
    ap.add_argument("--epoch-scan", nargs="*", type=int, default=[],
                    help="schedule lengths to scan first (seed 0 of both backbones), e.g. 4 6 8 12")
    ap.add_argument("--out", type=Path, default=Path("pilot_power.json"))
    ap.add_argument("--view-target", default="syn_serengeti_d4",
                    help="the target of the frame-against-crop comparison ('' to skip)")
    args = ap.parse_args()
    pre = [p for p in args.pretrain_seeds
           if all(is_pretrained(b, args.profile, p) for b in (args.sl, args.ssl))]
    t0 = time.time()
    scan = epoch_scan(args.profile, args.targets, args.sl, args.ssl, args.epoch_scan, args.runs_root)
    res = pilot(args.profile, args.targets, args.sl, args.ssl, args.seeds, pre, args.runs_root,
                args.epochs)
    record = {"profile": args.profile, "sl": args.sl, "ssl": args.ssl, "seeds": args.seeds,
              "pretrain_seeds": pre, "cpu": cpu_model(), "precision": resolve_precision("auto", "cpu"),
              "load_average_at_end": os.getloadavg()[0], "wall_seconds": round(time.time() - t0, 1),
              "code_version": provenance.code_version(), "epochs": args.epochs,
              "epoch_scan": scan, "targets": res,
              "views": (views(args.profile, args.sl, args.ssl, args.seeds[:3], args.runs_root,
                              args.view_target) if args.view_target else None)}
    args.out.write_text(json.dumps(record, indent=1, default=float))
    print(f"pilot on {record['cpu']} ({record['precision']}), pretraining seeds {pre}, "
          f"load {record['load_average_at_end']:.1f}, {record['wall_seconds']} s")
    for target, r in res.items():
        cur = r["current_design"]
        best = r["cheapest_design_within_3_points"]
        print(f"{target}: n_val {r['n_val']}, {args.ssl} - {args.sl} = {r['mean_diff']:.1f} points; "
              f"sd: fine-tuning seed {r['finetune_sd']:.2f}, validation sampling (one run) "
              f"{r['validation_sd_one_run']:.2f}, pretraining seed "
              f"{'-' if r['pretrain_sd'] is None else round(r['pretrain_sd'], 2)}; "
              f"{cur['finetune_seeds']} seeds now: half-width {cur['half_width']:.1f}, smallest "
              f"resolvable {cur['min_detectable']:.1f}; within 3 points: "
              + (f"n_val {best['n_val']}, {best['n_finetune_seeds']} fine-tuning x "
                 f"{best['n_pretrain_seeds']} pretraining seeds (half-width {best['half_width']:.1f})"
                 if best else "no design in the table"))
        t = pd.DataFrame(r["runs"])
        for side in ("sl", "ssl"):
            seq = t[f"{side}_seq_top1"].dropna()
            print(f"  {args.sl if side == 'sl' else args.ssl}: frame top-1 {t[side + '_top1'].mean():.1f}, "
                  f"sequence top-1 {seq.mean():.1f}" if len(seq) else "  (no sequences)",
                  f", automated at 95 % accuracy {100 * t[side + '_coverage_at_95'].mean():.1f} % of images")
    for view, v in (record["views"] or {}).items():
        print(f"{args.ssl} - {args.sl} on {args.view_target}, {view}: {v['mean']:.1f} "
              f"[{v['low']:.1f}, {v['high']:.1f}] points over seeds {args.seeds[:3]}")


if __name__ == "__main__":
    main()
