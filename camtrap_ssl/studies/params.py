"""The four studies as papermill notebooks: their parameters, validation and execution.

Each study is one parameterized notebook in ``notebooks/``. Papermill only warns about a
parameter the notebook does not declare, and a wrong value would surface deep inside a long run;
so every parameter is checked here, against the notebook's own ``parameters`` cell, before a
kernel starts (:func:`check_request`), and again by the notebook itself, which passes its
``globals()`` to :func:`check_params` instead of re-listing its parameters. The run settings
(profile, seed, epochs, backbones, targets, runs root) are checked by the very functions that
check a :class:`~camtrap_ssl.experiments.spec.RunSpec`, so a study accepts exactly what
``camtrap-ssl finetune`` and ``grid`` accept.
"""
from __future__ import annotations

import ast
import json
import math
import os
from dataclasses import fields
from pathlib import Path

from camtrap_ssl.analysis.attribution import METHODS as ATTRIBUTION_METHODS
from camtrap_ssl.core import paths
from camtrap_ssl.data.images import EXTENSIONS, list_images
from camtrap_ssl.data.synthetic import FAMILY_DISTANCES
from camtrap_ssl.experiments import spec as S
from camtrap_ssl.experiments.backbones import BUDGETS
from camtrap_ssl.pretrain.methods import METHODS

SSL = [m for m in METHODS if m != "supervised"]

ROOT = paths.REPOSITORY
NOTEBOOKS = paths.NOTEBOOKS
# the studies that run (or reuse) every fine-tuning run over ``seeds``: all but the worlds
# gallery, whose ``seed`` draws the embedded world itself (the book passes ``seeds`` to these)
SEEDED_STUDIES = ("1", "2", "rq1", "3", "3-appendix", "4", "compare")
STUDIES = {  # name -> notebook, in the order the book runs them (3 and 4 reuse 1 and 2's runs)
    "worlds": "worlds.ipynb",  # the book's introduction: galleries of the embedded world
    "1": "study1_supervised.ipynb",
    "2": "study2_self_supervised.ipynb",
    "rq1": "rq1_when.ipynb",  # RQ1 along controlled axes: reuses Study 2's full-label runs
    "3": "study3_invariance.ipynb",
    "3-appendix": "study3_appendix.ipynb",
    "4": "study4_reasoning.ipynb",
    "compare": "compare_embedded.ipynb",  # camtrap-ssl compare on the stand-in as Camtrap DP
}


# The power design (book/power.md): runs per backbone on the targets whose key comparisons need
# more than the book's three seeds to reach a 95 % half-width of 3 top-1 points, per profile. A
# study's ``replicates=None`` takes its profile's entry (none: ``len(seeds)`` runs everywhere).
# The demo's are the Serengeti stand-in (Study 2's two key comparisons share their sd: 5 runs) and
# the two ends of RQ1's distance axis (one comparison each: 9 runs at distance 0, whose sd was
# 3.9 in six; 6 at distance 4, whose sd was 1.9 at fp32 and 2.5 at bf16 in five, where five runs
# gave +-3.06); supervised and SimCLR ship pretraining seeds 0-8, SwAV 0-4, so every run starts
# from its own pretraining seed.
REPLICATES = {"demo": {"syn_serengeti": 5, "syn_serengeti_d0": 9, "syn_serengeti_d4": 6}}


def replicates_for(profile, replicates=None) -> dict:
    """``replicates`` as given (a target given by path keyed by its absolute path, as a run spec
    keeps it), or (``None``) the power design's for ``profile`` (:data:`REPLICATES`, ``{}`` for a
    profile it does not name)."""
    if replicates is not None:
        return S.check_replicates(replicates)
    return dict(REPLICATES.get(getattr(profile, "name", profile), {}))


def _replicates(value, name):
    S.check_replicates(value, name)


def _rule(desc: str, ok):
    def check(value, name):
        if not ok(value):
            raise ValueError(f"{name}={value!r} is not allowed; {name} must be {desc}")
    return check


def _int_at_least(lo: int, optional: bool = False):
    return _rule(("None or " if optional else "") + f"an integer >= {lo}",
                 lambda v: (optional and v is None)
                 or (isinstance(v, int) and not isinstance(v, bool) and v >= lo))


