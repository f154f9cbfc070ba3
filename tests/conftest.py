"""Shared fixtures: the real ISBI 2012 stacks (where ../shared is present) and a loopback HTTP server.

The suite runs with a home folder of its own: what the code under test writes under ``~`` (Ray's auth
token, since Ray 2.59 makes one for every local instance; matplotlib's font cache) goes to a temporary
folder that is deleted at exit, so that the user's home holds nothing new after the suite. A token left in
``~/.ray`` turns on token authentication for the user's next ``ray start --head``, and a client that
does not send it is refused.
"""

from __future__ import annotations

import atexit
import functools
import http.server
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import SHARED_ISBI, quiet, tiny_spec


def ray_files(home: Path) -> dict[str, float]:
    """What Ray keeps under a home folder (``~/.ray``: the auth token of its local instances), each file
    with its modification time; nothing else of the home is looked at."""
    folder = home / ".ray"
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(home)): p.stat().st_mtime for p in folder.rglob("*") if p.is_file()}


# The suite's files are shared among one process per core where pytest-xdist is installed (the test
# extra); ``-n 0`` runs them in this process, ``-n N`` in N. A file runs whole in one worker, so that its
# module fixtures (a Ray instance, the docs pages' runs, a trained network) are made once. A worker takes
# its share of the cores for torch's threads, and the commands it starts inherit that share.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // WORKERS)))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own, which reads -n
def pytest_cmdline_main(config):
    if hasattr(config, "workerinput") or getattr(config.option, "numprocesses", "absent") is not None:
        return  # an xdist worker, pytest-xdist absent (or -p no:xdist), or -n given
    config.option.numprocesses = "auto"
    if config.option.dist == "no":
        config.option.dist = "loadfile"


def pytest_collection_modifyitems(items):
    """The docs pages' commands first (their order kept): the longest file, about ten minutes on two cores,
    is not left to be the last one a worker starts."""
    items.sort(key=lambda item: item.path.name != "test_docs_commands.py")


REAL_HOME = Path.home()
REAL_RAY_BEFORE = ray_files(REAL_HOME)
TEST_HOME = Path(tempfile.mkdtemp(prefix="unetbench-tests-home-"))
os.environ["HOME"] = str(TEST_HOME)
os.environ["MPLCONFIGDIR"] = str(TEST_HOME / ".config" / "matplotlib")
atexit.register(shutil.rmtree, TEST_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def real_isbi() -> Path:
    """The real ISBI 2012 TIFF stacks; tests using it skip, saying why, where ../shared is absent."""
    if not (SHARED_ISBI / "train-volume.tif").is_file():
        pytest.skip(f"real ISBI 2012 data not found at {SHARED_ISBI} (../shared/datasets is absent)")
    return SHARED_ISBI


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One finished tiny run (:func:`tests.helpers.tiny_spec`, 4 iterations), trained once for the whole
    suite: the tests that read a finished run (predict, export) share it, and none of them changes it."""
    from unetbench.run.runner import run

    folder = tmp_path_factory.mktemp("tiny-run")
    return run(tiny_spec(iterations=4), out=folder / "run", **quiet(folder))


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
