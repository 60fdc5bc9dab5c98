"""Readings of a registered gateway carry its place: site, zone, district tags and lat/lon fields.

Pure mapping first (``collector.points``), then the registry-backed lookup over a real
``RegistryStore``, then the writers against real stores: InfluxDB 1.x for enrichment and
``write_points``, VictoriaMetrics for the v2 writer's ``write_points``, SQLite for its
``points`` table.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from services import InfluxDB1, VictoriaMetrics

from collector.alerts.lifecycle import AlertEvent
from collector.derived import alert_event_point, gateway_state_point
from collector.domain import Gateway, Household
from collector.points import PlacedGateway, record_to_point, to_line_protocol
from collector.registry.store import RegistryStore
from collector.writers.base import RegistryGatewayLookup, attach_gateway_lookup, gateway_places
from collector.writers.influx_v1 import InfluxV1Writer
from collector.writers.influx_v2 import InfluxV2Writer
from collector.writers.sqlite import SqliteWriter
from shouhu.model import Record

TS = 1_763_800_000_000
AMULET = "ibeacon:fda50693a4e24fb1afcfc6eb07647825:1:2"
SMOKE = "rflink:fa20rf:97e3b2"
MARKET = PlacedGateway("gw-market", "east-market", "market", 31.24, 121.48, "d-north")


def sighting(seq: int, ts: int = TS, **data: Any) -> Record:
    return Record(seq, ts, "sighting", "amulet-ibeacon@1", AMULET, {"event": "enter", **data})


# --- pure mapping -----------------------------------------------------------------------------


def test_a_reading_gets_the_place_of_its_gateway() -> None:
    point = record_to_point("gw-market", sighting(7, rssi=-71), gateway=MARKET)
    assert dict(point.tags) == {
        "gw": "gw-market",
        "device": AMULET,
        "profile": "amulet-ibeacon",
        "event": "enter",
        "site": "east-market",
        "zone": "market",
        "district": "d-north",
    }
    assert dict(point.fields) == {"rssi": -71.0, "lat": 31.24, "lon": 121.48, "seq": 7}
    plain = record_to_point("gw-market", sighting(7, rssi=-71))
    assert point.time_ns == plain.time_ns, "the place never moves the point in time"


def test_a_plain_gateway_without_zone_or_position_adds_only_what_it_has() -> None:
    point = record_to_point("gw-x", sighting(1), gateway=Gateway("gw-x", "lobby"))
    assert dict(point.tags)["site"] == "lobby"
    assert "zone" not in dict(point.tags) and "district" not in dict(point.tags)
    assert "lat" not in dict(point.fields) and "lon" not in dict(point.fields)


def test_health_is_not_enriched_and_a_reading_keeps_its_own_values() -> None:
    health = Record(3, TS, "health", "gateway@1", "gw:gw-market", {"uptime_s": 5})
    assert "site" not in dict(record_to_point("gw-market", health, gateway=MARKET).tags)
    own = Record(4, TS, "event", "p@1", "d", {"event": "fix", "lat": 1.5, "zone": "own"})
    point = record_to_point("gw-market", own, gateway=MARKET)
    assert dict(point.fields)["lat"] == 1.5 and dict(point.fields)["lon"] == 121.48
    assert dict(point.fields)["zone"] == "own" and "zone" not in dict(point.tags)


def test_rewriting_a_record_gives_the_same_line() -> None:
    first = to_line_protocol(record_to_point("gw-market", sighting(9), gateway=MARKET))
    again = to_line_protocol(record_to_point("gw-market", sighting(9), gateway=MARKET))
    assert first == again


def test_district_only_when_the_households_of_a_gateway_agree() -> None:
    gateways = [Gateway("gw-a", "s"), Gateway("gw-b", "s"), Gateway("gw-c", "s")]
    households = [
        Household("h-1", "addr", frozenset({"gw-a", "gw-b"}), "d-north"),
        Household("h-2", "addr", frozenset({"gw-b"}), "d-south"),
        Household("h-3", "addr", frozenset({"gw-a"}), "d-north"),
    ]
    places = gateway_places(gateways, households)
    assert {g: p.district for g, p in places.items()} == {
        "gw-a": "d-north",
        "gw-b": "",  # two districts: none is true for every reading
        "gw-c": "",
    }


# --- the registry-backed lookup ---------------------------------------------------------------


def test_registry_lookup_caches_and_follows_changes(tmp_path: Path) -> None:
    now = [0.0]
    with RegistryStore(tmp_path / "registry.sqlite") as registry:
        registry.add(Gateway("gw-1", "east", "market", 31.0, 121.0))
        lookup = RegistryGatewayLookup(registry, poll_s=1.0, clock=lambda: now[0])
        assert lookup("gw-1") == PlacedGateway("gw-1", "east", "market", 31.0, 121.0)
        assert lookup("gw-2") is None
        registry.add(Gateway("gw-2", "west"))
        registry.add(Household("h-1", "addr", frozenset({"gw-1"}), "d-7"))
        assert lookup("gw-2") is None, "within the poll interval the cached places are used"
        now[0] = 1.5
        assert lookup("gw-2") == PlacedGateway("gw-2", "west")
        found = lookup("gw-1")
        assert isinstance(found, PlacedGateway) and found.district == "d-7"


def test_attach_only_to_enriching_writers_without_a_lookup(tmp_path: Path) -> None:
    def lookup(gw: str) -> Gateway | None:
        return None

    sqlite = SqliteWriter({"path": str(tmp_path / "r.db")})
    influx = InfluxV1Writer({"url": "http://127.0.0.1:9", "database": "x"})
    try:
        assert not attach_gateway_lookup(sqlite, lookup)
        assert attach_gateway_lookup(influx, lookup) and influx.gateway_lookup is lookup
        assert not attach_gateway_lookup(influx, lambda gw: None), "an existing lookup stays"
    finally:
        sqlite.close()
        influx.close()


# --- writers against real stores --------------------------------------------------------------


@pytest.fixture
def v1(influxdb1: InfluxDB1, unique_db: str) -> Iterator[InfluxV1Writer]:
    writer = InfluxV1Writer({"url": influxdb1.url, "database": unique_db, "create_database": True})
    yield writer
    writer.close()


def rows(writer: InfluxV1Writer, query: str) -> list[dict[str, Any]]:
    """Query result rows as dicts, the series' tags merged in."""
    (result,) = writer.query(query)
    out = []
    for series in result.get("series", []):
        for values in series["values"]:
            out.append(
                {**series.get("tags", {}), **dict(zip(series["columns"], values, strict=True))}
            )
    return out


