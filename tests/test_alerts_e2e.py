"""Every rule end to end through the real broker: gateway envelopes in, people and gateways told.

A real Mosquitto (the session fixture), the collector in-process with its real SqliteWriter,
alert store and registry in ``tmp_path``, contacts whose apprise ``json://`` URLs point at a
local HTTP receiver (``tests/http_receiver.py``), and plain paho clients standing in for the
gateways and for a subscriber of ``shouhu/v1/alerts/#`` and ``down/cmd``.

Each test has its own gateway ids and client ids (the broker is shared by the session); the
collector sees other tests' traffic too, so assertions filter on this test's ids.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC
from http_receiver import HttpReceiver, Request
from mqtt_peers import GatewayClient

from collector.config import CollectorConfig, parse_config
from collector.domain import (
    Aed,
    Contact,
    Gateway,
    Household,
    PatrolBox,
    PatrolRoute,
    School,
    SmokeAlarm,
    Student,
    Wearer,
    Window,
)
from collector.ingest import RULE_REJECTED, Collector
from collector.points import Point
from collector.registry.store import Entity, RegistryStore
from collector.writers.sqlite import SqliteWriter
from shouhu import wire
from shouhu.cli import main

ALL_DAYS = frozenset(range(7))
_ids = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}-{uuid.uuid4().hex[:6]}"


def now_ms() -> int:
    return int(time.time() * 1000)


def until(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


# --- the far ends: gateways, subscribers, people ----------------------------------------------


class Listener:
    """A subscriber of the collector's output: alert events and gateway commands."""

    def __init__(self, host: str, port: int, topics: Sequence[str]) -> None:
        self._lock = threading.Lock()
        self.messages: list[tuple[str, bytes]] = []
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("listen"))
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(host, port)
        self.client.subscribe([(t, 1) for t in topics])
        self.client.loop_start()
        assert subscribed.wait(5), "listener not subscribed"

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def raw(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p in self.messages if t == topic]

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(p) for p in self.raw(topic)]

    def alert_events(self, kind: str, key: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.on(wire.alerts_topic(kind)) if key is None or e["key"] == key]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class PointKeepingWriter(SqliteWriter):
    """The real SqliteWriter plus ``write_points`` keeping the derived points in memory."""

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self.points: list[Point] = []

    def write_points(self, points: Sequence[Point]) -> None:
        self.points.extend(points)


def bodies(requests: Sequence[Request]) -> list[dict[str, Any]]:
    return [r.json() for r in requests]


def contact(
    rx: HttpReceiver, name: str, path: str, order: int = 0, role: str = "family"
) -> Contact:
    return Contact(f"c-{path.strip('/')}", name, rx.url("json", path), role, order)


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def rx() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture
def gateways(mosquitto: Any) -> Iterator[GatewayClient]:
    client = GatewayClient(mosquitto.host, mosquitto.port)
    yield client
    client.close()


class Setup:
    """One test's collector world: registry, config and the collectors it starts."""

    def __init__(self, mosquitto: Any, tmp_path: Path) -> None:
        self.mosquitto = mosquitto
        self.tmp = tmp_path
        self.state = str(tmp_path / "state.db")
        self.client_id = unique("collector")
        self.registry = RegistryStore(tmp_path / "registry.sqlite")
        self.running: list[Collector] = []
        self.writer: PointKeepingWriter | None = None

    def config(self, rules: dict[str, Any], alerts: dict[str, Any]) -> CollectorConfig:
        doc = {
            "broker": {
                "url": f"mqtt://{self.mosquitto.host}:{self.mosquitto.port}",
                "client_id": self.client_id,
            },
            "writer": {"kind": "sqlite", "path": str(self.tmp / "records.db")},
            "state": {"path": self.state},
            # no registry.path: the default is registry.sqlite beside the state db
            "rules": {"tz": "UTC", "gateway": {"health_interval_s": 86400}, **rules},
            "alerts": {"escalate_after_s": 3600, **alerts},
            "notify": {"attempts": 2, "backoff_s": 0.05},
        }
        return parse_config(doc, "test.yaml")

    def start(self, config: CollectorConfig) -> Collector:
        self.writer = PointKeepingWriter({"path": str(self.tmp / "records.db")})
        col = Collector(config, writer=self.writer)
        col.start()
        self.running.append(col)
        assert col.wait_connected(10), "collector did not connect"
        time.sleep(0.3)  # SUBACK before anything is published
        return col

    def stop(self, col: Collector) -> None:
        col.stop(drain_timeout=5)
        self.running.remove(col)

    def close(self) -> None:
        for col in list(self.running):
            self.stop(col)
        self.registry.close()


