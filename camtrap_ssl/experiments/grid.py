"""A whole grid of fine-tuning runs (Studies 1 and 2: backbones x targets) in one command.

Each cell of the grid is one papermill execution of ``notebooks/finetune_run.ipynb``, so every run
leaves a readable notebook (its learning curve and confusion matrix) in its run directory beside
the run record. Why notebooks and not a plain loop: the executed notebook is the report of the
run, produced by the same code a reader can open and rerun.

* **Names first.** Every backbone, target, the profile, and (for real datasets) the presence of
  the data are checked before the first kernel starts: a typo in the fifth name must not surface
  after four hours of training.
* **Skip, resume.** A complete run directory (``summary.json`` present) is not executed again; an
  incomplete one is executed, and :func:`camtrap_ssl.train.finetune.finetune` resumes it from its last
  checkpoint.
* **Atomic.** The notebook executes into a temporary file in the run directory and is renamed to
  ``finetune_run.ipynb`` only after it succeeded; a failed execution is kept as
  ``finetune_run.failed.ipynb`` for inspection and the grid stops with its path.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from camtrap_ssl.core import paths
from camtrap_ssl.core.profiles import PROFILES, get_profile
from camtrap_ssl.data.embedded import TARGETS
from camtrap_ssl.data.paper import PAPER_TARGETS, check_available
from camtrap_ssl.experiments.backbones import backbone_names
from camtrap_ssl.experiments.finetuning import current_run_dir, is_stale, run_dir_for
from camtrap_ssl.train import rundir

ROOT = paths.REPOSITORY
NOTEBOOK = paths.NOTEBOOKS / "finetune_run.ipynb"
EXECUTED = "finetune_run.ipynb"
FAILED = "finetune_run.failed.ipynb"

__all__ = ["run_grid", "plan_grid", "execute_run", "allowed_targets", "add_cli", "NOTEBOOK"]


def allowed_targets() -> list[str]:
    """Embedded stand-ins first, then the study's real datasets."""
    return list(TARGETS) + [t for t in PAPER_TARGETS if t not in TARGETS]


def _names(value, param: str) -> list[str]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    names = [v for v in dict.fromkeys(value) if v]  # order kept, duplicates dropped
    if not names:
        raise ValueError(f"{param} is empty; give at least one name")
    return names


def _validate(backbones, targets, profile, seed, epochs):
    backbones, targets = _names(backbones, "backbones"), _names(targets, "targets")
    known_b, known_t = backbone_names(), allowed_targets()
    bad = [b for b in backbones if b not in known_b]
    if bad:
        raise ValueError(f"backbones: unknown {bad}; allowed: {known_b}")
    bad = [t for t in targets if t not in known_t]
    if bad:
        raise ValueError(f"targets: unknown {bad}; allowed: {known_t}")
    prof = get_profile(profile)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed={seed!r} must be an integer >= 0")
    if epochs is not None and (not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1):
        raise ValueError(f"epochs={epochs!r} must be None or an integer >= 1")
    for t in targets:  # real data must be on disk before anything starts
        if t in PAPER_TARGETS:
            check_available(t)
    return backbones, targets, prof


def plan_grid(backbones, targets, profile, seed: int = 0, runs_root=None) -> pd.DataFrame:
    """The grid's cells with their run directories and whether each is already complete."""
    backbones, targets, prof = _validate(backbones, targets, profile, seed, None)
    rows = []
    for t in targets:
        for b in backbones:
            rd = run_dir_for(b, t, prof, seed, runs_root)
            rows.append({"backbone": b, "target": t, "profile": prof.name, "seed": seed,
                         "run_dir": str(rd),
                         "complete": rundir.RunDir(rd).is_complete and not is_stale(rd, b, prof, seed)})
    return pd.DataFrame(rows)