def _each(check):
    def check_all(value, name):
        if not isinstance(value, (list, tuple)) or not value:
            raise ValueError(f"{name}={value!r} is not allowed; {name} must be a non-empty list")
        for v in value:
            check(v, name)
    return check_all


# what a study varies itself; every other RunSpec field is a run option passed through unchanged
STUDY_FIELDS = ("backbone", "target", "profile", "seed", "epochs", "runs_root",
                "convergence_tolerance")


def _check_run_options(value, name):
    """A study's ``run_options``: any RunSpec field the study does not vary (precision, lr,
    label_fraction, pretrain_seed, the protocol's parts, ...), checked by RunSpec itself."""
    allowed = [f.name for f in fields(S.RunSpec) if f.name not in STUDY_FIELDS]
    if not isinstance(value, dict) or any(k not in allowed for k in value):
        bad = sorted(set(value) - set(allowed)) if isinstance(value, dict) else value
        raise ValueError(f"{name}={value!r} is not allowed; {name} must be a dict of RunSpec "
                         f"fields the study does not vary, out of {allowed} (unknown: {bad})")
    # the values: RunSpec's own checks, on a camera-trap stand-in at the largest stored size (the
    # study's own targets and profile check them again when it builds its specs, before any run;
    # the data options of a target by path are checked there, against that target)
    data = ("images", "classes", "min_images", "split", "multi_label")
    S.RunSpec("supervised", "syn_serengeti", "paper", **{k: v for k, v in value.items() if k not in data})


