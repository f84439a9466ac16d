"""The four studies as papermill notebooks: their parameters, validation and execution.

Each study is one parameterized notebook in ``notebooks/``. Papermill only warns about a
parameter the notebook does not declare, and a wrong value would surface deep inside a long run;
so every parameter is checked here, against the notebook's own ``parameters`` cell and against the
allowed values below, before a kernel starts.
"""
from __future__ import annotations

import os
from pathlib import Path

from camtrap_ssl.core import paths
from camtrap_ssl.core.profiles import PROFILES
from camtrap_ssl.data.embedded import TARGETS
from camtrap_ssl.data.paper import PAPER_TARGETS
from camtrap_ssl.experiments.backbones import backbone_names, is_backbone

ROOT = paths.REPOSITORY
NOTEBOOKS = paths.NOTEBOOKS
STUDIES = {  # name -> notebook, in the order the book runs them (3 and 4 reuse 1 and 2's runs)
    "worlds": "worlds.ipynb",  # the book's introduction: galleries of the embedded world
    "1": "study1_supervised.ipynb",
    "2": "study2_self_supervised.ipynb",
    "3": "study3_invariance.ipynb",
    "3-appendix": "study3_appendix.ipynb",
    "4": "study4_reasoning.ipynb",
}


def allowed_values() -> dict:
    """Parameter name -> (description, check) shared by all study notebooks."""
    def one_of(options):
        options = list(options)
        return (f"one of {options}", lambda v: v in options)

    def subset_of(options):
        options = list(options)
        return (f"a list drawn from {options}",
                lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(x in options for x in v))

    def int_at_least(lo):
        return (f"an integer >= {lo}", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo)

    def optional(spec):
        desc, ok = spec
        return (f"None or {desc}", lambda v: v is None or ok(v))

    return {
        "profile": one_of(PROFILES),
        "seed": int_at_least(0),
        "seeds": ("a non-empty list of distinct integers >= 0",
                  lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and len(set(v)) == len(v)
                  and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v)),
        "backbones": subset_of(backbone_names()),
        "datasets": subset_of([*TARGETS, *PAPER_TARGETS]),
        "epochs": optional(int_at_least(1)),
        "ssl_backbone": (f"one of {backbone_names()} or a pretraining checkpoint file (.pt)", is_backbone),
        "sl_backbone": (f"one of {backbone_names()} or a pretraining checkpoint file (.pt)", is_backbone),
        "dataset": one_of([*TARGETS, *PAPER_TARGETS]),
        "images_per_class": optional(int_at_least(1)),
        "n_images": int_at_least(1),
        "n_metric_images": int_at_least(2),
        "featvis_steps": optional(int_at_least(0)),
        "live_explorers": ("True or False", lambda v: isinstance(v, bool)),
        "n_boot": int_at_least(10),
        "convergence_tolerance": ("a number >= 0", lambda v: isinstance(v, (int, float)) and v >= 0),
        "image_folder": ("None or an existing folder of images",
                         lambda v: v is None or Path(v).is_dir()),
        "runs_root": ("a folder path (string)", lambda v: isinstance(v, str) and len(v) > 0),
    }


def check_params(study: str | int, params: dict, declared: dict | None = None) -> None:
    """Raise ``ValueError`` naming the first unknown or out-of-range parameter."""
    study = str(study)
    if study not in STUDIES:
        raise ValueError(f"study={study!r}; allowed: {sorted(STUDIES)}")
    if declared is None:
        declared = notebook_parameters(study)
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ValueError(f"study {study} has no parameter {unknown[0]!r}; "
                         f"its parameters are {sorted(declared)}")
    rules = allowed_values()
    for name, value in params.items():
        if name in rules:
            desc, ok = rules[name]
            if not ok(value):
                raise ValueError(f"parameter {name}={value!r} is out of range: it must be {desc}")


def notebook_parameters(study: str | int) -> dict:
    """The parameters a study notebook declares (name -> default), read from its tagged cell."""
    import papermill as pm

    info = pm.inspect_notebook(str(NOTEBOOKS / STUDIES[str(study)]))
    # papermill reports defaults as source text; evaluate the literals
    import ast
    return {name: ast.literal_eval(p["default"]) for name, p in info.items()}


def execute_study(study: str | int, output_dir: str | os.PathLike, progress: bool = True, **params) -> Path:
    """Validate, then run one study notebook with papermill; return the executed notebook's path."""
    import papermill as pm

    study = str(study)
    check_params(study, params)
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / STUDIES[study]
    tmp = out.with_name("." + out.name + ".running.ipynb")
    pm.execute_notebook(str(NOTEBOOKS / STUDIES[study]), str(tmp), parameters=params,
                        cwd=str(ROOT), progress_bar=progress, kernel_name="python3")
    os.replace(tmp, out)  # a failed execution never leaves a notebook that looks finished
    return out
