"""The install step of `make book`, pip against uv, side by side in one run.

Each variant builds a fresh venv in a temporary folder and installs the project with its test
extras, byte code included (the kernels of the book import what the install compiled: without
it every page recompiles torch). uv starts with an empty cache of its own, as on a fresh
machine. The order alternates (pip, uv, uv, pip) so that the disk cache favours neither.

    python benchmarks/bench_install.py            # about 7 minutes on 2 cores

Measured 2026-12-07 on 2 AMD EPYC cores (local wheels, torch 2.14.1 with its CUDA libraries):
pip 132.0 and 139.6 s, uv 60.8 and 66.4 s; pip/uv = 2.14. uv's own account of one install:
265 packages prepared in 31 s, linked in 2 s, 19,247 files byte-compiled in 25 s.

The uv variant is the Makefile's own install step (``make VENV=... <venv>/.installed``); the pip
variant is the step it replaced (``pip install --upgrade pip``, then ``pip install -e '.[test]'``).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], **kw) -> None:
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, **kw)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}{out.stderr}")


def install(variant: str, where: Path) -> float:
    venv = where / f"venv-{variant}"
    env = {**os.environ, "UV_CACHE_DIR": str(where / f"uv-cache-{variant}")}
    t0 = time.perf_counter()
    _run([sys.executable, "-m", "venv", str(venv)])
    if variant == "pip":
        _run([str(venv / "bin/python"), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
        _run([str(venv / "bin/python"), "-m", "pip", "install", "--quiet", "-e", ".[test]"])
    else:
        _run(["make", "--no-print-directory", f"VENV={venv}", f"{venv}/.installed"], env=env)
    return time.perf_counter() - t0


def main() -> None:
    times: dict[str, list[float]] = {"pip": [], "uv": []}
    with tempfile.TemporaryDirectory(prefix="bench_install_") as tmp:
        for variant in ("pip", "uv", "uv", "pip"):
            where = Path(tmp) / f"{variant}{len(times[variant])}"
            where.mkdir()
            seconds = install(variant, where)
            times[variant].append(seconds)
            print(f"{variant:4s} {seconds:6.1f} s", flush=True)
            shutil.rmtree(where)
    pip, uv = (sum(times[v]) / len(times[v]) for v in ("pip", "uv"))
    print(f"mean: pip {pip:.1f} s, uv {uv:.1f} s; pip/uv = {pip / uv:.2f}")


if __name__ == "__main__":
    main()
