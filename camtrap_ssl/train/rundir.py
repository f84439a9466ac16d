"""Run directories: the folder every reported number comes from.

Every number in the book comes from a run directory: the parameters that produced it, the
per-epoch metrics, a summary and a checkpoint. Files are written atomically (a temporary file in
the same folder, then ``os.replace``), and ``summary.json`` is written last, so a run that was
killed half-way never looks complete: ``is_complete`` checks for the summary alone.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from camtrap_ssl.core.fileio import atomic_write_bytes, atomic_write_json, read_json

PARAMS = "params.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.pt"


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
