"""Run directories: the folder every reported number comes from.

Every number in the book comes from a run directory: the parameters that produced it, the
per-epoch metrics, a summary and a checkpoint. Files are written atomically (a temporary file in
the same folder, then ``os.replace``), and ``summary.json`` is written last, so a run that was
killed half-way never looks complete. A run is *finished* when its parameters, its summary and its
final checkpoint are all there (:attr:`RunDir.is_complete`, :func:`finished_run`): the one
definition every layer uses, since a summary without the weights cannot be explained or predicted
with, and a reader must not be told a run is reusable when it is not.

One writer at a time: :func:`locked` holds an OS file lock (``fcntl.flock`` on ``.lock`` in the
run directory) for as long as a process trains into it. The kernel releases a ``flock`` when its
holder dies, however it dies, so a SIGKILL never leaves a lock behind; that is why it is an OS lock
and not a marker file. The lock file keeps the holder's PID, so a process that waits (or gives up)
can say who holds it. It is never deleted: deleting a lock file lets two processes lock two
different files of the same name.
"""
from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from camtrap_ssl.core.fileio import atomic_write_bytes, atomic_write_json, read_json

PARAMS = "params.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.pt"
# the final evaluation's per-image probabilities (train.predictions); not in FINISHED: runs
# finished before it existed lack it and stay reusable
PREDICTIONS = "predictions.npz"
LOCK = ".lock"
RECORDS = (SUMMARY, PREDICTIONS, CHECKPOINT, METRICS, PARAMS)  # what a restart removes, summary first
FINISHED = (PARAMS, SUMMARY, CHECKPOINT)  # what a finished run holds


class RunDir:
    """A folder holding one run: params, per-epoch metrics, summary, checkpoint."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def missing(self) -> list[str]:
        """The files of a finished run (:data:`FINISHED`) this folder lacks."""
        return [f for f in FINISHED if not self.file(f).exists()]

    @property
    def is_complete(self) -> bool:
        return not self.missing

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

    def write_predictions(self, data: bytes) -> None:
        """Write ``predictions.npz`` (the bytes of :func:`camtrap_ssl.train.predictions.npz_bytes`)."""
        atomic_write_bytes(self.file(PREDICTIONS), data)

    def predictions(self) -> dict[str, np.ndarray]:
        """The final evaluation's per-image arrays: ``probs`` (float16 N x C softmax), ``labels``
        and, where the validation set had them, ``ids``, ``sequence_ids``, ``locations``. A
        ``FileNotFoundError`` for runs that predate the file (fine-tune them again to get it)."""
        path = self.file(PREDICTIONS)
        if not path.exists():
            raise FileNotFoundError(f"{self.path} has no {PREDICTIONS} (runs finished before it was "
                                    "saved lack it)")
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}

    def clear(self) -> None:
        """Remove the run's records (summary first, so it never looks complete on the way)."""
        for name in RECORDS:
            self.file(name).unlink(missing_ok=True)


def finished_run(path: str | os.PathLike) -> RunDir:
    """The run of ``path`` (a run directory, or the ``checkpoint.pt`` inside one), checked to be
    finished; else a one-line ``FileNotFoundError`` naming it and what it lacks."""
    path = Path(path)
    run_dir = path.parent if path.is_file() else path
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run {str(path)!r} does not exist (expected a run directory "
                                f"or its {CHECKPOINT})")
    run = RunDir(run_dir)
    if run.missing:
        raise FileNotFoundError(f"{run_dir} is not a finished fine-tuning run (missing {run.missing})")
    return run


def remove_orphans(path: str | os.PathLike) -> list[Path]:
    """Delete the temporaries of :mod:`camtrap_ssl.core.fileio` (``.<name>.<random>.tmp``) that a
    killed writer left in ``path``; at paper scale each is the size of a checkpoint.

    Only safe while holding :func:`locked`: the lock holder is the only writer of a run directory.
    """
    removed = []
    for p in Path(path).glob(".*.tmp"):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _holder(lock_file: Path) -> str:
    try:
        pid = lock_file.read_text().strip()
    except OSError:
        pid = ""
    return f"PID {pid}" if pid else "another process"


@contextmanager
def locked(path: str | os.PathLike, timeout: float | None = None, poll: float = 0.2):
    """Hold the run directory ``path`` exclusively; wait for another holder (at most ``timeout``
    seconds, ``None``: as long as it takes), then remove orphaned temporaries.

    Raises ``TimeoutError`` naming the PID that holds the lock when ``timeout`` runs out.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    lock_file = path / LOCK
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        told = None
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(lock_file)
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"run directory {path} is being written by {holder} (it holds "
                        f"{lock_file}); gave up after {timeout:g} s. Wait for that process to "
                        "finish (its run is then reused) or stop it") from None
                if holder != told:  # said once per holder
                    print(f"waiting for {holder}, which is writing {path}", file=sys.stderr,
                          flush=True)
                    told = holder
                time.sleep(poll)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        remove_orphans(path)
        yield path
    finally:
        os.close(fd)  # releases the lock


def find_runs(root: str | os.PathLike, complete_only: bool = True) -> list[RunDir]:
    """Every run directory below ``root`` (those with a params file), sorted by path."""
    root = Path(root)
    if not root.exists():
        return []
    runs = [RunDir(p.parent) for p in sorted(root.rglob(PARAMS))]
    return [r for r in runs if r.is_complete or not complete_only]