def _seeded(value, name):
    """Backbones whose run of seed k starts from pretraining seed k: a list, possibly empty."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{name}={value!r} is not allowed; {name} must be a list of backbones "
                         "(possibly empty)")
    for v in value:
        S.check_backbone(v, name)


def rules() -> dict:
    """Parameter name -> ``check(value, name)`` (raises ``ValueError``), for every study notebook."""
    return {
        "profile": S.check_profile,
        "seed": S.check_seed,
        "epochs": S.check_epochs,
        "runs_root": S.check_runs_root,
        "convergence_tolerance": S.check_nonneg_number,
        "backbones": _each(S.check_backbone),
        "targets": _each(S.check_target),
        "ssl_backbone": S.check_backbone,
        "sl_backbone": S.check_backbone,
        "target": S.check_target,
        "images_per_class": _int_at_least(1, optional=True),
        "n_images": _int_at_least(1),
        "n_metric_images": _int_at_least(2),
        "featvis_steps": _int_at_least(0, optional=True),
        "live_explorers": _rule("True or False", lambda v: isinstance(v, bool)),
        "crop_view": _rule("True or False", lambda v: isinstance(v, bool)),
        "target_accuracy": _rule("a number in (0, 1] (the accuracy automated predictions keep)",
                                 lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                                 and 0 < v <= 1),
        "n_boot": _int_at_least(10),
        "methods": _each(_rule(f"a list of attribution methods, each one of {list(ATTRIBUTION_METHODS)}",
                               lambda v: v in ATTRIBUTION_METHODS)),
        "image_folder": _rule(f"None or an existing folder holding images ({', '.join(EXTENSIONS)})",
                              lambda v: v is None or (isinstance(v, (str, os.PathLike))
                                                      and Path(v).is_dir()
                                                      and len(list_images(v)) > 0)),
        # the command line's options beside the studies' (camtrap_ssl.cli)
        "pretrain_epochs": _int_at_least(1, optional=True),
        "limit": _int_at_least(1, optional=True),
        "max_minutes": _rule("None or a finite number > 0",
                             lambda v: v is None or (isinstance(v, (int, float))
                                                     and not isinstance(v, bool)
                                                     and math.isfinite(v) and v > 0)),
        "ssl_backbones": _each(_rule(f"a list of SSL pretraining methods, each one of {SSL}",
                                     lambda v: v in SSL)),
        "in_domain": _each(_rule(f"a list of SSL pretraining methods, each one of {SSL}",
                                 lambda v: v in SSL)),
        "distances": _each(_rule(f"a list of domain distances, each one of {list(FAMILY_DISTANCES)}",
                                 lambda v: v in FAMILY_DISTANCES and not isinstance(v, bool))),
        "label_fractions": _each(S.check_label_fraction),
        "pretraining_budgets": _each(_rule(f"a list of pretraining budgets in percent, each one "
                                           f"of {[*BUDGETS, 100]}",
                                           lambda v: v in (*BUDGETS, 100) and not isinstance(v, bool))),
        "run_options": _check_run_options,
        "label_target": S.check_target,
        "views": _each(_rule("a list of views, each one of ['frame', 'box']",
                             lambda v: v in ("frame", "box"))),
        "seeded_pretraining": _seeded,
        "replicates": _replicates,
        "seeds": _rule("a non-empty list of distinct integers >= 0",
                       lambda v: isinstance(v, (list, tuple)) and len(v) > 0
                       and len(set(v)) == len(v)
                       and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v)),
    }


def _study(study) -> str:
    study = str(study)
    if study not in STUDIES:
        raise ValueError(f"study={study!r} is not a study; allowed: {sorted(STUDIES)}")
    return study


def notebook_parameters(study: str | int) -> dict:
    """The parameters a study notebook declares (name -> default), read from its tagged cell.

    Read as literals from the notebook file (what papermill's ``inspect_notebook`` reports),
    without papermill, so a notebook can check itself cheaply.
    """
    nb = json.loads((NOTEBOOKS / STUDIES[_study(study)]).read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    out = {}
    for node in ast.parse("".join(cell["source"])).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


def check_params(study: str | int, namespace: dict) -> dict:
    """Check the parameters a study declares, taking their values from ``namespace`` (the
    notebook's ``globals()``); return them, with ``runs_root`` resolved through
    :func:`camtrap_ssl.core.paths.runs_root` (``None``: ``$CAMTRAP_SSL_RUNS`` or ``runs/``).

    ``replicates`` comes back resolved too (:func:`replicates_for`: ``None`` is the profile's
    power design). Raises ``ValueError`` naming the first bad parameter and what it may be.
    """
    study = _study(study)
    declared = notebook_parameters(study)
    missing = sorted(set(declared) - set(namespace))
    if missing:
        raise ValueError(f"study {study}: parameter {missing[0]!r} has no value")
    values = {name: namespace[name] for name in declared}
    checks = rules()
    for name, value in values.items():
        if name not in checks:
            raise ValueError(f"study {study}: parameter {name!r} has no check in "
                             "camtrap_ssl.studies.params.rules()")
        try:
            checks[name](value, name)
        except ValueError as e:
            raise ValueError(f"study {study}: {e}") from None
    if "runs_root" in values:
        values["runs_root"] = str(paths.runs_root(values["runs_root"]))
    if "replicates" in values:
        values["replicates"] = replicates_for(values.get("profile"), values["replicates"])
    return values


def check_request(study: str | int, params: dict) -> dict:
    """Check parameters asked for a study run: unknown names refused with the declared ones,
    values as :func:`check_params` (over the notebook's defaults)."""
    study = _study(study)
    declared = notebook_parameters(study)
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ValueError(f"study {study} has no parameter {unknown[0]!r}; "
                         f"its parameters are {sorted(declared)}")
    return check_params(study, {**declared, **params})


def execute_study(study: str | int, output_dir: str | os.PathLike, progress: bool = True, **params) -> Path:
    """Validate, then run one study notebook with papermill; return the executed notebook's path.

    A failed execution leaves ``<notebook>.failed.ipynb`` (the cells up to the error, with it)
    and raises ``RuntimeError`` naming that file.
    """
    import papermill as pm

    study = str(study)
    check_request(study, params)
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / STUDIES[study]
    tmp = out.with_name(f".{out.name}.{os.getpid()}.running.ipynb")
    failed = out.with_suffix(".failed.ipynb")
    try:
        pm.execute_notebook(str(NOTEBOOKS / STUDIES[study]), str(tmp), parameters=params,
                            cwd=str(ROOT), progress_bar=progress, kernel_name="python3")
    except Exception as e:
        if tmp.exists():
            os.replace(tmp, failed)
        why = f"{getattr(e, 'ename', type(e).__name__)}: {getattr(e, 'evalue', e)}"
        raise RuntimeError(f"study {study} failed ({why[:300]}); the partly executed notebook "
                           f"is {failed}") from e
    failed.unlink(missing_ok=True)
    os.replace(tmp, out)  # a failed execution never leaves a notebook that looks finished
    return out
