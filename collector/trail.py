"""A wearer's footprints: where their amulet was heard, on a table or a map.

Pure part: ``footprints`` joins sighting rows with the registry's gateways (site, lat/lon);
``trail_table`` and ``trail_geojson`` render them. I/O part: ``sightings_from_sqlite`` (the
``records`` table of ``collector/writers/sqlite.py``) and ``sightings_from_influx`` (InfluxQL
over the InfluxDB 1.x ``/query`` API; 2.x/3.x with a DBRP mapping serve it too).

Only ids, sites and coordinates come out: the wearer's name is never in the result.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from collector.domain import Gateway
from shouhu.exceptions import ConfigError, StorageError, StorageUnavailable

_SPAN: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_MS: Final = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


@dataclass(frozen=True, slots=True)
class Sighting:
    """One sighting record of a device, as stored."""

    ts: int  # ms since the epoch
    gw: str
    event: str
    rssi_avg: float | None


@dataclass(frozen=True, slots=True)
class Footprint:
    ts: int
    gw: str
    site: str
    zone: str
    lat: float | None
    lon: float | None
    event: str
    rssi_avg: float | None


# --- pure -------------------------------------------------------------------------------------


def parse_since(text: str, now_ms: int) -> int:
    """``"2h"``, ``"30m"``, ``"1d"`` ago, or an ISO time (UTC unless it says otherwise)."""
    m = _SPAN.match(text)
    if m is not None:
        return now_ms - int(float(m.group(1)) * _UNIT_MS[m.group(2)])
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"not a duration or time: {text!r}", hint="like 2h, 90m, 1d or 2026-11-23T08:00"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def footprints(rows: Iterable[Sighting], gateways: Mapping[str, Gateway]) -> list[Footprint]:
    """Sightings in time order with their gateway's place (unknown gateways keep the id)."""
    out: list[Footprint] = []
    for r in sorted(rows, key=lambda r: (r.ts, r.gw)):
        g = gateways.get(r.gw)
        out.append(
            Footprint(
                ts=r.ts,
                gw=r.gw,
                site=g.site if g is not None else "",
                zone=g.zone if g is not None else "",
                lat=g.lat if g is not None else None,
                lon=g.lon if g is not None else None,
                event=r.event,
                rssi_avg=r.rssi_avg,
            )
        )
    return out


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown time zone {tz!r}") from exc


def _time(ts: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts / 1000, tz).isoformat(timespec="seconds")


def trail_table(steps: Sequence[Footprint], tz: str = "UTC") -> str:
    """Columns time, gateway, site, event, rssi_avg."""
    zone = _zone(tz)
    headers = ("time", "gateway", "site", "event", "rssi_avg")
    rows = [
        (
            _time(f.ts, zone),
            f.gw,
            f.site or "?",
            f.event or "-",
            "-" if f.rssi_avg is None else f"{f.rssi_avg:.1f}",
        )
        for f in steps
    ]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    head = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()
    return "\n".join([head, *lines])


def trail_geojson(steps: Sequence[Footprint], wearer_id: str) -> dict[str, Any]:
    """A FeatureCollection: one Point per located footprint and a LineString through them."""
    features: list[dict[str, Any]] = []
    line: list[list[float]] = []
    for f in steps:
        if f.lat is None or f.lon is None:
            continue
        coords = [f.lon, f.lat]  # GeoJSON order: longitude, latitude
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": coords},
                "properties": {
                    "time": _time(f.ts, ZoneInfo("UTC")),
                    "ts": f.ts,
                    "gateway": f.gw,
                    "site": f.site,
                    "zone": f.zone,
                    "event": f.event,
                    "rssi_avg": f.rssi_avg,
                },
            }
        )
        if not line or line[-1] != coords:
            line.append(coords)
    if len(line) >= 2:
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": line},
                "properties": {"wearer": wearer_id, "points": len(line)},
            }
        )
    return {"type": "FeatureCollection", "features": features}


def _rssi(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


# --- I/O --------------------------------------------------------------------------------------


def sightings_from_sqlite(
    path: str, device: str, since_ms: int, until_ms: int | None = None
) -> list[Sighting]:
    """Sighting records of ``device`` from the SQLite store (read-only)."""
    sql = "SELECT ts, gw, data FROM records WHERE kind = 'sighting' AND device = ? AND ts >= ?"
    params: list[Any] = [device, since_ms]
    if until_ms is not None:
        sql += " AND ts < ?"
        params.append(until_ms)
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
        try:
            rows = db.execute(sql + " ORDER BY ts", params).fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise StorageUnavailable(f"cannot read records from {path}: {exc}") from exc
    out: list[Sighting] = []
    for ts, gw, data in rows:
        try:
            d = json.loads(data)
        except ValueError:
            d = {}
        d = d if isinstance(d, dict) else {}
        event = d.get("event")
        out.append(
            Sighting(
                int(ts), str(gw), event if isinstance(event, str) else "", _rssi(d.get("rssi_avg"))
            )
        )
    return out


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sightings_query(device: str, since_ms: int, until_ms: int | None = None) -> str:
    """The InfluxQL that reads a device's sightings (``event`` and ``gw`` are tags)."""
    q = (
        'SELECT "rssi_avg", "event", "gw" FROM "sighting"'
        f' WHERE "device" = {_quote(device)} AND time >= {since_ms}ms'
    )
    if until_ms is not None:
        q += f" AND time < {until_ms}ms"
    return q + " ORDER BY time ASC"


def sightings_from_influx(
    url: str,
    database: str,
    device: str,
    since_ms: int,
    until_ms: int | None = None,
    *,
    username: str | None = None,
    password: str | None = None,
    timeout_s: float = 10.0,
) -> list[Sighting]:
    """Sightings of ``device`` through InfluxQL ``GET /query``."""
    import requests

    try:
        resp = requests.get(
            f"{url.rstrip('/')}/query",
            params={
                "db": database,
                "q": sightings_query(device, since_ms, until_ms),
                "epoch": "ms",
            },
            auth=(username, password or "") if username else None,
            timeout=timeout_s,
        )
    except requests.RequestException as exc:
        raise StorageUnavailable(f"InfluxDB at {url} unreachable: {exc}") from exc
    if resp.status_code != 200:
        raise StorageUnavailable(
            f"InfluxDB query failed (HTTP {resp.status_code}): {resp.text[:200]}"
        )
    try:
        return influx_rows(resp.json())
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise StorageError(f"InfluxDB answered an unreadable result: {exc}") from exc


def influx_rows(body: Mapping[str, Any]) -> list[Sighting]:
    """Sightings from an InfluxQL JSON answer (``epoch=ms``)."""
    out: list[Sighting] = []
    for result in body["results"]:
        if "error" in result:
            raise StorageError(f"InfluxDB query failed: {result['error']}")
        for series in result.get("series", []):
            cols = series["columns"]
            for values in series["values"]:
                row = dict(zip(cols, values, strict=True))
                event = row.get("event")
                out.append(
                    Sighting(
                        int(row["time"]),
                        str(row.get("gw") or ""),
                        event if isinstance(event, str) else "",
                        _rssi(row.get("rssi_avg")),
                    )
                )
    return out
