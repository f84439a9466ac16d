"""The paper path rehearsed end to end, on fabricated data and weights in the published formats.

A researcher with a GPU, the LILA datasets and the official checkpoints is the paper path's only
user; without this they would be the first to run it whole, after a day of downloads. The
rehearsal runs exactly the commands of book/reproduce.md's "Running the study at paper scale",
with the ``paper`` profile and only the budget reduced (epochs, images per class, backbones and
targets, images behind Study 3/4's figures), against a miniature of everything the paper path
reads:

1. **fabricate** (:mod:`camtrap_ssl.data.fabricate`, :mod:`camtrap_ssl.models.fabricate`): LILA's
   Serengeti, NACTI and ENA24 as their mirror serves them (2048 x 1536 JPEGs with the information
   strip, nested paths, sequences, locations, a truncated file), Swanson et al.'s gold standard,
   CIFAR-10/100 in torchvision's layout, and the official checkpoints in each publisher's layout;
2. **download** through ``camtrap-ssl data download`` from a loopback server
   (:func:`camtrap_ssl.core.loopback.serve_folder`) standing in for LILA, and the checkpoints
   through ``CAMTRAP_SSL_WEIGHTS_URL_<NAME>`` (the same resumable download code as the real URLs);
3. **grid**, the **study notebooks** (``camtrap-ssl study``), the **book** pages built from them,
   and the **torchrun** launcher with two gloo processes on one paper target.

Every step is a subprocess with ``$CAMTRAP_SSL_DATA``/``_WEIGHTS``/``_RUNS``/``_CACHE`` pointing
into the work folder (nothing lands in the repository or the user's caches) and
``$CAMTRAP_SSL_REHEARSAL`` set, so the published checksums are not asked of fabricated files and
every record says it is a rehearsal. Its timings go to ``<workdir>/rehearsal.json``.

CIFAR is the exception to "through the download code": torchvision downloads it from a URL
compiled into torchvision, so the rehearsal writes it where that download would put it.

``python -m camtrap_ssl.studies.rehearsal --workdir DIR`` (``make rehearsal``).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from camtrap_ssl.core import fileio, paths, provenance
from camtrap_ssl.core.loopback import serve_folder
from camtrap_ssl.data import fabricate as data_fab
from camtrap_ssl.data.lila import CATALOGUE
from camtrap_ssl.models import fabricate as model_fab
from camtrap_ssl.models import get_entry
from camtrap_ssl.studies.book import BOOK, VENDOR

__all__ = ["BUDGET", "CHECKPOINTS", "commands", "rehearse", "main"]

# The budget, the only thing reduced from the paper profile. A ResNet-50 run costs about a minute
# on two shared CPU cores whatever its data (model, optimizer state, a 300 MB checkpoint), so
# three runs train: the SL/SSL pair on Serengeti and supervised on ENA24 (the 50-epoch regime);
# the torchrun launcher trains a fourth, on CIFAR-10. Every other published checkpoint layout
# and every other target is downloaded and loaded by the paper path's own code (steps
# "weights" and "targets"), not trained. Study 4 leaves out Score-CAM, which at ResNet-50's 2,048
# layer4 channels takes thousands of forward passes per image (benchmarks/gpu_check.py times it
# on CUDA).
BUDGET = {
    "epochs": 1,
    "seeds": [0],  # one fine-tuning seed: the intervals need three, the paths under test do not
    "serengeti_per_class": 8,  # `data download --per-class`: frames per class fetched
    "sl": "supervised_r50",
    "ssl": "barlowtwins_r50",
    "more_checkpoints": ["supervised_r152", "swav_r50", "deepclusterv2_r50", "simclrv2_r50_1x_sk0"],
    "trained_targets": ["serengeti", "ena24"],
    "loaded_targets": ["serengeti", "nacti", "ena24", "cifar10", "cifar100"],
    "launcher_target": "cifar10",
    "study3": {"images_per_class": 1, "n_boot": 20},
    "study4": {"n_images": 2, "n_metric_images": 2, "featvis_steps": 1,
               "methods": ["saliency", "guided_gradcam"]},  # a gradient and a CAM method
}
CHECKPOINTS = [BUDGET["sl"], BUDGET["ssl"], *BUDGET["more_checkpoints"]]


def _env(work: Path, url: str) -> dict:
    env = dict(os.environ)
    env.update({"CAMTRAP_SSL_DATA": str(work / "data"), "CAMTRAP_SSL_WEIGHTS": str(work / "weights"),
                "CAMTRAP_SSL_RUNS": str(work / "runs"), "CAMTRAP_SSL_CACHE": str(work / "cache"),
                provenance.REHEARSAL_ENV: "1",
                "PYTHONPATH": os.pathsep.join([str(paths.REPOSITORY), env.get("PYTHONPATH", "")]),
                "MPLBACKEND": ""})
    env.pop("MPLBACKEND")  # ipykernel shows figures inline only when it is unset
    for name in CHECKPOINTS:
        filename = get_entry(name).weights.filename
        env[f"CAMTRAP_SSL_WEIGHTS_URL_{name.upper()}"] = f"{url}checkpoints/{filename}"
    return env


def commands(work: Path, url: str) -> list[tuple[str, list[str]]]:
    """(step name, argv) of the rehearsal, in order: what book/reproduce.md's walkthrough runs."""
    b, py = BUDGET, sys.executable
    cli = [py, "-m", "camtrap_ssl.cli"]
    data = work / "data"
    paper = ["-p", "profile", '"paper"', "-p", "epochs", str(b["epochs"])]
    seeds = ["-p", "seeds", json.dumps(b["seeds"])]  # every study runs (or reuses) each seed's runs
    pair = ["-p", "ssl_backbone", json.dumps(b["ssl"]), "-p", "sl_backbone", json.dumps(b["sl"]),
            "-p", "target", '"serengeti"']
    out = ["--output-dir", str(work / "book" / "studies")]
    steps = [
        ("download serengeti", cli + ["data", "download", "serengeti", "--dest", str(data / "serengeti"),
                                      "--per-class", str(b["serengeti_per_class"]), "--base-url", url]),
        ("download nacti", cli + ["data", "download", "nacti", "--dest", str(data / "nacti"),
                                  "--base-url", url]),
        ("download ena24", cli + ["data", "download", "ena24", "--dest", str(data / "ena24"),
                                  "--base-url", url]),
        ("weights", [py, "-c", "import sys; from camtrap_ssl.models import create_model\n"
                     "for n in sys.argv[1:]: print(n, create_model(n, pretrained=True).weights_info)",
                     *CHECKPOINTS]),
        ("targets", [py, "-c", "import sys; from camtrap_ssl.data.targets import get_target\n"
                     "for n in sys.argv[1:]:\n t = get_target(n, 'paper')\n"
                     " print(n, len(t.train), len(t.val), t.train[0][0].shape, t.identity['bad_files'])",
                     *b["loaded_targets"]]),
        ("grid", cli + ["grid", "--backbones", b["sl"], "--targets", ",".join(b["trained_targets"]),
                        "--profile", "paper", "--epochs", str(b["epochs"]), "--quiet"]),
        ("study worlds", cli + ["study", "worlds", "-p", "profile", '"tiny"'] + out),
        ("study 1", cli + ["study", "1"] + paper + seeds + ["-p", "backbones", json.dumps([b["sl"]]),
                                                     "-p", "targets", json.dumps(b["trained_targets"])] + out),
        ("study 2", cli + ["study", "2"] + paper + seeds + ["-p", "backbones", json.dumps([b["sl"], b["ssl"]]),
                                                     "-p", "targets", '["serengeti"]'] + out),
        ("study 3", cli + ["study", "3"] + paper + pair + seeds
         + [a for k, v in b["study3"].items() for a in ("-p", k, json.dumps(v))] + out),
        ("study 3-appendix", cli + ["study", "3-appendix", "-p", "profile", '"paper"'] + pair + seeds
         + ["-p", "n_boot", json.dumps(b["study3"]["n_boot"])] + out),
        ("study 4", cli + ["study", "4"] + paper + pair + seeds
         + [a for k, v in b["study4"].items() for a in ("-p", k, json.dumps(v))] + out),
        # RQ1's axes exist only in the embedded world (they are generated): its page runs on tiny,
        # as the worlds gallery does, so that the book has every page
        ("study rq1", cli + ["study", "rq1", "-p", "profile", '"tiny"', "-p", "seeds", "[0, 1]",
                             "-p", "distances", "[0, 4]", "-p", "label_fractions", "[0.2, 1.0]",
                             "-p", "pretraining_budgets", "[50, 100]"] + out),
        # the own-data page compares the embedded backbones on the embedded world written as
        # Camtrap DP: generated too, so it runs on tiny as well
        ("study compare", cli + ["study", "compare", "-p", "profile", '"tiny"'] + out),
        ("book", [py, "-c", "import sys; from pathlib import Path; from camtrap_ssl.studies.book "
                  "import build_html; print(build_html(Path(sys.argv[1])))", str(work / "book")]),
        ("torchrun", [py, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "camtrap_ssl.experiments.launch", "--backbone", b["sl"],
                      "--target", b["launcher_target"], "--profile", "paper",
                      "--epochs", str(b["epochs"]), "--backend", "gloo"]),
    ]
    return steps


