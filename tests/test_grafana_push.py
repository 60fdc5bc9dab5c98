"""``shouhu grafana push`` against a small local Grafana API (http.server on 127.0.0.1).

The server keeps what it was sent, the way Grafana does (datasources by uid, folders, dashboards
with a bumped version), so a second push must find everything equal and change nothing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from click.testing import CliRunner

from grafana.dashboards import dashboards
from grafana.provisioning import InfluxSettings
from grafana.push import push
from shouhu.cli import main
from shouhu.exceptions import ShouhuError

TOKEN = "glsa_test_token"


class FakeGrafana:
    """State of the few endpoints ``push`` uses, and the log of requests it got."""

    def __init__(self) -> None:
        self.datasources: dict[str, dict[str, Any]] = {}
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        self.requests.append((method, path))
        parts = path.strip("/").split("/")
        if path == "/api/health":
            return 200, {"database": "ok", "version": "10.4.0"}
        if parts[:3] == ["api", "datasources", "uid"]:
            uid = parts[3]
            if method == "GET":
                ds = self.datasources.get(uid)
                return (200, ds) if ds else (404, {"message": "Data source not found"})
            if method == "PUT":
                body.pop("secureJsonData", None)
                self.datasources[uid] = {**body, "id": 1, "orgId": 1, "readOnly": False}
                return 200, {"message": "Datasource updated"}
        if path == "/api/datasources" and method == "POST":
            body.pop("secureJsonData", None)
            self.datasources[body["uid"]] = {**body, "id": 1, "orgId": 1, "readOnly": False}
            return 200, {"message": "Datasource added", "id": 1}
        if parts[:2] == ["api", "folders"]:
            if method == "GET" and len(parts) == 3:
                f = self.folders.get(parts[2])
                return (200, f) if f else (404, {"message": "folder not found"})
            if method == "POST":
                self.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"], "id": 7}
                return 200, self.folders[body["uid"]]
        if parts[:3] == ["api", "dashboards", "uid"] and method == "GET":
            stored = self.dashboards.get(parts[3])
            return (200, stored) if stored else (404, {"message": "Dashboard not found"})
        if path == "/api/dashboards/db" and method == "POST":
            assert body["overwrite"] is True
            board = body["dashboard"]
            if body["folderUid"] not in self.folders:
                return 400, {"message": "folder not found"}
            old = self.dashboards.get(board["uid"])
            version = old["dashboard"]["version"] + 1 if old else 1
            self.dashboards[board["uid"]] = {
                "dashboard": {**board, "id": 40, "version": version},
                "meta": {"folderUid": body["folderUid"]},
            }
            return 200, {"status": "success", "uid": board["uid"], "version": version}
        return 404, {"message": "Not found"}


@pytest.fixture
def grafana_server() -> Iterator[tuple[str, FakeGrafana]]:
    state = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                status, reply = 401, {"message": "invalid API key"}
            else:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                with state.lock:
                    status, reply = state.handle(self.command, self.path, body)
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def test_first_push_creates_second_is_unchanged_third_updates(
    grafana_server: tuple[str, FakeGrafana],
) -> None:
    url, state = grafana_server
    settings = InfluxSettings("http://influx:8086", "city", "grafana")
    first = push(url, TOKEN, settings, timeout_s=5)
    boards = dashboards()
    assert {p.change for p in first.items} == {"created"}
    assert len(first.items) == 2 + len(boards)
    assert set(state.dashboards) == {b["uid"] for b in boards.values()}
    assert state.datasources["shouhu-influxdb"]["jsonData"]["dbName"] == "city"
    assert ("POST", "/api/datasources") in state.requests
    assert ("POST", "/api/folders") in state.requests
    assert state.requests.count(("POST", "/api/dashboards/db")) == len(boards)

    state.requests.clear()
    second = push(url, TOKEN, settings, timeout_s=5)
    assert {p.change for p in second.items} == {"unchanged"}
    assert second.summary() == f"grafana push: 0 created, 0 updated, {2 + len(boards)} unchanged"
    assert all(method == "GET" for method, _ in state.requests)

    moved = push(url, TOKEN, InfluxSettings("http://influx2:8086", "city", "grafana"), timeout_s=5)
    assert moved.items[0].change == "updated"
    assert state.datasources["shouhu-influxdb"]["url"] == "http://influx2:8086"
    assert ("PUT", "/api/datasources/uid/shouhu-influxdb") in state.requests

    state.dashboards["shouhu-fire"]["dashboard"]["title"] = "edited in the UI"
    again = push(url, TOKEN, InfluxSettings("http://influx2:8086", "city", "grafana"), timeout_s=5)
    changed = {p.uid: p.change for p in again.items if p.change != "unchanged"}
    assert changed == {"shouhu-fire": "updated"}
    assert state.dashboards["shouhu-fire"]["dashboard"]["version"] == 2


def test_cli_reports_and_bad_token_is_one_line(grafana_server: tuple[str, FakeGrafana]) -> None:
    url, _ = grafana_server
    ok = CliRunner().invoke(main, ["grafana", "push", "--url", url, "--token", TOKEN])
    assert ok.exit_code == 0, ok.output
    assert "datasource shouhu-influxdb: created" in ok.output
    assert "grafana push: 8 created, 0 updated, 0 unchanged" in ok.output

    bad = CliRunner().invoke(main, ["grafana", "push", "--url", url, "--token", "wrong"])
    assert bad.exit_code == 1
    assert "refused the token (HTTP 401)" in bad.output and "--token" in bad.output


def test_unreachable_grafana_is_a_shouhu_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ShouhuError, match="cannot reach Grafana"):
        push(f"http://127.0.0.1:{port}", TOKEN, InfluxSettings(), timeout_s=2)