@pytest.fixture
def setup(mosquitto: Any, tmp_path: Path) -> Iterator[Setup]:
    s = Setup(mosquitto, tmp_path)
    yield s
    s.close()


def fill(setup: Setup, values: Sequence[Entity]) -> None:
    setup.registry.add_all(values)


# --- smoke: one incident, interlinked alarms, escalation, clearing ---------------------------------

KITCHEN = "rflink:FA20RF:97e3b2"
SMOKE_PROFILE = "smoke-rflink@1"


@pytest.mark.timeout(60)
def test_smoke_alarm_sounds_the_household_and_calls_for_help(
    setup: Setup, gateways: GatewayClient, rx: HttpReceiver, mosquitto: Any
) -> None:
    gw_a, gw_b = unique("gw-hall"), unique("gw-stair")
    address = "12 Willow Lane, flat 3"
    family = contact(rx, "Sun Li", "/smoke-family", 0)
    brigade = contact(rx, "Brigade 4", "/smoke-brigade", 1, "fire_brigade")
    fill(
        setup,
        [
            Gateway(gw_a, "willow-3", "home", 31.23, 121.47),
            Gateway(gw_b, "willow-3-stair", "home", 31.2301, 121.4701),
            Household(
                "h-1",
                address,
                frozenset({gw_a, gw_b}),
                "district-4",
                (SmokeAlarm(KITCHEN, "h-1", "kitchen"),),
                (family, brigade),
            ),
        ],
    )
    listener = Listener(
        mosquitto.host,
        mosquitto.port,
        ["shouhu/v1/alerts/#", wire.down_topic(gw_a, "cmd"), wire.down_topic(gw_b, "cmd")],
    )
    col = setup.start(setup.config({}, {"escalate_after_by_kind": {"smoke": 1}}))
    try:
        # Both household gateways hear the same alarm: one incident, one command per gateway.
        gateways.send(gw_a, "alarm", SMOKE_PROFILE, KITCHEN, {"event": "alarm", "rssi": -60})
        gateways.send(gw_b, "alarm", SMOKE_PROFILE, KITCHEN, {"event": "alarm", "rssi": -75})

        first = bodies(rx.wait_for(1, "/smoke-family"))[0]
        assert first["title"] == "Smoke alarm [critical]"
        assert address in first["message"] and "kitchen" in first["message"]
        assert until(lambda: len(listener.raw(wire.down_topic(gw_b, "cmd"))) >= 1)
        for gw in (gw_a, gw_b):
            commands = listener.on(wire.down_topic(gw, "cmd"))
            assert [{k: v for k, v in c.items() if k != "id"} for c in commands] == [
                {"cmd": "sound", "household": "h-1", "device": KITCHEN}
            ]
            assert commands[0]["id"]

        # Nobody acknowledges within 1 s: the next contact order (the brigade) hears it.
        escalated = bodies(rx.wait_for(1, "/smoke-brigade", timeout=5))[0]
        assert escalated["title"] == "Smoke alarm [critical]"

        gateways.send(gw_a, "alarm", SMOKE_PROFILE, KITCHEN, {"event": "alarm_cleared"})
        assert until(lambda: any(e["state"] == "resolved" for e in listener.alert_events("smoke")))
        assert until(lambda: len(listener.raw(wire.down_topic(gw_b, "cmd"))) >= 2)
        for gw in (gw_a, gw_b):
            assert [c["cmd"] for c in listener.on(wire.down_topic(gw, "cmd"))] == [
                "sound",
                "silence",
            ]
        # everyone reached hears the resolution
        resolved = [b for b in bodies(rx.wait_for(2, "/smoke-family")) if "Resolved" in b["title"]]
        assert len(resolved) == 1
        rx.wait_for(2, "/smoke-brigade")

        events = listener.alert_events("smoke", "h-1")
        assert len({e["id"] for e in events}) == 1, "two gateways, one incident"
        assert [e["state"] for e in events][:2] == ["raised", "notified"]
        assert events[-1]["state"] == "resolved"
        assert events[0]["severity"] == "critical" and events[0]["data"]["household"] == "h-1"
        for _, payload in listener.messages:  # the public events never carry the address
            assert b"Willow Lane" not in payload and b"Sun Li" not in payload

        assert setup.registry is not None
        store = col.alert_store
        assert store is not None
        rows = store.list_alerts(open_only=False, kind="smoke")
        assert [(r.key, r.state) for r in rows] == [("h-1", "resolved")]
        stats = col.stats()
        assert stats.rules and stats.notified >= 4 and stats.rules_errors == 0
        assert "notified" in stats.line() and "alerts open" in stats.line()
    finally:
        listener.close()


