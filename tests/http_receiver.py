"""A real local HTTP server that records every request: the far end of apprise json:// and form://.

``with HttpReceiver() as rx:`` listens on 127.0.0.1 (a free port) in a thread; ``rx.url("json",
"/family")`` is an apprise URL pointing at it; ``rx.wait_for(n)`` blocks until ``n`` requests
arrived. ``status`` / ``delay_s`` per path make a channel fail or be slow.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class HttpReceiver:
    status: dict[str, int] = field(default_factory=dict)  # path -> HTTP status (default 200)
    delay_s: dict[str, float] = field(default_factory=dict)  # path -> seconds before answering
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                path = self.path.partition("?")[0]
                delay = receiver.delay_s.get(path, 0.0)
                if delay:
                    time.sleep(delay)
                with receiver._cond:
                    receiver.requests.append(
                        Request("POST", path, dict(self.headers.items()), body)
                    )
                    receiver._cond.notify_all()
                self.send_response(receiver.status.get(path, 200))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HttpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, scheme: str, path: str) -> str:
        """An apprise URL (``json``, ``form``, ``xml``) posting to ``path`` here."""
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Request]:
        with self._cond:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, count: int, path: str | None = None, timeout: float = 10.0) -> list[Request]:
        """The requests (to ``path``, if given) once at least ``count`` arrived; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [r for r in self.requests if path is None or r.path == path]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(got)} of {count} requests arrived at {path}")
                self._cond.wait(left)
