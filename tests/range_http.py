"""Shared pieces of the tests' loopback HTTP servers: ``Range`` answers (the package's own, in
:mod:`camtrap_ssl.core.loopback`), a port nobody serves, injected faults."""
import http.server
import socket
import threading

from camtrap_ssl.core.loopback import send_headers_for_range  # noqa: F401  (re-exported)


def unserved_url(path: str = "") -> str:
    """A loopback URL on a port that was free a moment ago: connecting to it is refused, as offline."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return f"http://127.0.0.1:{port}/{path}"


class FaultHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` (path -> bytes, with Range) and injected faults by path prefix:
    ``/hang/`` never answers, ``/stall/`` sends headers and a tenth of the body then goes quiet,
    ``/trickle/`` sends one byte every ``server.trickle_s``, ``/cut/`` closes half-way. Every
    wait ends when the server stops, so no test outlives its server."""
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        srv.log.append((self.path, self.headers.get("Range")))
        kind, _, name = self.path.lstrip("/").partition("/")
        if kind == "hang":
            srv.stopped.wait(srv.max_wait)
            return
        body = srv.files.get(name if kind in ("stall", "trickle", "cut") else self.path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        body = send_headers_for_range(self, body)
        if kind == "stall":
            self.wfile.write(body[:len(body) // 10])
            self.wfile.flush()
            srv.stopped.wait(srv.max_wait)
        elif kind == "trickle":
            for k in range(len(body)):
                if srv.stopped.wait(srv.trickle_s):
                    return
                self.wfile.write(body[k:k + 1])
                self.wfile.flush()
        elif kind == "cut":
            self.wfile.write(body[:len(body) // 2])
        else:
            self.wfile.write(body)


class FaultServer:
    """A loopback (127.0.0.1) server with :class:`FaultHandler`; use as a context manager.
    Bounded: handlers wait at most ``max_wait`` seconds, and ``__exit__`` stops everything."""

    def __init__(self, files: dict | None = None, trickle_s: float = 0.2, max_wait: float = 20):
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FaultHandler)
        self.srv.daemon_threads = True
        self.srv.files, self.srv.log = dict(files or {}), []
        self.srv.trickle_s, self.srv.max_wait = trickle_s, max_wait
        self.srv.stopped = threading.Event()
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/"

    @property
    def log(self):
        return self.srv.log

    @property
    def files(self):
        return self.srv.files

    def __enter__(self):
        self.thread = threading.Thread(target=self.srv.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.srv.stopped.set()
        self.srv.shutdown()
        self.srv.server_close()
        self.thread.join(5)
