"""One resumable downloader for everything the package fetches (LILA images and metadata, weights).

Why one: the LILA client and the weights cache each had their own copy, with per-read timeouts
only. A per-read timeout never fires on a server that trickles a byte every few seconds, and a
hung mirror cost a full timeout per image. :func:`fetch` bounds a file three ways:

* **deadline** (``timeout``): the whole file, connection included, must arrive within this many
  seconds; it is checked after every read, and each read waits at most the time left, so it is
  kept to within a second or so.
* **stall** (``stall``): no new byte for this many seconds ends the attempt (a hung server, a
  dead connection). A trickle that keeps sending is caught by the deadline instead.
* **cut off**: fewer bytes than ``Content-Length`` promised is an error; the bytes already
  received stay in ``<dest>.part`` and the next call continues them with ``Range: bytes=N-``
  (a server that ignores Range answers 200 and the file restarts from zero; 416 with a total
  equal to the part's size means the part is whole).

Reads use ``read1`` so a slow server returns what it has instead of blocking until a full chunk
arrives (which would hide progress from both clocks). ``file://`` sources are copied with the
same resume rule. :class:`FailFast` is the early stop for batches: when the first ``k`` attempts
all fail the same way (the same exception type and HTTP status), the rest would too (a wrong
mirror, no network, a moved folder), so the batch stops with one message instead of failing
millions of files one timeout at a time.
"""
from __future__ import annotations

import http.client
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlparse

from camtrap_ssl.core.fileio import sha256_file
from camtrap_ssl.core.progress import progress_bar

__all__ = ["DownloadError", "DownloadTimeout", "ChecksumError", "FailFast", "fetch",
           "failure_kind", "NETWORK_ERRORS"]

CHUNK = 1 << 16
SCHEMES = ("http", "https", "file")
NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError)


class DownloadError(OSError):
    """A download did not complete; the message names the URL and the partial file, if any."""


class DownloadTimeout(DownloadError):
    """The deadline passed or the server stalled."""


class ChecksumError(ValueError):
    """A downloaded file's sha256 differs from the published one (the download was deleted)."""


def _check_limits(timeout, stall) -> None:
    for name, value, optional in (("timeout", timeout, True), ("stall", stall, False)):
        if value is None and optional:
            continue
        if not (isinstance(value, (int, float)) and 0 < value < float("inf")):
            raise ValueError(f"{name}={value!r} must be a positive number of seconds"
                             + (" or None" if optional else ""))


def fetch(url: str, dest, *, timeout: float | None = 600.0, stall: float = 30.0,
          sha256: str | None = None, progress: bool = False, user_agent: str = "camtrap-ssl") -> bool:
    """Download ``url`` to ``dest``, resuming ``dest.part``; return False if ``dest`` existed.

    ``timeout`` is the overall deadline in seconds (``None``: none, only the stall detector),
    ``stall`` the longest wait for the next byte. ``sha256`` (a full digest or a prefix of at
    least 8 hex digits) is checked before the file is renamed into place. Raises
    :class:`DownloadTimeout`, :class:`DownloadError` (cut off, bad resume), ``urllib.error``
    errors (HTTP status, unreachable host) or :class:`ChecksumError`; a partial file stays.
    """
    _check_limits(timeout, stall)
    dest = Path(dest)
    if dest.exists():
        return False
    scheme = urlparse(url).scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"url {url!r}: scheme must be one of {[s + '://' for s in SCHEMES]}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if scheme == "file":
        _copy(Path(unquote(urlparse(url).path)), part, progress)
    else:
        deadline = None if timeout is None else time.monotonic() + timeout
        _http(url, part, deadline, timeout, stall, progress, user_agent, retry_416=True)
    if sha256:
        got = sha256_file(part)
        if not got.startswith(sha256.lower()):
            part.unlink()
            raise ChecksumError(f"{url}: sha256 {got} does not match the published {sha256}; "
                                "the download was deleted, rerun to fetch it again")
    os.replace(part, dest)
    return True


def _copy(source: Path, part: Path, progress: bool) -> None:
    total = source.stat().st_size
    offset = part.stat().st_size if part.exists() else 0
    if offset > total:
        offset = 0
    with open(source, "rb") as src, open(part, "ab" if offset else "wb") as dst, \
            progress_bar(total=total, initial=offset, unit="B", unit_scale=True, desc=source.name,
                         show=progress) as bar:
        src.seek(offset)
        for chunk in iter(lambda: src.read(1 << 20), b""):
            dst.write(chunk)
            bar.update(len(chunk))