def fabricate(work: Path) -> dict:
    """Write the LILA mirror, the checkpoints and CIFAR under ``work``; sizes in bytes."""
    srv = work / "srv"
    t0 = time.time()
    serengeti = data_fab.publish_lila(srv, "serengeti", per_class=4, n_locations=3)
    data_fab.publish_lila(srv, "nacti", per_class=2, n_locations=2)
    data_fab.publish_lila(srv, "ena24", per_class=2, n_locations=2)
    # Swanson et al.'s files come from Dryad, not LILA: the user puts them beside the download
    gold = data_fab.write_gold_standard(work / "dryad", serengeti)
    for name in ("cifar10", "cifar100"):
        data_fab.write_cifar(work / "data" / name, name, per_batch=10)
    for name in CHECKPOINTS:
        model_fab.write_official_checkpoint(name, srv / "checkpoints")
    sizes = {"lila_bytes": sum(f.stat().st_size for n in ("serengeti", "nacti", "ena24") for f in
                               (srv / CATALOGUE[n]["image_base"]).rglob("*") if f.is_file()),
             "checkpoint_bytes": sum(f.stat().st_size for f in (srv / "checkpoints").iterdir())}
    return {"seconds": round(time.time() - t0, 1), **sizes, "gold_standard": [str(g) for g in gold]}


