"""Shared pieces of the tests' loopback HTTP servers: ``Range`` answers, a port nobody serves."""
import socket


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


def unserved_url(path: str = "") -> str:
    """A loopback URL on a port that was free a moment ago: connecting to it is refused, as offline."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return f"http://127.0.0.1:{port}/{path}"
