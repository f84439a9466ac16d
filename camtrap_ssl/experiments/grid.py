"""A whole grid of fine-tuning runs (Studies 1 and 2: backbones x targets) in one command.

Each cell of the grid is one papermill execution of ``notebooks/finetune_run.ipynb``, so every run
leaves a readable notebook (its learning curve and confusion matrix) in its run directory beside
the run record. Why notebooks and not a plain loop: the executed notebook is the report of the
run, produced by the same code a reader can open and rerun.

* **Names first.** Every cell is a :class:`~camtrap_ssl.experiments.spec.RunSpec`, all checked
  (every field) with the same rules as ``camtrap-ssl finetune``,
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

from camtrap_ssl.core import paths
from camtrap_ssl.core.progress import progress_bar
from camtrap_ssl.experiments.results import run_row
from camtrap_ssl.experiments.spec import RunSpec, grid_specs
from camtrap_ssl.train import rundir
from camtrap_ssl.train.finetune import finished_summary

ROOT = paths.REPOSITORY
NOTEBOOK = paths.NOTEBOOKS / "finetune_run.ipynb"
EXECUTED = "finetune_run.ipynb"
FAILED = "finetune_run.failed.ipynb"

__all__ = ["NOTEBOOK", "execute_run", "plan_grid", "run_grid"]


def plan_grid(backbones, targets, *, seeds=None, **common) -> pd.DataFrame:
    """The grid's cells with their run directories and whether each is already complete.
    ``common``: any :class:`RunSpec` field, the same for every cell."""
    specs = grid_specs(backbones, targets, seeds, **common)
    return pd.DataFrame([{**_cell(s), "complete": rundir.RunDir(s.run_dir()).is_complete}
                         for s in specs])


def _cell(spec: RunSpec) -> dict:
    return {"backbone": spec.backbone, "target": spec.target, "profile": spec.profile.name,
            "seed": spec.seed, "run_dir": str(spec.run_dir())}


def execute_run(spec: RunSpec, progress: bool = True) -> Path:
    """Execute the run notebook for one cell; return the executed notebook in its run directory.
    The notebook receives the spec whole (:meth:`RunSpec.to_params`, its one parameter ``spec``)
    and rebuilds it (:meth:`RunSpec.from_params`), so every field arrives unchanged."""
    import papermill

    run_dir = spec.check_writable()
    out, tmp = run_dir / EXECUTED, run_dir / f".{EXECUTED}.{os.getpid()}.running.ipynb"
    failed = run_dir / FAILED
    try:
        papermill.execute_notebook(str(NOTEBOOK), str(tmp), parameters={"spec": spec.to_params()},
                                   cwd=str(ROOT), kernel_name="python3", progress_bar=False,
                                   log_output=False)
    except Exception as e:
        if tmp.exists():
            os.replace(tmp, failed)
        raise RuntimeError(f"fine-tuning {spec.backbone} on {spec.target} failed; the executed "
                           f"notebook is {failed}: {type(e).__name__}: {e}") from e
    os.replace(tmp, out)
    return out


def run_grid(backbones, targets, *, seeds=None, progress: bool = True, **common) -> pd.DataFrame:
    """Fine-tune every backbone on every target (and seed), skipping runs complete for exactly
    this request; one :func:`~camtrap_ssl.experiments.results.run_row` per run, plus
    ``executed`` (False when the run was already complete).

    ``backbones`` / ``targets``: lists or comma-separated strings; ``common``: any other
    :class:`RunSpec` field (profile, epochs, label_fraction, precision, ...).
    """
    return run_specs(grid_specs(backbones, targets, seeds, **common), progress)


def run_specs(specs: list[RunSpec], progress: bool = True) -> pd.DataFrame:
    """Execute each spec's notebook unless its run is complete; one row per spec."""
    # every dataset on disk, then every backbone's weights (the identities), before any run
    [spec.data_identity for spec in specs]
    [spec.run_dir() for spec in specs]
    rows = []
    for spec in progress_bar(specs, desc="grid", show=progress):
        rd = spec.run_dir()
        executed = not rundir.RunDir(rd).is_complete
        if executed:
            execute_run(spec, progress)
        if not rundir.RunDir(rd).is_complete:
            raise RuntimeError(f"{rd / EXECUTED} ran but {rd} holds no finished run "
                               f"(missing {rundir.RunDir(rd).missing})")
        summary = finished_summary(rd, spec.convergence_tolerance)
        rows.append({**run_row(spec, summary, rd), "executed": executed})
    return pd.DataFrame(rows)
