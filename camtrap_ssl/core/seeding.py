"""Random draws that depend on the run's seed alone, never on what the process did before.

torch's global generator is seeded randomly per process, so any draw taken from it (a fresh
classifier head's initialisation, above all) makes the same command give different numbers in
two processes. :func:`seeded` runs a block with the global generators (CPU, and CUDA where
present) forked and seeded from ``seed``, and restores them afterwards, so the block's draws are a
function of ``seed`` and nothing outside the block is disturbed.
"""
from __future__ import annotations

import contextlib
import zlib

import torch


def derive_seed(seed: int, *purpose: str | int) -> int:
    """A seed for one purpose of a run (``derive_seed(seed, "head")``), stable across processes."""
    text = ":".join(str(p) for p in (seed, *purpose))
    return zlib.crc32(text.encode())


@contextlib.contextmanager
def seeded(seed: int):
    """Run the block with torch's global generators seeded from ``seed``, then restore them."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
