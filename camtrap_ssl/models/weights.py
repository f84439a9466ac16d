"""Fetch, verify and safely read pretrained checkpoints.

Why this module exists instead of ``torch.hub``: hub entry points execute a repository's
``hubconf.py`` and unpickle arbitrary objects; SPEC section 3 forbids both. Here a checkpoint is a
file in a cache directory, fetched with urllib (``http(s)://`` with HTTP Range resume, or
``file://``, by :mod:`camtrap_ssl.core.download`, which never waits forever), checked against its sha256 where one is published, and read with
``torch.load(..., weights_only=True)`` only, so a file that needs code execution is refused.

Cache: ``$CAMTRAP_SSL_WEIGHTS`` or ``~/.cache/camtrap_ssl/weights``. An interrupted download
leaves ``<file>.part`` beside its destination and the next call resumes it. Where nothing can be
downloaded, errors say which file is needed, from where, and the exact path to put it by hand.
A registry entry can be pointed elsewhere with ``create_model(..., weights_url=...)`` or the
environment variable ``CAMTRAP_SSL_WEIGHTS_URL_<NAME>`` (name upper-cased).
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
import urllib.error
from pathlib import Path
from urllib.parse import unquote, urlparse

import torch

from camtrap_ssl.core import download as dl
from camtrap_ssl.core import paths, provenance
from camtrap_ssl.core.fileio import sha256_file

ENV_CACHE = "CAMTRAP_SSL_WEIGHTS"
ENV_URL_PREFIX = "CAMTRAP_SSL_WEIGHTS_URL_"
SCHEMES = dl.SCHEMES
DEADLINE = 3600.0  # seconds for one checkpoint (the largest, SimCLRv2 R152-3x, is ~3 GB)
STALL = 60.0


class WeightsUnavailableError(RuntimeError):
    """The checkpoint is not in the cache and cannot be fetched from here."""


ChecksumError = dl.ChecksumError  # one class for every checksum failure of the package


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint that cannot be read without executing pickled code."""


def weights_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The weights cache: ``cache_dir``, else ``$CAMTRAP_SSL_WEIGHTS`` (see :mod:`camtrap_ssl.core.paths`)."""
    return paths.weights_dir(cache_dir)


def _by_hand(filename: str, url: str, dest: Path, instructions: str = "") -> str:
    msg = (f"\n  file: {filename}\n  source: {url}\n  put it by hand at exactly: {dest}\n"
           f"  (or set {ENV_CACHE} to a folder holding it, or pass weights_url='file:///...')")
    return msg + (f"\n  how: {instructions}" if instructions else "")


def download(url: str, filename: str | None = None, sha256: str | None = None,
             cache_dir: str | os.PathLike | None = None, progress: bool = True,
             instructions: str = "", timeout: float | None = DEADLINE,
             stall: float = STALL) -> Path:
    """Return the cached path of ``url``, fetching it first if needed.

    ``sha256`` (full digest or a prefix of at least 8 hex digits) is checked on the fresh
    download, and on a cached file. A mismatching download is deleted and raises
    :class:`ChecksumError` naming the file and both digests. The transfer is
    :func:`camtrap_ssl.core.download.fetch`: resumable, with an overall deadline ``timeout`` and
    a ``stall`` limit (seconds), so an unreachable or hung server is reported, never waited on.
    """
    scheme = urlparse(url).scheme.lower()
    filename = filename or Path(unquote(urlparse(url).path)).name
    if not filename:
        raise ValueError(f"cannot infer a file name from url {url!r}; pass filename=")
    dest = weights_dir(cache_dir) / filename
    expected = sha256.lower() if sha256 else None
    source = Path(unquote(urlparse(url).path)) if scheme == "file" else None
    if dest.exists() and not (source is not None and source.exists()
                              and source.stat().st_mtime > dest.stat().st_mtime):
        if expected:
            actual = sha256_file(dest)
            if not actual.startswith(expected):
                raise ChecksumError(f"cached file {dest} has sha256 {actual}, expected {expected}"
                                    "...; delete it and fetch it again")
        return dest
    if scheme not in SCHEMES:
        raise WeightsUnavailableError(
            f"cannot download {url!r}: scheme {scheme + '://' if scheme else '(none)'} is not one of "
            f"{[s + '://' for s in SCHEMES]}." + _by_hand(filename, url, dest, instructions))
    if dest.exists():  # a newer file:// source replaces the cached copy
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    try:
        dl.fetch(url, dest, timeout=timeout, stall=stall, sha256=expected, progress=progress)
    except dl.ChecksumError as e:
        raise ChecksumError(f"checksum mismatch for {filename}: {e}") from None
    except urllib.error.HTTPError as e:
        raise WeightsUnavailableError(f"HTTP {e.code} ({e.reason}) fetching {filename}."
                                      + _by_hand(filename, url, dest, instructions)) from None
    except dl.NETWORK_ERRORS as e:  # offline, cut off, hung, stalled
        raise WeightsUnavailableError(f"could not fetch {filename} ({e}); a partial download, if "
                                      f"any, stays in {part} and is resumed next time."
                                      + _by_hand(filename, url, dest, instructions)) from None
    return dest


def load_checkpoint(path: str | os.PathLike):
    """``torch.load(path, map_location='cpu', weights_only=True)``, with clear errors.

    A file whose unpickling needs anything beyond tensors and plain containers (the way a
    malicious checkpoint runs code) raises :class:`UnsafeCheckpointError`; nothing in it runs.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"refused to load {path}: it is not a plain state dict (tensors and containers only) "
            "and reading it would need pickle to execute code or build arbitrary objects. "
            "camtrap_ssl loads checkpoints with weights_only=True only; re-save the state dict "
            f"(torch.save(model.state_dict(), ...)) from a trusted source. Details: "
            f"{_refusal_detail(e)}") from None
    except (RuntimeError, EOFError, ValueError) as e:
        raise ValueError(f"cannot read checkpoint {path}: {e} (truncated or corrupt?)") from e


