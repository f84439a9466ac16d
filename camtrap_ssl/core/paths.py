"""Where the project keeps things on disk: the one place that reads the ``CAMTRAP_SSL_*`` variables.

| variable | what | default |
|---|---|---|
| ``CAMTRAP_SSL_CACHE`` | generated worlds, retrained backbones | ``~/.cache/camtrap_ssl`` |
| ``CAMTRAP_SSL_RUNS`` | fine-tuning run directories | ``<repository>/runs`` |
| ``CAMTRAP_SSL_DATA`` | the study's real datasets, one folder each | ``./data`` |
| ``CAMTRAP_SSL_WEIGHTS`` | downloaded official checkpoints | ``<cache>/weights`` |

Every entry point (CLI, grid, launcher, notebooks, the book) resolves a path through these
functions, so one variable moves the same thing everywhere.
"""
from __future__ import annotations

import os
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPOSITORY / "notebooks"


def _env(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """Generated worlds and retrained backbones: ``$CAMTRAP_SSL_CACHE`` or ``~/.cache/camtrap_ssl``."""
    return _env("CAMTRAP_SSL_CACHE") or Path.home() / ".cache" / "camtrap_ssl"


def runs_root(root: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else ``$CAMTRAP_SSL_RUNS``, else ``runs/`` in the repository."""
    if root is not None:
        return Path(root).expanduser()
    return _env("CAMTRAP_SSL_RUNS") or REPOSITORY / "runs"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else ``$CAMTRAP_SSL_DATA``, else ``./data``."""
    if root is not None:
        return Path(root).expanduser()
    return _env("CAMTRAP_SSL_DATA") or Path("data")


def weights_dir(root: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else ``$CAMTRAP_SSL_WEIGHTS``, else ``<cache>/weights``."""
    if root is not None:
        return Path(root).expanduser()
    return _env("CAMTRAP_SSL_WEIGHTS") or cache_dir() / "weights"
