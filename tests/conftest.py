"""Shared fixtures: the real ISBI 2012 stacks (where ../shared is present) and a loopback HTTP server."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_ISBI = REPO.parent / "shared" / "datasets" / "isbi2012"


@pytest.fixture(scope="session")
def real_isbi() -> Path:
    """The real ISBI 2012 TIFF stacks; tests using it skip, saying why, where ../shared is absent."""
    if not (SHARED_ISBI / "train-volume.tif").is_file():
        pytest.skip(f"real ISBI 2012 data not found at {SHARED_ISBI} (../shared/datasets is absent)")
    return SHARED_ISBI


class _Handler(http.server.SimpleHTTPRequestHandler):
    truncate: set[str] = set()  # file names served with a Content-Length larger than the body

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        name = self.path.rsplit("/", 1)[-1]
        if name in self.truncate:
            body = (Path(self.directory) / name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])  # then the connection closes early
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    """``serve(directory, truncate=())`` starts a server on 127.0.0.1 and returns its base URL."""
    servers = []

    def start(directory: Path, truncate: tuple[str, ...] = ()) -> str:
        handler = type("Handler", (_Handler,), {"truncate": set(truncate)})
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(handler, directory=str(directory))
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