def _refusal_detail(e: Exception) -> str:
    """What the file asked pickle to call (e.g. ``GLOBAL posix.system``), without torch's
    advice to retry with ``weights_only=False`` or to allow-list the global, which is the
    advice to run it."""
    m = re.search(r"GLOBAL ([\w.]+)", str(e))
    return f"it asks pickle to call GLOBAL {m.group(1)}" if m else type(e).__name__


def resolve_url(entry, weights_url: str | None = None) -> tuple[str, str, bool]:
    """(url, cache file name, is_override) for ``entry``, honouring overrides."""
    env = os.environ.get(ENV_URL_PREFIX + re.sub(r"\W", "_", entry.name).upper())
    override = weights_url or env
    if override:
        if "://" not in override:  # a plain local path
            override = Path(override).expanduser().resolve().as_uri()
        name = Path(unquote(urlparse(override).path)).name
        if not name:
            raise ValueError(f"weights_url {override!r} names no file")
        tag = hashlib.sha1(override.encode()).hexdigest()[:10]
        return override, f"{entry.name}-{tag}-{name}", True
    if entry.weights is None:
        raise ValueError(f"model {entry.name!r} has no registered weights; pass weights_url=")
    return entry.weights.url, entry.weights.filename, False


def fetch_weights(entry, weights_url: str | None = None, check_hash: bool = True,
                  cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """The local checkpoint file of a registry entry (downloaded into the cache if needed).

    An override keeps the entry's checksum when ``check_hash`` (so a mirror of the same file is
    still verified); pass ``check_hash=False`` for a different file, e.g. a local conversion. The
    rehearsal (:func:`camtrap_ssl.core.provenance.rehearsal`) serves fabricated files, which no
    published checksum matches, so there none is checked.
    """
    url, filename, _ = resolve_url(entry, weights_url)
    src = entry.weights
    sha = src.sha256 if (src is not None and check_hash and not provenance.rehearsal()) else None
    return download(url, filename, sha, cache_dir=cache_dir, progress=progress,
                    instructions=src.instructions if src is not None else "")


def clear_partial(filename: str, cache_dir: str | os.PathLike | None = None) -> None:
    """Delete ``<filename>.part`` from the cache (to restart a download from scratch)."""
    part = weights_dir(cache_dir) / (filename + ".part")
    if part.exists():
        part.unlink()


__all__ = ["ChecksumError", "UnsafeCheckpointError", "WeightsUnavailableError", "download",
           "fetch_weights", "load_checkpoint", "weights_dir",
           "clear_partial"]