# --- wanderer, missing person, school, patrol ------------------------------------------------------


def sun_message(meta_key: bytes, file_key: bytes, uid: bytes, counter: int) -> tuple[str, str]:
    """Encrypted PICCData and SDMMAC as an NTAG 424 DNA writes them (NXP AN12196)."""
    ctr_le = counter.to_bytes(3, "little")
    plain = bytes([0xC7]) + uid + ctr_le + os.urandom(5)  # UID + counter mirrored, UID 7 bytes
    enc = Cipher(algorithms.AES(meta_key), modes.CBC(bytes(16))).encryptor()
    picc = enc.update(plain) + enc.finalize()
    sv2 = (bytes.fromhex("3cc300010080") + uid + ctr_le).ljust(16, b"\x00")
    session = CMAC(algorithms.AES(file_key))
    session.update(sv2)
    mac = CMAC(algorithms.AES(session.finalize()))
    return picc.hex(), mac.finalize()[1::2].hex()


@pytest.mark.timeout(60)
def test_wanderer_footprints_school_and_patrol(
    setup: Setup, gateways: GatewayClient, rx: HttpReceiver, mosquitto: Any
) -> None:
    gw_home, gw_market, gw_station = unique("gw-home"), unique("gw-market"), unique("gw-station")
    gw_school, gw_unit = unique("gw-school"), unique("gw-unit")
    amulet_w, amulet_l, amulet_z = (
        f"ibeacon:fda50693a4e24fb1afcfc6eb07647825:1:{n}" for n in (1, 2, 3)
    )
    hour = datetime.now(UTC).hour
    later = Window(ALL_DAYS, f"{(hour + 2) % 24:02d}:00", f"{(hour + 3) % 24:02d}:00")
    meta_key, file_key, uid = os.urandom(16), os.urandom(16), bytes.fromhex("04de5f1eacc040")
    fill(
        setup,
        [
            Gateway(gw_home, "willow-3", "home-w", 31.23, 121.47),
            Gateway(gw_market, "east-market", "market", 31.24, 121.48),
            Gateway(gw_station, "east-station", "station", 31.25, 121.49),
            Gateway(gw_school, "willow-primary", "school"),
            # always at risk: a window of the whole day, every day
            Wearer(
                "w-1", "Grandma Wang", amulet_w, frozenset({gw_home}), frozenset({"home-w"}),
                (Window(ALL_DAYS, "00:00", "00:00"),),
                contacts=(contact(rx, "Wang Jun", "/wanderer-family"),),
            ),
            # at risk only later today: the same walk raises nothing now
            Wearer(
                "w-2", "Old Li", amulet_l, frozenset({gw_home}), frozenset({"home-w"}), (later,),
                contacts=(contact(rx, "Li Na", "/li-family"),),
            ),
            Wearer(
                "w-3", "Uncle Zhao", amulet_z, frozenset({gw_home}),
                contacts=(contact(rx, "Police desk", "/missing-desk", role="police_desk"),),
            ),
            School("s-1", "Willow Primary", frozenset({gw_school})),
            Student("st-1", "Xiao Ming", "card:5f2c9a", "s-1",
                    (contact(rx, "Ming Hua", "/guardian", role="guardian"),)),
            PatrolBox("box-1", "ntag424:04de5f1eacc040", 31.24, 121.48, "market gate",
                      meta_key.hex(), file_key.hex()),
            PatrolRoute("route-1", gw_unit, ("box-1",),
                        contacts=(contact(rx, "Police desk", "/police", role="police_desk"),)),
        ],
    )  # fmt: skip
    listener = Listener(mosquitto.host, mosquitto.port, ["shouhu/v1/alerts/#"])
    rules = {"wanderer": {"min_sightings": 2, "min_gateways": 2, "window_s": 300}}
    col = setup.start(setup.config(rules, {}))
    try:
        # Wanderer: two non-safe gateways agree during the risk schedule.
        for gw in (gw_market, gw_station):
            for amulet in (amulet_w, amulet_l):
                gateways.send(gw, "sighting", "amulet-ibeacon@1", amulet,
                              {"event": "enter", "rssi": -80, "rssi_avg": -80.0, "count": 3})  # fmt: skip
        alert = bodies(rx.wait_for(1, "/wanderer-family"))[0]
        assert alert["title"].startswith("Wanderer: outside the safe zones")
        assert "Grandma Wang" in alert["message"] and "east-" in alert["message"]
        assert until(lambda: len(listener.alert_events("wanderer", "w-1")) >= 2)
        raised = listener.alert_events("wanderer", "w-1")[0]
        assert raised["severity"] == "critical" and raised["subjects"] == ["wearer:w-1"]

        # Missing person: reported missing while the collector runs (the registry is reloaded),
        # then every sighting is a footprint for the desk.
        setup.registry.set_missing("w-3", True)
        time.sleep(1.2)  # the rules service polls the registry's change counter once a second
        gateways.send(gw_station, "sighting", "amulet-ibeacon@1", amulet_z,
                      {"event": "enter", "rssi": -70, "rssi_avg": -70.0, "count": 1})  # fmt: skip
        footprint = bodies(rx.wait_for(1, "/missing-desk"))[0]
        assert footprint["title"] == "Footprint of a missing person"
        assert "Uncle Zhao" in footprint["message"] and "31.25" in footprint["message"]

        # School: the first tap of the day at the school gate is an arrival.
        gateways.send(gw_school, "tap", "student-card@1", "card:5f2c9a", {"event": "tap"})
        arrival = bodies(rx.wait_for(1, "/guardian"))[0]
        assert arrival["title"] == "Student arrived at school"
        assert "Xiao Ming arrived at Willow Primary" in arrival["message"]

        # Patrol: a genuine check-in, the same URL shown again, and a forged MAC.
        picc, cmac = sun_message(meta_key, file_key, uid, 5)
        sun = {"event": "tap", "clone_proof": True, "picc_data": picc, "cmac": cmac}
        t = now_ms()
        gateways.send(gw_unit, "tap", "patrol-ntag424@1", "ntag424:04de5f1eacc040", sun, t)
        gateways.send(gw_unit, "tap", "patrol-ntag424@1", "ntag424:04de5f1eacc040", sun, t + 10)
        picc6, cmac6 = sun_message(meta_key, file_key, uid, 6)
        forged = {**sun, "picc_data": picc6, "cmac": ("0" if cmac6[0] != "0" else "1") + cmac6[1:]}
        gateways.send(gw_unit, "tap", "patrol-ntag424@1", "ntag424:04de5f1eacc040", forged, t + 20)
        police = rx.wait_for(2, "/police")
        assert until(lambda: len(listener.alert_events("patrol_abnormal")) >= 4)
        abnormal = [e for e in listener.alert_events("patrol_abnormal") if e["state"] == "raised"]
        assert sorted(tuple(e["data"]["reasons"]) for e in abnormal) == [("bad_mac",), ("replay",)]
        assert {e["data"]["counter"] for e in abnormal} == {5, 6}
        assert all("abnormal" in b["message"] for b in bodies(police))

        # A sighting a rule cannot read is dead-lettered; the rest goes on.
        gateways.send(gw_market, "sighting", "amulet-ibeacon@1", amulet_w, {"event": "bogus"})
        assert until(lambda: col.dead_letters.count(RULE_REJECTED) == 1)

        # Only the wearer at risk now raised an alert; nobody else was told anything.
        time.sleep(0.3)
        assert rx.at("/li-family") == []
        assert listener.alert_events("wanderer", "w-2") == []
        for _, payload in listener.messages:
            for name in (b"Grandma Wang", b"Uncle Zhao", b"Xiao Ming", b"Wang Jun"):
                assert name not in payload
        assert col.stats().rules_errors == 0
    finally:
        listener.close()


