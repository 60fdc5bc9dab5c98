"""Every panel and variable query of every board runs against a real InfluxDB 1.x with city data.

Two data sets: a real city run through Mosquitto and the real collector (``real_city``, see the
second half) and a synthetic one (``city_dataset``) written straight through ``InfluxV1Writer``,
whose known numbers some panels are checked against. Queries get what Grafana would substitute:
``$timeFilter`` → the last hour, ``$__interval`` → 1m, variables → a value their own ``SHOW TAG
VALUES`` query returns (and, in a second pass, "All" = ``.*``). Each query must parse and return
at least one series.
"""

from __future__ import annotations

import itertools
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC
from http_receiver import HttpReceiver
from services import InfluxDB1

from collector.alerts.lifecycle import AlertEvent
from collector.config import parse_config
from collector.derived import (
    alert_event_point,
    gateway_state_point,
    patrol_checkin_point,
    school_tap_point,
)
from collector.domain import Contact, Gateway, PatrolRoute, Wearer, Window
from collector.ingest import Collector
from collector.points import Point
from collector.registry.csv_import import import_csv
from collector.registry.store import OwnedContact, RegistryStore
from collector.rules.actions import Verdict
from collector.writers.influx_v1 import InfluxV1Writer
from grafana.dashboards import Json, dashboards
from shouhu import wire
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

    def add(gw: str, ts: int, kind: Any, profile: str, device: str, data: dict[str, Any]) -> Record:
        seqs[gw] += 1
        record = Record(seqs[gw], ts, kind, profile, device, data)
        ds.records[gw].append(record)
        return record

    for minute in range(50):
        ts = start + minute * MIN
        for i, device in enumerate(AMULETS):
            gw = GATEWAYS[(minute // 10 + i) % 3].id
            data = {"event": "update" if minute % 10 else "enter", "rssi": -60.0 - i - minute % 7}
            add(gw, ts + i, "sighting", "amulet-ibeacon@1", device, data)
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
        add(gw, ts, "alarm", f"smoke-{n}@1", device, alarm)
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
    writer = InfluxV1Writer(
        {"url": influxdb1.url, "database": "grafana_city", "create_database": True}
    )
    # as the collector does: readings of registered gateways get their place
    writer.gateway_lookup = {g.id: g for g in GATEWAYS}.get
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


def resolve_variables(
    writer: InfluxV1Writer, board: Json, *, all_values: bool, preferred: Mapping[str, str]
) -> dict[str, str]:
    """Run each variable's query in order, as Grafana does, and pick the value to check with."""
    values: dict[str, str] = {}
    for var in board["templating"]["list"]:
        offered = tag_values(writer, substitute(var["query"], values))
        name = var["name"]
        assert preferred[name] in offered, f"{board['uid']}: ${name} offers {offered}"
        if all_values and var["includeAll"]:
            values[name] = var["allValue"]
        else:
            values[name] = regex_escape(preferred[name])
    return values


def assert_panel_has_series(
    writer: InfluxV1Writer,
    where: str,
    board: Json,
    query: str,
    *,
    all_values: bool,
    preferred: Mapping[str, str],
) -> None:
    """The query, variables resolved like Grafana, returns at least one non-empty series."""
    values = resolve_variables(writer, board, all_values=all_values, preferred=preferred)
    influxql = substitute(query, values)
    (result,) = writer.query(influxql)  # an InfluxQL error raises StorageError: the test fails
    series = result.get("series", [])
    assert series, f"{where}: no series for {influxql}"
    assert any(any(v is not None for v in row[1:]) for s in series for row in s["values"]), (
        f"{where}: only empty values for {influxql}"
    )
    # grouped by a tag (site, district...): some group must be a real one, not the empty tag
    assert any(all(s.get("tags", {}).values()) for s in series), f"{where}: only empty tags"
    columns = series[0]["columns"]
    if "lat" in columns:  # a map: something must have a position
        lat, lon = columns.index("lat"), columns.index("lon")
        positions = [r for s in series for r in s["values"] if None not in (r[lat], r[lon])]
        assert positions, f"{where}: nothing to put on the map for {influxql}"


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
    assert_panel_has_series(city, where, board, query, all_values=all_values, preferred=PREFERRED)


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


# --- the real path: a simulated city through Mosquitto and the real collector ----------------
#
# Gateways publish batch envelopes (paho + ``wire.encode_batch``) to the session's Mosquitto; an
# in-process ``Collector`` built from its configuration (writer ``influx-v1`` to the session's
# InfluxDB, registry imported from ``examples/registry`` plus a few test entries, rules on, apprise
# ``json://`` contacts at a local receiver) stores, enriches, judges and writes derived points.
# Then every panel query runs against what the collector wrote.
#
# The city runs on one clock a few seconds behind the wall clock (``CityClock``), shared by the
# gateways and the collector: a patrol window ending at the last full minute then closes while
# the collector runs, so the "missed checkpoint" panels get a real verdict of the rule engine.

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "registry"
ALL_DAYS = frozenset(range(7))
WANDERER_AMULET = "ibeacon:fda50693a4e24fb1afcfc6eb07647825:1:9"
PATROL_UNIT = "gw-patrol-3"  # the unit's handheld NFC gateway
BOX_101_UID = bytes.fromhex("04c28a1a2b6f80")  # keys of box-101 in examples/registry/boxes.csv
BOX_101_KEYS = (
    bytes.fromhex("00112233445566778899aabbccddeeff"),
    bytes.fromhex("ffeeddccbbaa99887766554433221100"),
)
REAL_PREFERRED = {
    "site": "Dongsi Community Centre",
    "zone": "dongsi-home",
    "gateway": "gw-east-017",
    "device": WANDERER_AMULET,
    "district": "Dongcheng",
    "unit": PATROL_UNIT,
    "box": "box-101",
    "school": "sch-dongsi",
}
# Card taps happen at the school gate, so the Schools board is checked at that gateway.
REAL_PREFERRED_BY_BOARD = {
    "shouhu-schools": {
        **REAL_PREFERRED,
        "site": "Dongsi Primary School Gate",
        "zone": "school-dongsi",
        "gateway": "gw-east-020",
    }
}
LEAD_S = 3.0  # the city clock starts this long before the minute boundary it then crosses


class CityClock:
    """Wall clock minus a fixed offset: at start it reads ``LEAD_S`` before ``boundary_ms``."""

    def __init__(self) -> None:
        now = time.time()
        self.boundary_ms = int(now // 60) * 60_000  # the last full minute of the wall clock
        self.offset_s = now - self.boundary_ms / 1000 + LEAD_S

    def __call__(self) -> float:
        return time.time() - self.offset_s

    def ms(self) -> int:
        return int(self() * 1000)


def hhmm(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M")


def sun_message(meta_key: bytes, file_key: bytes, uid: bytes, counter: int) -> tuple[str, str]:
    """Encrypted PICCData and SDMMAC as an NTAG 424 DNA writes them (NXP AN12196)."""
    ctr_le = counter.to_bytes(3, "little")
    plain = bytes([0xC7]) + uid + ctr_le + os.urandom(5)
    enc = Cipher(algorithms.AES(meta_key), modes.CBC(bytes(16))).encryptor()
    picc = enc.update(plain) + enc.finalize()
    sv2 = (bytes.fromhex("3cc300010080") + uid + ctr_le).ljust(16, b"\x00")
    session = CMAC(algorithms.AES(file_key))
    session.update(sv2)
    mac = CMAC(algorithms.AES(session.finalize()))
    return picc.hex(), mac.finalize()[1::2].hex()


class CityGateways:
    """Publishes what the city's gateways would: one envelope per stream, retained status."""

    def __init__(self, host: str, port: int, clock: CityClock) -> None:
        self.clock = clock
        # seq starts high and run-unique: the session broker may carry other tests' traffic
        self._seq: dict[str, itertools.count[int]] = {}
        self._seq_base = int(time.time()) % 1_000_000 * 1000
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"city-{uuid.uuid4().hex[:8]}"
        )
        self.client.connect(host, port)
        self.client.loop_start()

    def _publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)
        assert info.is_published()

    def send(self, gw: str, kind: str, items: list[tuple[int, str, str, dict[str, Any]]]) -> None:
        """One batch of ``(ts, profile, device, data)`` readings of one stream."""
        seqs = self._seq.setdefault(gw, itertools.count(self._seq_base + 1))
        records = [Record(next(seqs), ts, kind, p, d, data) for ts, p, d, data in items]  # type: ignore[arg-type]
        self._publish(wire.up_topic(gw, kind), wire.encode_batch(gw, records, self.clock.ms()))

    def status(self, gw: str, state: str) -> None:
        body = wire.encode_status(state, agent_version="city-sim", ts=self.clock.ms())
        self._publish(wire.status_topic(gw), body, retain=True)

    def close(self) -> None:
        for gw in ("gw-east-017", "gw-east-018", "gw-east-019", "gw-east-020", PATROL_UNIT):
            self._publish(wire.status_topic(gw), b"", retain=True)  # leave no retained status
        self.client.disconnect()
        self.client.loop_stop()


def city_registry(registry: RegistryStore, rx: HttpReceiver, clock: CityClock) -> None:
    """The example registry (its contacts replaced by local receivers) plus test entries."""
    import_csv(registry, sorted(p for p in EXAMPLES.glob("*.csv") if p.name != "contacts.csv"))
    window_end = clock.boundary_ms
    window = Window(ALL_DAYS, hhmm(window_end - 30 * MIN), hhmm(window_end))

    def to(owner_kind: str, owner: str, path: str, role: str = "family") -> OwnedContact:
        return OwnedContact(owner_kind, owner, Contact(f"c{path}", "x", rx.url("json", path), role))

    registry.add_all(
        [
            Gateway(PATROL_UNIT, "Dongsi Police Station", "patrol"),
            # at risk all day: leaving the safe zone raises an alert whenever the test runs
            Wearer(
                "w-900", "Test Wearer", WANDERER_AMULET, frozenset({"gw-east-017"}),
                frozenset({"dongsi-home"}), (Window(ALL_DAYS, "00:00", "00:00"),),
            ),
            # any time: taps of the unit land here (sorted first), so route-b misses them
            PatrolRoute("route-a-anytime", PATROL_UNIT, ("box-101", "box-102")),
            PatrolRoute("route-b-window", PATROL_UNIT, ("box-101", "box-103"), (window,)),
            to("wearer", "w-900", "/wanderer"),
            to("household", "hh-0043", "/smoke-family"),
            to("household", "hh-0042", "/smoke-family-42"),
            to("route", "route-b-window", "/police", "police_desk"),
            to("student", "stu-2019-031", "/guardian", "guardian"),
        ]
    )  # fmt: skip


def health(uptime_s: int, minute: int) -> dict[str, Any]:
    """A gateway's health reading as ``edge_agent.health.health_reading`` makes it."""
    return {
        "uptime_s": uptime_s,
        "outbox_depth": minute % 3,
        "outbox_oldest_age_s": minute % 3,
        "outbox_evicted": 0,
        "outbox_overflow": 0,
        "accepted": 100 * minute,
        "decode_errors": minute // 2,
        "frames_dropped": 0,
        "sources": {
            "ble0": {"frames": 600 * minute, "errors": minute // 3, "present": True},
            "rf433": {"frames": 3 * minute, "errors": 0, "present": True},
        },
        "connected": True,
        "publish_lag_ms": 40 + minute,
        "published": 100 * minute,
        "acked": 100 * minute,
        "reconnects": minute // 4,
        "cpu_percent": 7.5 + minute,
        "rss_bytes": 48_000_000 + minute * 4096,
    }


def run_city(gws: CityGateways, clock: CityClock) -> None:
    """Five minutes of health, then sightings, a fire, patrol and school taps, a gateway down."""
    now = clock.ms()
    for gw in ("gw-east-017", "gw-east-018", "gw-east-019", "gw-east-020", PATROL_UNIT):
        gws.status(gw, "online")
        gws.send(
            gw,
            "health",
            [
                (now - k * MIN, "gateway@1", f"gw:{gw}", health(3600 - k * 60, 5 - k))
                for k in range(5, -1, -1)
            ],
        )
    amulet = "amulet-ibeacon@1"

    def seen(event: str, rssi: float, count: int) -> dict[str, Any]:
        return {"event": event, "rssi": rssi, "rssi_avg": rssi - 0.5, "count": count}

    # the wearer leaves home: heard at home, then by the metro exit and the school gate
    gws.send(
        "gw-east-017", "sighting", [(now - 4 * MIN, amulet, WANDERER_AMULET, seen("enter", -62, 4))]
    )
    gws.send(
        "gw-east-017", "sighting", [(now - 3 * MIN, amulet, WANDERER_AMULET, seen("exit", -88, 9))]
    )
    for gw in ("gw-east-019", "gw-east-020"):
        gws.send(
            gw,
            "sighting",
            [
                (now - 2 * MIN, amulet, WANDERER_AMULET, seen("enter", -75, 3)),
                (now - MIN, amulet, WANDERER_AMULET, seen("update", -74, 8)),
            ],
        )
    # the example wearers about their day
    for n, gw in ((2, "gw-east-017"), (3, "gw-east-018"), (4, "gw-east-019")):
        device = f"ibeacon:fda50693a4e24fb1afcfc6eb07647825:1:{n}"
        gws.send(gw, "sighting", [(now - 2 * MIN, amulet, device, seen("update", -66, 12))])

    # fire: hh-0043's alarm (heard by the community centre), hh-0042 reports a low battery
    gws.send(
        "gw-east-017",
        "alarm",
        [
            (
                now,
                "smoke-rflink@1",
                "rflink:fa20rf:97e3b2",
                {"event": "alarm", "protocol": "FA20RF", "id": "97e3b2"},
            )
        ],
    )
    gws.send(
        "gw-east-017",
        "event",
        [
            (
                now,
                "smoke-ev1527@1",
                "rf433:hh-0042-kitchen",
                {"event": "low_battery", "code": "a1b2c4"},
            )
        ],
    )
    # an AED beacon's telemetry (Eddystone TLM)
    gws.send(
        "gw-east-019",
        "event",
        [
            (
                now,
                "aed-eddystone@1",
                "eddystone:5368cbe75f7e4a1d8a00:0000000000a1",
                {"event": "telemetry", "battery_mv": 2950, "temp_c": 21.5},
            )
        ],
    )

    # patrol: a genuine SUN check-in at box-101, the same URL replayed, a UID-only box-102
    picc, cmac = sun_message(*BOX_101_KEYS, BOX_101_UID, 5)
    sun = {"event": "tap", "clone_proof": True, "picc_data": picc, "cmac": cmac}
    gws.send(
        PATROL_UNIT,
        "tap",
        [
            (now, "patrol-ntag424@1", "nfc:04c28a1a2b6f80", sun),
            (now + 20, "patrol-ntag424@1", "nfc:04c28a1a2b6f80", sun),
        ],
    )
    gws.send(
        PATROL_UNIT,
        "tap",
        [
            (
                now + 90_000,
                "patrol-ntag21x@1",
                "nfc:04c28a1a2b6f81",
                {"event": "tap", "technology": "ntag21x", "clone_proof": False},
            )
        ],
    )

    # school: a child arrives and (after the debounce) leaves; another one arrives
    card = "student-card@1"
    tap = {"event": "tap", "technology": "Type4Tag", "clone_proof": False}
    gws.send(
        "gw-east-020",
        "tap",
        [
            (now, card, "card:ea318c1386e263ecf2e2f6f7", tap),
            (now + 1000, card, "card:3032d1a8ea9f7c6c3df52df6", tap),
        ],
    )
    gws.send("gw-east-020", "tap", [(now + 5000, card, "card:ea318c1386e263ecf2e2f6f7", tap)])

    # the metro exit gateway drops off (its Last Will)
    gws.status("gw-east-019", "offline")  # fmt: skip


def count_of(writer: InfluxV1Writer, query: str) -> int:
    (result,) = writer.query(query)
    return sum(int(row[1] or 0) for s in result.get("series", []) for row in s["values"])


def wait_for(what: str, cond: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"the city run never produced {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def real_city(
    mosquitto: Any, influxdb1: InfluxDB1, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InfluxV1Writer]:
    tmp = tmp_path_factory.mktemp("real-city")
    database = f"real_city_{uuid.uuid4().hex[:8]}"
    clock = CityClock()
    with HttpReceiver() as rx:
        with RegistryStore(tmp / "registry.sqlite") as registry:
            city_registry(registry, rx, clock)
        doc = {
            "broker": {
                "url": f"mqtt://{mosquitto.host}:{mosquitto.port}",
                "client_id": f"city-collector-{uuid.uuid4().hex[:8]}",
            },
            "writer": {"kind": "influx-v1", "url": influxdb1.url, "database": database,
                       "create_database": True},
            "state": {"path": str(tmp / "state.db")},
            "registry": {"path": str(tmp / "registry.sqlite")},
            "rules": {
                "tz": "UTC",
                "gateway": {"health_interval_s": 86400},
                "wanderer": {"min_sightings": 2, "min_gateways": 2, "window_s": 600},
                "school": {"debounce_s": 1},
                "operators": [{"id": "ops", "name": "Ops", "url": rx.url("json", "/ops"),
                               "role": "operator"}],
            },
            "alerts": {"escalate_after_s": 3600},
            "notify": {"attempts": 2, "backoff_s": 0.05},
        }  # fmt: skip
        collector = Collector(parse_config(doc, "city.yaml"), clock=clock)
        reader = InfluxV1Writer({"url": influxdb1.url, "database": database})
        gws = CityGateways(mosquitto.host, mosquitto.port, clock)
        collector.start()
        try:
            assert collector.wait_connected(10), "the collector did not connect"
            time.sleep(0.3)  # SUBACK before the gateways publish
            run_city(gws, clock)
            assert collector.wait_idle(15), "the collector did not take everything"
            wait_for("a smoke notification", lambda: bool(rx.at("/smoke-family")))
            wait_for(
                "alarm-to-notification latency",
                lambda: count_of(reader, 'SELECT count("latency_ms") FROM "alert_event"') > 0,
            )
            wait_for(
                "a missed checkpoint",
                lambda: (
                    count_of(
                        reader,
                        'SELECT count("value") FROM "patrol_checkin" WHERE "verdict" = \'missed\'',
                    )
                    > 0
                ),
            )
            assert collector.stats().rules_errors == 0
            assert collector.stats().dead_letters == 0
            yield reader
        finally:
            gws.close()
            collector.stop(drain_timeout=5)
            reader.close()


def board_preferred(board: Json) -> Mapping[str, str]:
    return REAL_PREFERRED_BY_BOARD.get(board["uid"], REAL_PREFERRED)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("all_values", [False, True], ids=["one-value", "all"])
@pytest.mark.parametrize(("where", "board", "query"), QUERIES, ids=[q[0] for q in QUERIES])
def test_every_panel_query_returns_series_from_the_real_collector(
    real_city: InfluxV1Writer, where: str, board: Json, query: str, all_values: bool
) -> None:
    assert_panel_has_series(
        real_city, where, board, query, all_values=all_values, preferred=board_preferred(board)
    )


def test_the_real_collector_enriched_raw_readings(real_city: InfluxV1Writer) -> None:
    """Places come from the registry: alarms by district, footprints with coordinates."""
    (result,) = real_city.query(
        'SELECT count("seq") FROM "alarm" GROUP BY "site", "zone", "district"'
    )
    (series,) = result["series"]
    assert series["tags"] == {
        "site": "Dongsi Community Centre",
        "zone": "dongsi-home",
        "district": "Dongcheng",  # hh-0042 and hh-0043 both say Dongcheng for gw-east-017
    }
    (result,) = real_city.query(
        f'SELECT "lat", "lon" FROM "sighting" WHERE "device" = \'{WANDERER_AMULET}\' '
        "AND \"gw\" = 'gw-east-019'"
    )
    assert {(row[1], row[2]) for row in result["series"][0]["values"]} == {(39.9241, 116.4346)}
    (result,) = real_city.query('SELECT count("seq") FROM "gateway_health" GROUP BY "site"')
    assert [s["tags"]["site"] for s in result["series"]] == [""], "health is not enriched"
