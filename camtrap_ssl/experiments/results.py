"""One result row per run: the schema that the grid, Studies 1 and 2 and the RQ1 page share.

Every table of runs in the project is a ``DataFrame`` of :func:`run_row` dicts (fine-tuning runs)
or :func:`probe_row` dicts (linear probes on frozen features), so a column means the same thing
wherever it appears, and every row carries where its numbers came from (the run directory or probe
file, the code version) and the protocol that produced them (showyourwork).
"""
from __future__ import annotations

from pathlib import Path

from camtrap_ssl.data.targets import stands_in_for
from camtrap_ssl.experiments.backbones import describe_backbone
from camtrap_ssl.experiments.spec import RunSpec
from camtrap_ssl.train import rundir

# summary key -> results column; all in points (0-100), ECE included
METRICS = {"final_top1": "top1", "final_top5": "top5", "final_macro_f1": "macro_f1",
           "final_balanced_acc": "balanced_acc", "final_tail_top1": "tail_top1",
           "final_empty_acc": "empty_acc", "final_ece": "ece"}
# camera-trap practice (train.practice via train.predictions): sequence-level scores and automation
PRACTICE = {"final_seq_top1": "seq_top1", "final_seq_macro_f1": "seq_macro_f1",
            "final_seq_balanced_acc": "seq_balanced_acc", "coverage_at_95": "coverage_at_95",
            "final_aurc": "aurc"}
PROTOCOL_COLUMNS = ("pretraining", "fine-tuning", "split", "eval crop")

__all__ = ["METRICS", "PRACTICE", "PROTOCOL_COLUMNS", "probe_row", "protocol", "run_row"]


def protocol(params: dict, summary: dict) -> dict:
    """What produced a run's numbers, from its ``params.json``: pretraining, fine-tuning, data."""
    pre = params.get("pretraining") or {}
    cfg = pre.get("config") or {}
    probe = ((pre.get("probes") or {}).get("pretrained") or {}).get("linear")
    ft = params.get("finetune", {})
    prep = params.get("preprocessing") or {}  # train.finetune records augmentation and crops here
    aug = prep.get("augmentation") or ft.get("augmentation", "?")
    seed = (params.get("spec") or {}).get("pretrain_seed", 0)
    return {
        "pretraining": (f"{cfg.get('method', params['backbone']['method'])}, "
                        f"{pre.get('epochs_done', '?')} ep"
                        + (f", seed {seed}" if seed else "")
                        + (f", linear probe {100 * probe:.1f} %" if probe is not None else "")),
        "fine-tuning": (f"full network, {summary['epochs']} ep, Adam lr {ft.get('lr')}, "
                        f"batch {ft.get('batch_size')}, aug {aug}"),
        "split": (params.get("data") or {}).get("split", "?"),
        "eval crop": ("whole frame" if prep.get("eval_crop", "none") == "none"
                      else prep["eval_crop"]),
    }


def _common(spec: RunSpec, mode: str) -> dict:
    return {**describe_backbone(spec.backbone), "target": spec.target,
            "stands_in_for": stands_in_for(spec.target), "seed": spec.seed,
            "pretrain_seed": spec.pretrain_seed, "label_fraction": spec.label_fraction,
            "view": spec.view, "mode": mode, "profile": spec.profile.name}


def run_row(spec: RunSpec, summary: dict, run_dir: str | Path) -> dict:
    """The row of one finished fine-tuning run: what was asked (the spec's backbone, target,
    seeds, label share), every metric of :data:`METRICS`, convergence, the protocol and where it
    came from."""
    params = rundir.RunDir(run_dir).params()
    return {**_common(spec, "fine-tune"),
            **{col: summary.get(key) for key, col in METRICS.items()},
            **{col: summary.get(key) for key, col in PRACTICE.items()},
            "best_top1": summary["best_top1"], "train_acc": summary["train_acc"],
            "convergence_epoch": summary["convergence_epoch"], "epochs": summary["epochs"],
            **protocol(params, summary), "run_dir": str(run_dir),
            "code_version": params.get("environment", {}).get("code_version")}


def probe_row(spec: RunSpec, probe: dict) -> dict:
    """The row of one linear probe (:func:`camtrap_ssl.experiments.probing.linear_probe_run`), in
    the same columns (no convergence: a probe has no epochs)."""
    return {**_common(spec, "linear probe"),
            **{col: probe.get(col) for col in METRICS.values()},
            "pretraining": spec.backbone, "fine-tuning": "linear probe on frozen features",
            "split": "the target's", "eval crop": f"centre {spec.protocol()['crop']}",
            "run_dir": probe["path"],
            "code_version": (probe.get("environment") or {}).get("code_version")}