# --- AED: missing via the clock, low battery; ack through the CLI; restart mid-way ---------------


@pytest.mark.timeout(60)
def test_aed_alerts_ack_and_restart(
    setup: Setup, gateways: GatewayClient, rx: HttpReceiver, mosquitto: Any
) -> None:
    gw_aed = unique("gw-lobby")
    fill(
        setup,
        [
            Gateway(gw_aed, "town-hall", "lobby"),
            Aed("a-1", "eddystone:edd1cebeac0a0a0a0a0a:0000000000a1", gw_aed, "town hall lobby",
                (contact(rx, "Caretaker", "/aed1-first", 0), contact(rx, "Desk", "/aed1-second", 1))),
            Aed("a-2", "eddystone:edd1cebeac0a0a0a0a0a:0000000000a2", gw_aed, "library",
                (contact(rx, "Librarian", "/aed2-first", 0), contact(rx, "Desk", "/aed2-second", 1))),
        ],
    )  # fmt: skip
    listener = Listener(mosquitto.host, mosquitto.port, ["shouhu/v1/alerts/#"])
    # The profile aed-eddystone says battery_low_mv 2500; the configured default is lower, so
    # an alert at 2300 mV proves the collector applied the device profiles.
    rules = {"aed": {"missing_after_s": 1, "default_battery_low_mv": 2000}}
    config = setup.config(rules, {"escalate_after_by_kind": {"aed_missing": 8}})
    col = setup.start(config)
    try:
        # Never heard by their gateway: the tick raises aed_missing for both.
        missing1 = bodies(rx.wait_for(1, "/aed1-first", timeout=6))[0]
        rx.wait_for(1, "/aed2-first", timeout=6)
        assert missing1["title"] == "AED not heard at its place: moved or stolen [critical]"
        gateways.send(gw_aed, "event", "aed-eddystone@1", "eddystone:edd1cebeac0a0a0a0a0a:0000000000a1",
                      {"event": "telemetry", "battery_mv": 2300, "temp_c": 21.5})  # fmt: skip
        battery = bodies(rx.wait_for(2, "/aed1-first"))[1]
        assert battery["title"] == "AED beacon battery low [warning]"
        assert "2300 mV" in battery["message"]

        # Restart: the open alerts and the escalation timers survive.
        setup.stop(col)
        col = setup.start(config)
        assert col.alert_store is not None
        open_aed = {
            (r.kind, r.key, r.state)
            for r in col.alert_store.list_alerts()
            if r.kind.startswith("aed")
        }
        assert open_aed == {
            ("aed_missing", "a-1", "notified"),
            ("aed_missing", "a-2", "notified"),
            ("aed_battery_low", "a-1", "notified"),
        }
        assert col.rules is not None and col.rules.open_alert_count() >= 3
        assert until(col.alert_store.collector_alive, 5), "the new collector never ticked"
        a1 = [r for r in col.alert_store.list_alerts(kind="aed_missing") if r.key == "a-1"][0]

        result = CliRunner().invoke(
            main, ["alerts", "ack", a1.id, "--by", "desk-7", "--db", setup.state, "--wait", "5"]
        )
        assert result.exit_code == 0, result.output
        assert "applied by the running collector" in result.output

        # a-2: nobody acknowledged, so the escalation timer set before the restart fires.
        second = bodies(rx.wait_for(1, "/aed2-second", timeout=12))[0]
        assert second["title"].startswith("AED not heard")
        time.sleep(1.0)  # a-1 was due at the same moment: its escalation stopped with the ack
        assert rx.at("/aed1-second") == []
        row = col.alert_store.get(a1.id)
        assert row is not None and row.state == "acknowledged" and row.acked_by == "desk-7"
        assert until(
            lambda: any(
                e["state"] == "acknowledged" for e in listener.alert_events("aed_missing", "a-1")
            )
        )
        assert b"town hall lobby" not in b"".join(p for _, p in listener.messages)
    finally:
        listener.close()


