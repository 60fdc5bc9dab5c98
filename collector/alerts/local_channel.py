"""A local notification channel: an in-process HTTP receiver for apprise ``json://`` URLs.

The demo and the benchmarks must show what each person would have been told without sending
anything anywhere. apprise has no file target for notifications, but its ``json://`` plugin
POSTs ``{"title", "message", "type", ...}`` to any HTTP server; ``LocalChannel`` is that
server, on 127.0.0.1 only. Give each recipient its own path (``channel.url("/fire-brigade")``)
and read back what arrived there (``received("/fire-brigade")``). The notifier, apprise and
the HTTP hand-off are the real ones.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

MAX_BODY: Final = 256 * 1024
MAX_KEPT: Final = 10_000  # messages kept; beyond, the oldest go (a benchmark can send many)


@dataclass(frozen=True, slots=True)
class Received:
    """One notification as it reached the channel."""

    path: str  # the recipient's path, e.g. "/fire-brigade"
    title: str
    body: str
    at_ms: int  # when the channel got it (ms since the epoch)


class LocalChannel:
    """``with LocalChannel() as ch:`` listens on 127.0.0.1 (a free port) in a daemon thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._cond = threading.Condition()
        self._received: list[Received] = []
        channel = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
                raw = self.rfile.read(length)
                channel._take(self.path.partition("?")[0], raw)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the demo prints what arrived, not the HTTP log

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, name=f"local-channel:{self.port}", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> LocalChannel:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, path: str) -> str:
        """The apprise URL that delivers to ``path`` here."""
        return f"json://{self.host}:{self.port}/{path.lstrip('/')}"

    def _take(self, path: str, raw: bytes) -> None:
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = {}
        if not isinstance(doc, dict):
            doc = {}
        item = Received(
            path,
            str(doc.get("title", "")),
            str(doc.get("message", raw.decode("utf-8", "replace"))),
            time.time_ns() // 1_000_000,
        )
        with self._cond:
            self._received.append(item)
            if len(self._received) > MAX_KEPT:
                del self._received[0]
            self._cond.notify_all()

    def received(self, path: str | None = None) -> list[Received]:
        """What arrived (at ``path``, if given), oldest first."""
        with self._cond:
            return [r for r in self._received if path is None or r.path == path]

    def wait_for(self, count: int, path: str | None = None, timeout: float = 10.0) -> bool:
        """True once ``count`` messages (at ``path``) arrived; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len([r for r in self._received if path is None or r.path == path]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True
