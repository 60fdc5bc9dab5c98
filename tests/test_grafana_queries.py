"""Every panel and variable query of every board runs against a real InfluxDB 1.x with city data.

The data set is made by ``city_dataset`` (a separate function: it can be replaced by a run through
the real collector). Queries get what Grafana would substitute: ``$timeFilter`` → the last hour,
``$__interval`` → 1m, variables → a value their own ``SHOW TAG VALUES`` query returns (and, in a
second pass, "All" = ``.*``). Each query must parse and return at least one series.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from services import InfluxDB1

from collector.alerts.lifecycle import AlertEvent
from collector.derived import (
    alert_event_point,
    enrich_point,
    gateway_state_point,
    patrol_checkin_point,
    school_tap_point,
)
from collector.domain import Gateway
from collector.points import Point, record_to_point
from collector.rules.actions import Verdict
from collector.writers.influx_v1 import InfluxV1Writer
from grafana.dashboards import Json, dashboards
from shouhu.model import Record

MIN = 60_000
GATEWAYS = (
    Gateway("gw-east-1", "east", "market", 31.2304, 121.4737),
    Gateway("gw-east-2", "east", "riverside", 31.2350, 121.4800),
    Gateway("gw-west-1", "west", "hillside", 31.2200, 121.4500),
    Gateway("gw-west-2", "west", "hillside", 31.2210, 121.4510),  # goes offline
)
AMULETS = tuple(f"ibeacon:fda50693a4e24fb1afcfc6eb07647825:1:{n}" for n in (2, 3, 4))
SMOKE = ("rflink:fa20rf:97e3b2", "rtl433:Cavius-Security:1234567")
# Values the variable queries must offer; the panels are checked with them.
PREFERRED = {
    "site": "east",
    "zone": "market",
    "gateway": "gw-east-1",
    "device": AMULETS[0],
    "district": "d-north",
    "unit": "unit-7",
    "box": "box-2",
    "school": "school-1",
}


@dataclass
class CityDataset:
    """Raw records per gateway (written with ``write``) and points (``write_points``)."""

    records: dict[str, list[Record]] = field(default_factory=dict)
    points: list[Point] = field(default_factory=list)


def city_dataset(now_ms: int) -> CityDataset:
    """About 50 minutes of a small city: sightings, alarms, taps, telemetry, health, derived."""
    ds = CityDataset({g.id: [] for g in GATEWAYS})
    seqs = dict.fromkeys(ds.records, 0)
    start = now_ms - 50 * MIN
    by_id = {g.id: g for g in GATEWAYS}

    def add(gw: str, ts: int, kind: Any, profile: str, device: str, data: dict[str, Any]) -> Record:
        seqs[gw] += 1
        record = Record(seqs[gw], ts, kind, profile, device, data)
        ds.records[gw].append(record)
        return record

    def enriched(gw: str, record: Record) -> None:
        # The collector enriches sightings and alarms; the raw record is then not written twice.
        ds.records[gw].remove(record)
        ds.points.append(enrich_point(record_to_point(gw, record), by_id[gw]))

    for minute in range(50):
        ts = start + minute * MIN
        for i, device in enumerate(AMULETS):
            gw = GATEWAYS[(minute // 10 + i) % 3].id
            data = {"event": "update" if minute % 10 else "enter", "rssi": -60.0 - i - minute % 7}
            enriched(gw, add(gw, ts + i, "sighting", "amulet-ibeacon@1", device, data))
        for g in GATEWAYS[:3]:
            health = {
                "uptime_s": 3600 + minute * 60,
                "interval_s": 60,
                "outbox_depth": minute % 5,
                "outbox_oldest_age_s": float(minute % 5),
                "publish_lag_ms": 40 + minute % 9,
                "decode_errors": minute // 7,
                "cpu_percent": 12.5 + minute % 3,
                "rss_bytes": 48_000_000 + minute * 1000,
                "reconnects": minute // 20,
                "sources": {
                    "ble0": {"frames": minute * 600, "errors": minute // 10, "present": True},
                    "rf433": {"frames": minute * 3, "errors": 0, "present": minute % 17 != 0},
                },
            }
            add(g.id, ts + 500, "health", "gateway-health@1", f"gw:{g.id}", health)
            ds.points.append(gateway_state_point(g, True, ts + 500))
        if minute % 5 == 0:
            tlm = {"event": "telemetry", "battery_mv": 2950.0, "temperature_c": 21.5}
            add("gw-east-2", ts + 7, "event", "aed-eddystone@1", "eddystone:aed-1", tlm)
    ds.points.append(gateway_state_point(GATEWAYS[3], True, start))
    ds.points.append(gateway_state_point(GATEWAYS[3], False, start + 30 * MIN))

    # Fire: two alarms, a low battery; the alert lifecycle of the first, with latency.
    for n, (gw, device) in enumerate(zip(("gw-east-1", "gw-west-1"), SMOKE, strict=True)):
        ts = start + (20 + n * 5) * MIN
        alarm = {"event": "alarm", "protocol": "FA20RF", "battery_ok": True}
        enriched(gw, add(gw, ts, "alarm", f"smoke-{n}@1", device, alarm))
        add(gw, ts + MIN, "event", f"smoke-{n}@1", device, {"event": "low_battery"})
        district = ("d-north", "d-south")[n]
        alert_id = f"a-smoke-{n}"
        for state, at, latency in (("raised", ts + 200, None), ("notified", ts + 900, 900 + n)):
            event = AlertEvent(alert_id, "smoke", f"household:h-{n}", state, at, "rules")  # type: ignore[arg-type]
            ds.points.append(alert_event_point(event, "critical", district, latency))
    supervision = AlertEvent("a-sup-1", "smoke_supervision", SMOKE[1], "raised", start, "rules")
    ds.points.append(alert_event_point(supervision, "warning", "d-north"))
    for state, at in (("raised", start + 10 * MIN), ("notified", start + 10 * MIN + 800)):
        event = AlertEvent("a-w-1", "wanderer_left_home", "wearer:w-1", state, at, "rules")  # type: ignore[arg-type]
        ds.points.append(alert_event_point(event, "critical", "d-north", 800))

    # Patrol: check-ins at three boxes by two units, one abnormal, one missed.
    boxes = {"box-1": (31.231, 121.474), "box-2": (31.236, 121.481), "box-3": (31.221, 121.451)}
    for n in range(12):
        box = f"box-{n % 3 + 1}"
        unit = ("unit-7", "unit-9")[n % 2]
        verdict = "normal"
        reasons: tuple[str, ...] = ()
        if n == 4:
            verdict, reasons = "abnormal", ("stay_too_short", "outside_schedule")
        if n == 10:
            verdict, reasons = "missed", ("missed_checkpoint",)
        v = Verdict(box, "route-a", unit, start + n * 4 * MIN, verdict, reasons)  # type: ignore[arg-type]
        lat, lon = boxes[box]
        ds.points.append(patrol_checkin_point(v, lat=lat, lon=lon))
        tap = {"event": "tap", "technology": "ntag424", "counter": n}
        add("gw-west-1", start + n * 4 * MIN, "tap", "patrol-ntag424@1", f"nfc:box:{box}", tap)

    # Schools: arrivals in the first 20 minutes, departures in the last 10.
    for n in range(30):
        school = ("school-1", "school-2")[n % 2]
        arrive = start + (n % 20) * MIN + n
        ds.points.append(school_tap_point(school, "arrival", arrive, seq=n))
        ds.points.append(school_tap_point(school, "departure", start + (40 + n % 10) * MIN, n))
        add("gw-east-1", arrive, "tap", "student-card@1", f"card:{n:04x}", {"technology": "mifare"})
    return ds


@pytest.fixture(scope="module")
def city(influxdb1: InfluxDB1) -> Iterator[InfluxV1Writer]:
    import time

    writer = InfluxV1Writer(
        {"url": influxdb1.url, "database": "grafana_city", "create_database": True}
    )
    data = city_dataset(int(time.time() * 1000))
    for gw, records in data.records.items():
        writer.write(gw, records)
    writer.write_points(data.points)
    yield writer
    writer.close()


def regex_escape(value: str) -> str:
    """What Grafana does to a variable value inside ``/^$var$/``."""
    return re.sub(r"[\\^$*+?.()|\[\]{}/-]", lambda m: "\\" + m.group(0), value)


def substitute(query: str, values: dict[str, str]) -> str:
    query = query.replace("$timeFilter", "time > now() - 1h")
    query = query.replace("$__interval_ms", "60000").replace("$__interval", "1m")
    for name in sorted(values, key=len, reverse=True):
        query = query.replace(f"${name}", values[name])
    left = set(re.findall(r"\$(\w+)", query)) - {"measurement"}
    assert not left, f"unsubstituted {left} in {query}"
    return query


def tag_values(writer: InfluxV1Writer, query: str) -> list[str]:
    (result,) = writer.query(query)
    return [row[1] for series in result.get("series", []) for row in series["values"]]


def resolve_variables(writer: InfluxV1Writer, board: Json, *, all_values: bool) -> dict[str, str]:
    """Run each variable's query in order, as Grafana does, and pick the value to check with."""
    values: dict[str, str] = {}
    for var in board["templating"]["list"]:
        offered = tag_values(writer, substitute(var["query"], values))
        name = var["name"]
        assert PREFERRED[name] in offered, f"{board['uid']}: ${name} offers {offered}"
        if all_values and var["includeAll"]:
            values[name] = var["allValue"]
        else:
            values[name] = regex_escape(PREFERRED[name])
    return values