# --- gateway: offline / online through the retained status ------------------------------------------


@pytest.mark.timeout(60)
def test_gateway_offline_and_back(
    setup: Setup, gateways: GatewayClient, rx: HttpReceiver, mosquitto: Any
) -> None:
    gw = unique("gw-east")
    fill(setup, [Gateway(gw, "east-017", "market", 31.24, 121.48)])
    listener = Listener(mosquitto.host, mosquitto.port, [wire.alerts_topic("gateway_offline")])
    ops = {"id": "ops", "name": "Ops rota", "url": rx.url("json", "/ops"), "role": "operator"}
    col = setup.start(setup.config({"operators": [ops]}, {}))
    try:
        gateways.send(gw, "health", "gateway@1", f"gw:{gw}",
                      {"outbox_depth": 0, "sources": {"ble": {"present": True}}})  # fmt: skip
        gateways.status(gw, "offline")  # what the broker sends as the gateway's Last Will
        assert until(lambda: any(gw in b["message"] for b in bodies(rx.at("/ops"))))
        mine = [b for b in bodies(rx.at("/ops")) if gw in b["message"]]
        assert mine[0]["title"] == "Gateway offline [warning]"
        gateways.status(gw, "online")
        assert until(
            lambda: (
                [e["state"] for e in listener.alert_events("gateway_offline", gw)][-1:]
                == ["resolved"]
            )
        )
        states = [e["state"] for e in listener.alert_events("gateway_offline", gw)]
        assert states == ["raised", "notified", "resolved"]
        assert col.writer is setup.writer and setup.writer is not None
        state_points = [
            p for p in setup.writer.points
            if p.measurement == "gateway_state" and ("gw", gw) in p.tags
        ]  # fmt: skip
        online = [dict(p.fields)["online"] for p in state_points]
        assert online[0] == 1 and 0 in online and online[-1] == 1  # health, offline, online
        assert ("site", "east-017") in state_points[0].tags
        assert dict(state_points[0].fields)["lat"] == 31.24
    finally:
        gateways.clear_status(gw)
        listener.close()
