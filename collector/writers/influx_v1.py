"""Write points to InfluxDB 1.x through its v1 HTTP API (``POST /write``).

InfluxDB 1.x acknowledges a write (HTTP 204) after the points are in its write-ahead log, so a
returned ``write`` is durable (fsynced unless the server sets ``wal-fsync-delay``).
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Mapping
from typing import Any, Required, TypedDict

import requests

from collector.writers.base import GatewayLookup, LineProtocolWriter, error_for_status, option
from shouhu.exceptions import StorageError, StorageUnavailable

log = logging.getLogger(__name__)

WHERE = "InfluxDB v1 API"


class InfluxV1Options(TypedDict, total=False):
    """Options of the ``influx_v1`` writer (collector configuration ``writer.options``)."""

    url: Required[str]  # e.g. "http://127.0.0.1:8086"
    database: Required[str]
    retention_policy: str  # default: the database's default policy
    username: str
    password: str
    gzip: bool  # compress request bodies (default false)
    timeout_s: float  # per request (default 10)
    max_lines: int  # points per request (default 5000, InfluxData's recommendation)
    create_database: bool  # CREATE DATABASE on first write (tests, single-node installs)
    verify_tls: bool  # default true


class InfluxV1Writer(LineProtocolWriter):
    """``Writer`` for InfluxDB 1.x (and anything that serves ``/write`` the same way)."""

    kind = "influx_v1"

    def __init__(self, options: Mapping[str, Any]) -> None:
        w = self.kind
        self.url = str(option(options, "url", str, writer=w, required=True)).rstrip("/")
        self.database: str = option(options, "database", str, writer=w, required=True)
        self.retention_policy: str | None = option(options, "retention_policy", str, writer=w)
        username = option(options, "username", str, writer=w)
        password = option(options, "password", str, writer=w, default="")
        self.gzip: bool = option(options, "gzip", bool, writer=w, default=False)
        self.timeout_s: float = option(options, "timeout_s", float, writer=w, default=10.0)
        self.max_lines: int = option(options, "max_lines", int, writer=w, default=5000)
        self._create_database: bool = option(
            options, "create_database", bool, writer=w, default=False
        )
        self._session = requests.Session()
        self._session.verify = option(options, "verify_tls", bool, writer=w, default=True)
        if username:
            self._session.auth = (username, password)
        # set by the collector when it has a registry: readings get their gateway's place
        self.gateway_lookup: GatewayLookup | None = None

    def _post(self, path: str, *, params: dict[str, str], body: bytes = b"") -> requests.Response:
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.gzip and body:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        try:
            return self._session.post(
                f"{self.url}{path}",
                params=params,
                data=body,
                headers=headers,
                timeout=self.timeout_s,
            )
        except requests.RequestException as exc:
            raise StorageUnavailable(f"{WHERE} at {self.url} unreachable: {exc}") from exc

    def _ensure_database(self) -> None:
        quoted = self.database.replace("\\", "\\\\").replace('"', '\\"')
        resp = self._post("/query", params={"q": f'CREATE DATABASE "{quoted}"'})
        if resp.status_code != 200:
            raise error_for_status(resp.status_code, resp.text, where=WHERE)
        self._create_database = False

    def _write_lines(self, lines: list[str]) -> None:
        if self._create_database:
            self._ensure_database()
        params = {"db": self.database, "precision": "ns"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        for start in range(0, len(lines), self.max_lines):
            body = "\n".join(lines[start : start + self.max_lines]).encode()
            resp = self._post("/write", params=params, body=body)
            if resp.status_code != 204:
                raise error_for_status(resp.status_code, resp.text, where=WHERE)

    def query(self, influxql: str) -> list[dict[str, Any]]:
        """Run an InfluxQL query and return its ``results`` (for tests and the CLI)."""
        try:
            resp = self._session.get(
                f"{self.url}/query",
                params={"db": self.database, "q": influxql, "epoch": "ns"},
                timeout=self.timeout_s,
            )
        except requests.RequestException as exc:
            raise StorageUnavailable(f"{WHERE} at {self.url} unreachable: {exc}") from exc
        if resp.status_code != 200:
            raise error_for_status(resp.status_code, resp.text, where=WHERE)
        try:
            results: list[dict[str, Any]] = resp.json()["results"]
        except (ValueError, KeyError) as exc:
            raise StorageError(f"{WHERE} answered an unreadable query result") from exc
        for result in results:
            if "error" in result:
                raise StorageError(f"{WHERE} query failed: {result['error']}")
        return results

    def ping(self) -> bool:
        try:
            resp = self._session.get(f"{self.url}/ping", timeout=self.timeout_s)
        except requests.RequestException:
            return False
        return resp.status_code == 204

    def close(self) -> None:
        self._session.close()
