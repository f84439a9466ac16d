"""A whole grid of fine-tuning runs (Studies 1 and 2: backbones x targets) in one command.

Each cell of the grid is one papermill execution of ``notebooks/finetune_run.ipynb``, so every run
leaves a readable notebook (its learning curve and confusion matrix) in its run directory beside
the run record. Why notebooks and not a plain loop: the executed notebook is the report of the
run, produced by the same code a reader can open and rerun.

* **Names first.** Every cell is a :class:`~camtrap_ssl.experiments.spec.RunSpec`, all checked
  (backbones, targets, profile, seed, epochs, lr) with the same rules as ``camtrap-ssl finetune``,
  and real datasets must be on disk, before the first kernel starts: a typo in the fifth name must
  not surface after four hours of training.
* **Skip only what was asked.** A cell whose run directory (named by the spec's identity) holds a
  complete run is not executed again; asking for other epochs or another learning rate is another
  run directory, so it executes. An incomplete run is executed, and
  :func:`camtrap_ssl.train.finetune.finetune` resumes it from its last checkpoint.
* **Atomic.** The notebook executes into a temporary file in the run directory (named by this
  process, so two grids never write the same one) and is renamed to ``finetune_run.ipynb`` only
  after it succeeded; a failed execution is kept as ``finetune_run.failed.ipynb`` for inspection
  and the grid stops with its path.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from camtrap_ssl.core import paths
from camtrap_ssl.core.profiles import DEFAULT_PROFILE
from camtrap_ssl.experiments.spec import RunSpec, grid_specs
from camtrap_ssl.train import rundir

ROOT = paths.REPOSITORY
NOTEBOOK = paths.NOTEBOOKS / "finetune_run.ipynb"
EXECUTED = "finetune_run.ipynb"
FAILED = "finetune_run.failed.ipynb"

__all__ = ["NOTEBOOK", "execute_run", "plan_grid", "run_grid"]


def plan_grid(backbones, targets, profile=DEFAULT_PROFILE, seed: int = 0, runs_root=None,
              epochs: int | None = None, lr: float | None = None) -> pd.DataFrame:
    """The grid's cells with their run directories and whether each is already complete."""
    specs = grid_specs(backbones, targets, profile=profile, seed=seed, runs_root=runs_root,
                       epochs=epochs, lr=lr)
    return pd.DataFrame([{**_cell(s), "complete": rundir.RunDir(s.run_dir()).is_complete}
                         for s in specs])


def _cell(spec: RunSpec) -> dict:
    return {"backbone": spec.backbone, "target": spec.target, "profile": spec.profile.name,
            "seed": spec.seed, "run_dir": str(spec.run_dir())}


def execute_run(spec: RunSpec, progress: bool = True) -> Path:
    """Execute the run notebook for one cell; return the executed notebook in its run directory."""
    import papermill

    run_dir = spec.check_writable()
    out, tmp = run_dir / EXECUTED, run_dir / f".{EXECUTED}.{os.getpid()}.running.ipynb"
    failed = run_dir / FAILED
    params = {"backbone": spec.backbone, "target": spec.target, "profile": spec.profile.name,
              "seed": spec.seed, "epochs": spec.epochs, "lr": spec.lr,
              "runs_root": str(spec.root), "lock_timeout": spec.lock_timeout}
    try:
        papermill.execute_notebook(str(NOTEBOOK), str(tmp), parameters=params, cwd=str(ROOT),
                                   kernel_name="python3", progress_bar=False,
                                   log_output=False)
    except Exception as e:
        if tmp.exists():
            os.replace(tmp, failed)
        raise RuntimeError(f"fine-tuning {spec.backbone} on {spec.target} failed; the executed "
                           f"notebook is {failed}: {type(e).__name__}: {e}") from e
    os.replace(tmp, out)
    return out


def _scalars(summary: dict) -> dict:
    out = {k: v for k, v in summary.items() if not isinstance(v, (dict, list))}
    for tol, ep in summary.get("convergence_epochs", {}).items():
        out[f"convergence_epoch@{tol}"] = ep
    return out


def run_grid(backbones, targets, profile=DEFAULT_PROFILE, seed: int = 0, runs_root=None,
             epochs: int | None = None, lr: float | None = None, lock_timeout: float | None = None,
             progress: bool = True) -> pd.DataFrame:
    """Fine-tune every backbone on every target (skipping runs complete for exactly this
    request); one row per run.

    ``backbones`` / ``targets``: lists or comma-separated strings. Columns: backbone, target,
    profile, seed, run_dir, executed (False when the run was already complete), and the summary's
    scalars (final/best top-1 and top-5, convergence epochs, ...).
    """
    specs = grid_specs(backbones, targets, profile=profile, seed=seed, runs_root=runs_root,
                       epochs=epochs, lr=lr, lock_timeout=lock_timeout)
    return run_specs(specs, progress)


def run_specs(specs: list[RunSpec], progress: bool = True) -> pd.DataFrame:
    """Execute each spec's notebook unless its run is complete; one row per spec."""
    # every dataset on disk, then every backbone's weights (the identities), before any run
    [spec.data_identity for spec in specs]
    [spec.run_dir() for spec in specs]
    rows = []
    for spec in tqdm(specs, desc="grid", disable=not progress):
        rd = spec.run_dir()
        executed = not rundir.RunDir(rd).is_complete
        if executed:
            execute_run(spec, progress)
        if not rundir.RunDir(rd).is_complete:
            raise RuntimeError(f"{rd / EXECUTED} ran but {rd} holds no summary.json")
        rows.append({**_cell(spec), "executed": executed,
                     **_scalars(rundir.RunDir(rd).summary())})
    return pd.DataFrame(rows)