def execute_run(backbone: str, target: str, profile: str, seed: int, run_dir, runs_root=None,
                epochs: int | None = None, progress: bool = True) -> Path:
    """Execute the run notebook for one cell; return the executed notebook in ``run_dir``."""
    import papermill

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    out, tmp = run_dir / EXECUTED, run_dir / f".{EXECUTED}.running.ipynb"
    params = {"backbone": backbone, "target": target, "profile": profile, "seed": seed,
              "epochs": epochs, "runs_root": None if runs_root is None else str(runs_root)}
    try:
        papermill.execute_notebook(str(NOTEBOOK), str(tmp), parameters=params, cwd=str(ROOT),
                                   kernel_name="python3", progress_bar=False,
                                   log_output=False)
    except Exception as e:
        if tmp.exists():
            os.replace(tmp, run_dir / FAILED)
        raise RuntimeError(f"fine-tuning {backbone} on {target} failed; the executed notebook is "
                           f"{run_dir / FAILED}: {type(e).__name__}: {e}") from e
    os.replace(tmp, out)
    return out


def _scalars(summary: dict) -> dict:
    out = {k: v for k, v in summary.items() if not isinstance(v, (dict, list))}
    for tol, ep in summary.get("convergence_epochs", {}).items():
        out[f"convergence_epoch@{tol}"] = ep
    return out


def run_grid(backbones, targets, profile, seed: int = 0, runs_root=None, epochs: int | None = None,
             progress: bool = True) -> pd.DataFrame:
    """Fine-tune every backbone on every target (skipping complete runs); one row per run.

    ``backbones`` / ``targets``: lists or comma-separated strings. Columns: backbone, target,
    profile, seed, run_dir, executed (False when the run was already complete), and the summary's
    scalars (final/best top-1 and top-5, convergence epochs, ...).
    """

    backbones, targets, prof = _validate(backbones, targets, profile, seed, epochs)
    cells = [(b, t) for t in targets for b in backbones]
    rows = []
    for b, t in tqdm(cells, desc="grid", disable=not progress):
        rd = current_run_dir(b, t, prof, seed, runs_root)
        executed = not rundir.RunDir(rd).is_complete
        if executed:
            execute_run(b, t, prof.name, seed, rd, runs_root, epochs, progress)
        if not rundir.RunDir(rd).is_complete:
            raise RuntimeError(f"{rd / EXECUTED} ran but {rd} holds no summary.json")
        rows.append({"backbone": b, "target": t, "profile": prof.name, "seed": seed,
                     "run_dir": str(rd), "executed": executed,
                     **_scalars(rundir.RunDir(rd).summary())})
    return pd.DataFrame(rows)


# -- command line ------------------------------------------------------------------------------
def _cli_grid(args: argparse.Namespace) -> int:
    try:
        df = run_grid(args.backbones, args.targets, args.profile, args.seed, args.runs_root,
                      epochs=args.epochs, progress=not args.quiet)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"camtrap-ssl grid: {e}") from None
    cols = [c for c in ("backbone", "target", "executed", "final_top1", "final_top5", "best_top1",
                        "convergence_epoch", "run_dir") if c in df.columns]
    with pd.option_context("display.width", 200, "display.max_colwidth", 80):
        print(df[cols].to_string(index=False))
    return 0


def add_cli(subparsers) -> None:
    """Add ``grid`` to an argparse subparsers object (``camtrap-ssl grid``); sets ``func``."""
    def positive(text):
        v = int(text)
        if v < 1:
            raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
        return v

    def nonneg(text):
        v = int(text)
        if v < 0:
            raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
        return v

    p = subparsers.add_parser("grid", help="fine-tune backbones x targets as papermill runs "
                                           "(skips complete runs, resumes interrupted ones)")
    p.add_argument("--backbones", required=True, help="comma-separated backbone names")
    p.add_argument("--targets", required=True, help="comma-separated target names")
    p.add_argument("--profile", choices=sorted(PROFILES), default="demo")
    p.add_argument("--seed", type=nonneg, default=0)
    p.add_argument("--epochs", type=positive, default=None, help="default: the profile's budget")
    p.add_argument("--runs-root", type=Path, default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cli_grid)
