"""web/'s pages served as static files alone, for the tests that need no platform (the pages
behind make run's edge are tests/e2e/test_e2e_pages.py). The phone-sized Chromium is
tests/conftest.py's `browser`."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[2] / "web"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def static_pages() -> Iterator[str]:
    """web/ over HTTP on 127.0.0.1 (a secure context, so the pages may use crypto.subtle)."""
    handler = functools.partial(_QuietHandler, directory=str(WEB))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