def _wait(deadline, stall) -> float:
    """Seconds the next socket operation may block: the stall limit or the time left."""
    if deadline is None:
        return stall
    left = deadline - time.monotonic()
    if left <= 0:
        raise DownloadTimeout("deadline passed")
    return min(stall, left)


def _http(url, part: Path, deadline, limit, stall, progress, user_agent, retry_416) -> None:
    offset = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": user_agent})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    try:
        resp = urllib.request.urlopen(req, timeout=_wait(deadline, stall))
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset and retry_416:
            # Range not satisfiable: the part is whole (the server says its size) or bogus.
            m = re.search(r"/(\d+)", e.headers.get("Content-Range", "") or "")
            if m and int(m.group(1)) == offset:
                return
            part.unlink()
            return _http(url, part, deadline, limit, stall, progress, user_agent, retry_416=False)
        raise
    except TimeoutError:  # the server accepted but sent no status line
        raise DownloadTimeout(f"{url}: no answer within {stall:g} s") from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, TimeoutError):  # could not connect in time
            raise DownloadTimeout(f"{url}: no connection within {stall:g} s") from None
        raise
    with resp:
        resumed = bool(offset) and resp.status == 206
        if resumed:
            m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                raise DownloadError(f"{url}: asked to resume from byte {offset}, the server "
                                    f"answered Content-Range {resp.headers.get('Content-Range')!r}")
        else:
            offset = 0  # the server ignored Range: start over
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        written = offset
        sock = _socket_of(resp)
        with open(part, "ab" if resumed else "wb") as f, \
                progress_bar(total=total, initial=offset, unit="B", unit_scale=True,
                             desc=part.name[:-5], show=progress) as bar:
            while True:
                wait = stall
                try:
                    wait = _wait(deadline, stall)
                    if sock is not None:
                        sock.settimeout(wait)
                    chunk = resp.read1(CHUNK)
                except (DownloadTimeout, TimeoutError) as e:
                    if isinstance(e, DownloadTimeout) or wait < stall:  # the time left ran out
                        raise DownloadTimeout(
                            f"{url}: not complete within the {limit:g} s deadline ({written} "
                            f"bytes so far, kept in {part}; rerun to resume, or raise "
                            "--timeout)") from None
                    raise DownloadTimeout(
                        f"{url}: stalled, no data for {stall:g} s after {written} bytes (kept in "
                        f"{part}; rerun to resume)") from None
                if not chunk:
                    break
                f.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
                if deadline is not None and time.monotonic() > deadline and \
                        (total is None or written < total):
                    raise DownloadTimeout(
                        f"{url}: not complete within the {limit:g} s deadline ({written} "
                        f"bytes so far, kept in {part}; rerun to resume, or raise --timeout)")
    if total is not None and written != total:
        raise DownloadError(f"{url}: connection closed after {written} of {total} bytes (kept "
                            f"in {part}; rerun to resume)")


def _socket_of(resp):
    """The socket under an ``http.client`` response, so each read can wait only the time left."""
    try:
        return resp.fp.raw._sock
    except AttributeError:
        return None


def failure_kind(exc: BaseException) -> str:
    """What makes two failures 'the same way': exception type, plus the HTTP status if any."""
    code = getattr(exc, "code", None)
    reason = getattr(exc, "reason", None)
    kind = type(exc).__name__
    if code is not None:
        return f"{kind} {code}"
    if isinstance(reason, BaseException):
        return f"{kind} ({type(reason).__name__})"
    return kind


class FailFast:
    """Early stop for a batch: ``record(exc_or_None)`` after each attempt, in completion order.

    ``tripped`` becomes True once the first ``k`` attempts have all failed with one
    :func:`failure_kind`; a single success before that disarms it for good (isolated failures,
    such as a few missing files, are then just listed).
    """

    def __init__(self, k: int = 8):
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k={k!r} must be a positive int")
        self.k, self.kinds, self.armed, self.first, self.count = k, set(), True, None, 0

    def record(self, exc: BaseException | None) -> bool:
        if not self.armed:
            return False
        if exc is None:
            self.armed = False
            return False
        self.first = self.first or exc
        self.kinds.add(failure_kind(exc))
        self.count += 1
        if len(self.kinds) > 1:
            self.armed = False
        return self.tripped

    @property
    def tripped(self) -> bool:
        return self.armed and self.count >= self.k and len(self.kinds) == 1