def test_influx_v1_stores_the_place_and_leaves_unknown_gateways_plain(v1: InfluxV1Writer) -> None:
    places = {"gw-market": MARKET}
    v1.gateway_lookup = places.get
    alarm = Record(2, TS + 5, "alarm", "smoke-rflink@1", SMOKE, {"event": "alarm"})
    v1.write("gw-market", [sighting(1, rssi=-70), alarm])
    v1.write("gw-unknown", [sighting(1, rssi=-80)])

    found = rows(
        v1,
        'SELECT "lat", "lon", "rssi" FROM "sighting" GROUP BY "gw", "site", "zone", "district"',
    )
    by_gw = {r["gw"]: r for r in found}
    assert set(by_gw) == {"gw-market", "gw-unknown"}, "the unknown gateway's reading is stored"
    market = by_gw["gw-market"]
    assert (market["site"], market["zone"], market["district"]) == (
        "east-market",
        "market",
        "d-north",
    )
    assert (market["lat"], market["lon"], market["rssi"]) == (31.24, 121.48, -70.0)
    unknown = by_gw["gw-unknown"]
    assert (unknown["site"], unknown["lat"], unknown["lon"]) == ("", None, None)

    by_site = rows(v1, 'SELECT count("seq") FROM "alarm" GROUP BY "site"')
    assert [(r["site"], r["count"]) for r in by_site] == [("east-market", 1)]

    # a redelivered batch rewrites the same points: nothing is counted twice
    v1.write("gw-market", [sighting(1, rssi=-70), alarm])
    assert (
        rows(v1, 'SELECT count("seq") FROM "sighting" WHERE "gw" = \'gw-market\'')[0]["count"] == 1
    )


def test_influx_v1_write_points(v1: InfluxV1Writer) -> None:
    event = AlertEvent("a-1", "smoke", "household:h-1", "raised", TS, "rules")
    points = [
        alert_event_point(event, "critical", "d-north"),
        gateway_state_point(MARKET, True, TS),
    ]
    v1.write_points(points)
    v1.write_points(points)
    assert rows(v1, 'SELECT sum("open") FROM "alert_event" GROUP BY "district"') == [
        {"district": "d-north", "time": 0, "sum": 1}
    ]
    assert rows(v1, 'SELECT "online", "lat" FROM "gateway_state"')[0]["lat"] == 31.24


def test_sqlite_write_points_merges_fields_like_influx(tmp_path: Path) -> None:
    writer = SqliteWriter({"path": str(tmp_path / "records.db")})
    try:
        event = AlertEvent("a-1", "smoke", "household:h-1", "notified", TS, "rules")
        writer.write_points([alert_event_point(event, "critical", "d-north")])
        writer.write_points([alert_event_point(event, "critical", "d-north", latency_ms=850)])
        writer.write_points([gateway_state_point(MARKET, False, TS)])
        (stored,) = writer.stored_points("alert_event")
        assert dict(stored.fields)["latency_ms"] == 850 and dict(stored.fields)["value"] == 1
        assert dict(stored.tags) == {
            "district": "d-north",
            "kind": "smoke",
            "severity": "critical",
            "state": "notified",
        }
        assert writer.stored_points("gateway_state") == [gateway_state_point(MARKET, False, TS)]
    finally:
        writer.close()


def vm_series(vm: VictoriaMetrics, selector: str) -> list[dict[str, Any]]:
    """VictoriaMetrics buffers for up to a second: flush, then poll briefly (bounded)."""
    query = urllib.parse.urlencode({"match[]": selector})
    deadline = time.monotonic() + 5
    while True:
        vm.force_flush()
        with urllib.request.urlopen(f"{vm.url}/api/v1/export?{query}", timeout=10) as resp:
            series = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
        if series or time.monotonic() > deadline:
            return series
        time.sleep(0.1)


def test_influx_v2_write_points(victoria: VictoriaMetrics) -> None:
    writer = InfluxV2Writer({"url": victoria.url, "bucket": "shouhu"})
    gw = PlacedGateway(f"gw-{uuid.uuid4().hex[:8]}", "east", "market", 31.24, 121.48)
    try:
        writer.write_points([gateway_state_point(gw, True, TS)])
        (series,) = vm_series(victoria, f'gateway_state_lat{{gw="{gw.id}"}}')
    finally:
        writer.close()
    assert series["metric"] == {
        "__name__": "gateway_state_lat",
        "gw": gw.id,
        "site": "east",
        "zone": "market",
    }
    assert series["values"] == [31.24] and series["timestamps"] == [TS]
