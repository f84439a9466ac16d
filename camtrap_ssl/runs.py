"""Run directories and provenance records.

Every number in the book comes from a run directory: the parameters that produced it, the
per-epoch metrics, a summary and a checkpoint. Files are written atomically (a temporary file in
the same folder, then ``os.replace``), and ``summary.json`` is written last, so a run that was
killed half-way never looks complete: ``is_complete`` checks for the summary alone.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

PARAMS = "params.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.pt"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; caches and run records are shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)


def code_version() -> str:
    """The git commit of the code that ran, with ``+dirty`` when the tree had local changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not sha:
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def environment() -> dict:
    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "platform": platform.platform(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "code_version": code_version(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def fingerprint(obj: Any) -> str:
    """A short stable hash of a JSON-serialisable object (parameters, data identity)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class RunDir:
    """A folder holding one run: params, per-epoch metrics, summary, checkpoint."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def is_complete(self) -> bool:
        return self.file(SUMMARY).exists()

    def write_params(self, params: dict) -> None:
        atomic_write_json(self.file(PARAMS), params)

    def params(self) -> dict:
        return read_json(self.file(PARAMS))

    def write_metrics(self, rows: list[dict]) -> None:
        """Rewrite the whole metrics log atomically: a crash never leaves half a line."""
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
        atomic_write_bytes(self.file(METRICS), text.encode())

    def metrics(self) -> list[dict]:
        p = self.file(METRICS)
        if not p.exists():
            return []
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]

    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.file(SUMMARY), summary)

    def summary(self) -> dict:
        return read_json(self.file(SUMMARY))


def find_runs(root: str | os.PathLike, complete_only: bool = True) -> list[RunDir]:
    """Every run directory below ``root`` (those with a params file), sorted by path."""
    root = Path(root)
    if not root.exists():
        return []
    runs = [RunDir(p.parent) for p in sorted(root.rglob(PARAMS))]
    return [r for r in runs if r.is_complete or not complete_only]