def panel_queries() -> list[tuple[str, Json, str]]:
    return [
        (f"{name}/{p['id']}:{t['refId']}", board, t["query"])
        for name, board in dashboards().items()
        for p in board["panels"]
        for t in p["targets"]
    ]


QUERIES = panel_queries()


@pytest.mark.parametrize("all_values", [False, True], ids=["one-value", "all"])
@pytest.mark.parametrize(("where", "board", "query"), QUERIES, ids=[q[0] for q in QUERIES])
def test_every_panel_query_returns_series(
    city: InfluxV1Writer, where: str, board: Json, query: str, all_values: bool
) -> None:
    values = resolve_variables(city, board, all_values=all_values)
    influxql = substitute(query, values)
    (result,) = city.query(influxql)  # an InfluxQL error raises StorageError: the test fails
    series = result.get("series", [])
    assert series, f"{where}: no series for {influxql}"
    assert any(any(v is not None for v in row[1:]) for s in series for row in s["values"]), (
        f"{where}: only empty values for {influxql}"
    )


def test_dataset_is_what_the_boards_need(city: InfluxV1Writer) -> None:
    """The enriched sightings carry positions, so the footprint map has points to draw."""
    (result,) = city.query(
        'SELECT count("lat") FROM "sighting" WHERE "site" = \'east\' GROUP BY "gw"'
    )
    counted = {s["tags"]["gw"]: s["values"][0][1] for s in result["series"]}
    assert set(counted) == {"gw-east-1", "gw-east-2"} and all(counted.values())


def panel_by_title(uid: str, title: str) -> Json:
    (board,) = [b for b in dashboards().values() if b["uid"] == uid]
    (found,) = [p for p in board["panels"] if p["title"] == title]
    return found


def first_value(writer: InfluxV1Writer, query: str, values: dict[str, str]) -> Any:
    (result,) = writer.query(substitute(query, values))
    return result["series"][0]["values"][0][1]


def test_panels_count_what_the_city_did(city: InfluxV1Writer) -> None:
    """Numbers, not just shapes: one gateway offline, three online, one smoke alert open."""
    every = {"site": ".*", "zone": ".*", "gateway": ".*", "district": ".*"}
    offline = panel_by_title("shouhu-city", "Gateways offline")["targets"][0]["query"]
    online = panel_by_title("shouhu-city", "Gateways online")["targets"][0]["query"]
    assert first_value(city, offline, every) == 1
    assert first_value(city, online, every) == 3
    in_progress = panel_by_title("shouhu-fire", "Alarms in progress")["targets"][0]["query"]
    (result,) = city.query(substitute(in_progress, every))
    assert {s["tags"]["district"]: s["values"][0][1] for s in result["series"]} == {
        "d-north": 1,
        "d-south": 1,
    }
