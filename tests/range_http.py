"""Shared pieces of the tests' loopback HTTP servers: ``Range`` answers (the package's own, in
:mod:`camtrap_ssl.core.loopback`), a port nobody serves."""
import socket

from camtrap_ssl.core.loopback import send_headers_for_range  # noqa: F401  (re-exported)


def unserved_url(path: str = "") -> str:
    """A loopback URL on a port that was free a moment ago: connecting to it is refused, as offline."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return f"http://127.0.0.1:{port}/{path}"
