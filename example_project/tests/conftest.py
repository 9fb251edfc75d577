"""Fixtures run in the pytest process, unrestricted: the "initialise" phase.

Only a restricted test's body runs in a forked child under its marker's
policy, so the server below binds its socket and runs its thread without any
grant, and is started once for the whole session.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

import pytest


class Server(NamedTuple):
    url: str
    port: int


class ForecastHandler(BaseHTTPRequestHandler):
    """``GET /v1/forecast?city=Oslo`` answers a fixed forecast and the key it was sent."""

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        body = json.dumps(
            {
                "city": query["city"][0],
                "temperature": 21,
                "key": self.headers["X-Api-Key"],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture(scope="session")
def weather_server() -> Iterator[Server]:
    """A real HTTP server on 127.0.0.1, on a free port, for the whole session."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), ForecastHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Server(f"http://127.0.0.1:{server.server_port}", server.server_port)
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def config_dir() -> Path:
    """The folder holding ``weather.ini``."""
    return Path(__file__).parent / "data"


@pytest.fixture
def weather_env(monkeypatch: pytest.MonkeyPatch, weather_server: Server) -> None:
    """Point the application at the test server through its environment variables."""
    monkeypatch.setenv("WEATHER_URL", weather_server.url)
    monkeypatch.setenv("WEATHER_API_KEY", "key-from-env")
