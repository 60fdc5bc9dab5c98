"""Write points through the InfluxDB v2 write API (``POST /api/v2/write``, influxdb-client).

Works with InfluxDB 2.x and 3.x (token, org, bucket), InfluxDB 1.8+ (token ``"user:pass"``,
bucket ``"db/rp"``, org ignored) and VictoriaMetrics (no token; bucket becomes its ``db``
label). InfluxDB 1.6/1.7 have no v2 API: use the ``influx_v1`` writer there.
The write API is SYNCHRONOUS, so ``write`` returns only after the server accepted the points.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Required, TypedDict

import urllib3.exceptions
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from collector.writers.base import GatewayLookup, LineProtocolWriter, error_for_status, option
from shouhu.exceptions import StorageUnavailable

log = logging.getLogger(__name__)

WHERE = "InfluxDB v2 API"


class InfluxV2Options(TypedDict, total=False):
    """Options of the ``influx_v2`` writer (collector configuration ``writer.options``)."""

    url: Required[str]  # e.g. "http://127.0.0.1:8086"
    bucket: Required[str]  # InfluxDB 1.8: "database/retention-policy"
    token: str  # InfluxDB 1.8: "username:password"; VictoriaMetrics: none
    org: str  # InfluxDB 2.x; ignored by 1.8 and VictoriaMetrics (default "-")
    gzip: bool  # default false
    timeout_s: float  # per request (default 10)
    max_lines: int  # points per request (default 5000)
    verify_tls: bool  # default true


def _body_text(exc: ApiException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, bytes):
        return body.decode(errors="replace")
    return str(body or exc.reason or "")


class InfluxV2Writer(LineProtocolWriter):
    """``Writer`` for the InfluxDB v2 write API."""

    kind = "influx_v2"

    def __init__(self, options: Mapping[str, Any]) -> None:
        w = self.kind
        self.url = str(option(options, "url", str, writer=w, required=True)).rstrip("/")
        self.bucket: str = option(options, "bucket", str, writer=w, required=True)
        self.org: str = option(options, "org", str, writer=w, default="-")
        token: str | None = option(options, "token", str, writer=w)
        timeout_s: float = option(options, "timeout_s", float, writer=w, default=10.0)
        self.max_lines: int = option(options, "max_lines", int, writer=w, default=5000)
        self._client = InfluxDBClient(
            url=self.url,
            token=token or "",  # empty: no Authorization header (VictoriaMetrics)
            org=self.org,
            timeout=int(timeout_s * 1000),
            enable_gzip=option(options, "gzip", bool, writer=w, default=False),
            verify_ssl=option(options, "verify_tls", bool, writer=w, default=True),
            retries=False,  # the collector retries the whole batch; no hidden waits here
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        # set by the collector when it has a registry: readings get their gateway's place
        self.gateway_lookup: GatewayLookup | None = None

    def _write_lines(self, lines: list[str]) -> None:
        for start in range(0, len(lines), self.max_lines):
            chunk = lines[start : start + self.max_lines]
            try:
                self._write_api.write(
                    bucket=self.bucket,
                    org=self.org,
                    record=chunk,
                    write_precision=WritePrecision.NS,  # type: ignore[arg-type]  # a str constant
                )
            except ApiException as exc:
                status = int(exc.status or 0)
                raise error_for_status(status, _body_text(exc), where=WHERE) from exc
            except InfluxDBError as exc:
                raise StorageUnavailable(f"{WHERE} at {self.url}: {exc}") from exc
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise StorageUnavailable(f"{WHERE} at {self.url} unreachable: {exc}") from exc

    def ping(self) -> bool:
        return bool(self._client.ping())

    def close(self) -> None:
        self._write_api.close()
        self._client.close()
