"""A static file server on 127.0.0.1 with HTTP ``Range``: what the downloaders meet, offline.

The download code (LILA images and metadata, official checkpoints) is the code a user runs against
LILA's mirrors and dl.fbaipublicfiles.com; the tests and the paper-path rehearsal
(:mod:`camtrap_ssl.studies.rehearsal`) point it at this server instead, so resume, subsets and
checksums are exercised over real sockets without leaving the machine. It binds the loopback
interface only, on a free port, and stops when its ``with`` block ends.
"""
from __future__ import annotations

import contextlib
import http.server
import threading
from pathlib import Path
from urllib.parse import unquote

__all__ = ["send_headers_for_range", "serve_folder"]


def send_headers_for_range(handler, body: bytes, ignore_range: bool = False) -> bytes:
    """Send the status and headers for ``body`` (206 for a ``Range: bytes=N-`` request unless
    ``ignore_range``, else 200) and return the bytes the response must carry."""
    rng = handler.headers.get("Range")
    start = 0
    if rng and not ignore_range:
        start = int(rng.split("=")[1].split("-")[0])
        handler.send_response(206)
        handler.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
    else:
        handler.send_response(200)
    handler.send_header("Content-Length", str(len(body) - start))
    handler.end_headers()
    return body[start:]


class _FolderHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):  # a rehearsal fetches thousands of files; no log per request
        pass

    def do_GET(self):
        root: Path = self.server.root
        rel = self.path.split("?", 1)[0].lstrip("/")
        path = (root / unquote(rel)).resolve()
        if root not in path.parents or not path.is_file():
            self.send_error(404)
            return
        self.server.requests += 1
        self.wfile.write(send_headers_for_range(self, path.read_bytes()))


@contextlib.contextmanager
def serve_folder(root):
    """Serve the files under ``root`` at ``http://127.0.0.1:<port>/`` while the block runs.

    Yields the base URL (ending in ``/``). Paths outside ``root`` answer 404.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"serve_folder: root={str(root)!r} is not a folder")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FolderHandler)
    srv.root, srv.requests = root, 0
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/"
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)
