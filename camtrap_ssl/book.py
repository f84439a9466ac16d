"""Build the Jupyter Book: execute every study notebook with papermill, then render the outputs.

The book never executes a notebook itself (``execute_notebooks: off``); it shows what papermill
ran with recorded parameters, so every figure on a page traces back to a run.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import runs
from .studies import ROOT, STUDIES, execute_study

BOOK = ROOT / "book"
EXECUTED = BOOK / "studies"


def run_studies(profile: str = "demo", seed: int = 0, runs_root: str | None = None,
                studies=tuple(STUDIES), output_dir: Path = EXECUTED) -> dict:
    """Execute the notebooks in order (1 and 2 train the runs that 3 and 4 reuse)."""
    timings = {}
    for number in studies:
        params = {"profile": profile, "seed": seed}
        if number != "worlds":
            params["runs_root"] = str(runs_root or Path("runs"))
        t0 = time.time()
        print(f"[book] study {number}: {STUDIES[number]}", flush=True)
        execute_study(number, output_dir, progress=False, **params)
        timings[STUDIES[number]] = round(time.time() - t0, 1)
    runs.atomic_write_json(output_dir / "build_record.json",
                           {"profile": profile, "seed": seed, "seconds": timings, **runs.environment()})
    return timings


def jupyter_book_executable() -> str:
    exe = Path(sys.executable).with_name("jupyter-book")
    return str(exe) if exe.exists() else (shutil.which("jupyter-book") or "jupyter-book")


def build_html(book_dir: Path = BOOK) -> Path:
    """Render ``book_dir`` with Jupyter Book 1.x into ``book_dir/_build/html``."""
    missing = [f"studies/{name}" for name in STUDIES.values() if not (book_dir / "studies" / name).exists()]
    if missing:
        raise FileNotFoundError(f"executed notebooks missing in {book_dir}: {missing}; "
                                "run the studies first (camtrap-ssl book without --skip-studies)")
    subprocess.run([jupyter_book_executable(), "build", str(book_dir), "--quiet"], check=True)
    html = book_dir / "_build" / "html"
    return html


def build_book(profile: str = "demo", seed: int = 0, run_studies_first: bool = True,
               runs_root: str | None = None) -> Path:
    if run_studies_first:
        run_studies(profile, seed, runs_root)
    html = build_html()
    print(json.dumps({"html": str(html / "index.html")}))
    return html
