"""What ran: the code version and the environment recorded beside every result."""
from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

import torch


def code_version() -> str:
    """The git commit of the code that ran, with ``+dirty`` when the tree had local changes."""
    root = Path(__file__).resolve().parents[2]
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


# Set by the rehearsal of the paper path (camtrap_ssl.studies.rehearsal), whose data and official
# checkpoints are fabricated: published checksums (torchvision's sha256 prefixes, CIFAR's md5s)
# cannot match them, so they are not checked, and every record it writes says so.
REHEARSAL_ENV = "CAMTRAP_SSL_REHEARSAL"


def rehearsal() -> bool:
    """Whether this process runs the rehearsal on fabricated data and weights."""
    return os.environ.get(REHEARSAL_ENV, "") not in ("", "0")


def environment() -> dict:
    return {
        **({"rehearsal": "fabricated data and weights, published checksums not checked"}
           if rehearsal() else {}),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "platform": platform.platform(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "code_version": code_version(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