def _prepare_book(work: Path) -> None:
    """A copy of the book's sources whose ``studies/`` the study steps fill."""
    shutil.copytree(BOOK, work / "book", ignore=shutil.ignore_patterns(
        "_build", VENDOR, ".vendor-*", "*.ipynb", "build_record.json", ".ipynb_checkpoints"))
    (work / "book" / "studies").mkdir(exist_ok=True)


def rehearse(workdir, steps: list[str] | None = None, progress: bool = True) -> dict:
    """Fabricate, serve and run every step (or those named in ``steps``); return the record.

    ``workdir`` must be new or empty, unless it holds an earlier rehearsal and ``steps`` are
    named: those then rerun on its files (after fixing what made one fail).

    Stops at the first failing step with ``RuntimeError`` naming it and the tail of its output;
    the record so far is in ``<workdir>/rehearsal.json`` either way.
    """
    work = Path(workdir).resolve()
    previous = work / "rehearsal.json"
    if steps and previous.is_file():  # rerun some steps on what an earlier rehearsal fabricated
        record = json.loads(previous.read_text())
    elif work.exists() and any(work.iterdir()):
        raise FileExistsError(f"workdir={str(work)!r} is not empty: the rehearsal starts from "
                              "nothing (or, holding an earlier rehearsal, reruns named steps)")
    else:
        work.mkdir(parents=True, exist_ok=True)
        record = {"budget": BUDGET, "fabricate": fabricate(work), "steps": {},
                  **provenance.environment()}
        _prepare_book(work)
    with serve_folder(work / "srv") as url:
        env = _env(work, url)
        planned = commands(work, url)
        unknown = sorted(set(steps or []) - {n for n, _ in planned})
        if unknown:
            raise ValueError(f"steps={unknown} unknown; allowed: {[n for n, _ in planned]}")
        for name, argv in planned:
            if steps and name not in steps:
                continue
            if name == "targets":  # the gold standard, fetched from Dryad, beside the LILA download
                for g in record["fabricate"]["gold_standard"]:
                    shutil.copy2(g, work / "data" / "serengeti")
            if progress:
                print(f"[rehearsal] {name}: {' '.join(argv[1:])[:160]}", flush=True)
            t0 = time.time()
            proc = subprocess.run(argv, env=env, cwd=work, capture_output=True, text=True)
            log = work / "logs" / f"{name.replace(' ', '_')}.log"
            log.parent.mkdir(exist_ok=True)
            log.write_text(proc.stdout + proc.stderr)
            record["steps"][name] = {"seconds": round(time.time() - t0, 1), "rc": proc.returncode,
                                     "log": str(log)}
            fileio.atomic_write_json(work / "rehearsal.json", record)
            if proc.returncode != 0:
                tail = (proc.stdout + proc.stderr)[-3000:]
                raise RuntimeError(f"rehearsal step {name!r} failed (exit {proc.returncode}):\n{tail}")
            if progress:
                print(f"[rehearsal] {name}: {record['steps'][name]['seconds']} s", flush=True)
    record["seconds"] = round(sum(s["seconds"] for s in record["steps"].values())
                              + record["fabricate"]["seconds"], 1)
    fileio.atomic_write_json(work / "rehearsal.json", record)
    return record


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m camtrap_ssl.studies.rehearsal",
                                description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True, type=Path, help="an empty or new folder")
    p.add_argument("--steps", default=None, help="comma-separated subset of the steps")
    args = p.parse_args(argv)
    try:
        record = rehearse(args.workdir, args.steps.split(",") if args.steps else None)
    except (ValueError, FileExistsError, RuntimeError) as e:
        print(f"rehearsal: {e}", file=sys.stderr)
        return 1
    print(json.dumps({k: v["seconds"] for k, v in record["steps"].items()}, indent=1))
    print(f"rehearsal: all steps passed in {record['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
