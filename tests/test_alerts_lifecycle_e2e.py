"""Every alert kind's whole life through the real broker: raised, notified, escalated, resolved.

``tests/test_alerts_e2e.py`` proves that each rule *fires* end to end; this file proves that each
alert then lives its lifecycle through the running collector: the public events on
``shouhu/v1/alerts/{kind}`` (``raised`` -> ``notified`` -> ``notified`` by ``escalation`` ->
``resolved``) and the deliveries at a real HTTP receiver behind apprise ``json://`` URLs
(contact order 0 first; order 1 once nobody acknowledged within ``escalate_after_s`` = 1 s;
both hear the resolution). Inputs are real MQTT: batch envelopes (``wire.encode_batch``) and the
retained status (``wire.encode_status``). An alert the rules cannot close is resolved by an
operator with ``shouhu alerts resolve ID --by NAME`` (click's CliRunner) while the collector runs.

Deadlines ("home by", "not arrived by", a patrol window closing) are whole minutes of local
time. Rather than wait up to a minute, the collector is given a clock (its ``clock`` parameter)
running at the real rate but shifted so that the next minute boundary is a few seconds away;
the gateways stamp their records with the same clock.

The broker is shared by the session: every test uses its own gateway ids and filters on them.
Smoke is covered in ``test_alerts_e2e.py`` and not repeated here.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from http_receiver import HttpReceiver
from mqtt_peers import GatewayClient

from collector.config import parse_config
from collector.domain import (
    Aed,
    Contact,
    Gateway,
    PatrolBox,
    PatrolRoute,
    School,
    Student,
    Wearer,
    Window,
)
from collector.ingest import Collector
from collector.registry.store import Entity, RegistryStore
from shouhu import wire
from shouhu.cli import main

ALL_DAYS = frozenset(range(7))
ESCALATE_AFTER_MS = 1000  # alerts.escalate_after_s in every configuration below
_ids = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}-{uuid.uuid4().hex[:6]}"


def until(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


@dataclass(frozen=True)
class ShiftedClock:
    """The collector's clock: real time plus ``offset_s`` (0 = the wall clock)."""

    offset_s: float = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset_s

    def ms(self) -> int:
        return int(self() * 1000)


def clock_before_minute(lead_s: float) -> tuple[ShiftedClock, int]:
    """A clock whose next whole minute (never local midnight, UTC) is ``lead_s`` away, and it."""
    real = time.time()
    deadline = (int(real) // 60 + 1) * 60
    if deadline % 86400 == 0:  # "today" would change under the deadline: take 00:01
        deadline += 60
    return ShiftedClock(deadline - lead_s - real), deadline * 1000


def hhmm(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M")


# --- the far ends: gateways, a subscriber, people ------------------------------------------------


class AlertListener:
    """A subscriber of ``shouhu/v1/alerts/#``: the public alert events, in arrival order."""

    def __init__(self, host: str, port: int) -> None:
        self._lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("listen"))
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(host, port)
        self.client.subscribe("shouhu/v1/alerts/#", qos=1)
        self.client.loop_start()
        assert subscribed.wait(5), "listener not subscribed"

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        event = json.loads(msg.payload)
        assert msg.topic == wire.alerts_topic(event["kind"]), msg.topic
        with self._lock:
            self.events.append(event)

    def of(self, kind: str, key: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["kind"] == kind and e["key"] == key]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def contacts(rx: HttpReceiver, name: str, role: str = "family") -> tuple[Contact, ...]:
    """Order 0 at ``/{name}/0`` and order 1 at ``/{name}/1``."""
    return tuple(
        Contact(
            f"c-{name}-{order}", f"{name} {order}", rx.url("json", f"/{name}/{order}"), role, order
        )
        for order in (0, 1)
    )


def delivered(rx: HttpReceiver, path: str, alert_id: str) -> list[dict[str, Any]]:
    """Bodies delivered at ``path`` about one alert (the notifier names the alert id in it)."""
    return [r.json() for r in rx.at(path) if f"(alert {alert_id})" in r.json()["message"]]


# --- one test's world ---------------------------------------------------------------------------


class World:
    """Registry, receiver, gateways, listener and the collector of one test."""

    def __init__(self, mosquitto: Any, tmp: Path, rx: HttpReceiver) -> None:
        self.mosquitto = mosquitto
        self.tmp = tmp
        self.rx = rx
        self.state = str(tmp / "state.db")
        self.registry = RegistryStore(tmp / "registry.sqlite")  # the collector's default path
        self.clock = ShiftedClock()
        self.gateways: GatewayClient | None = None
        self.listener = AlertListener(mosquitto.host, mosquitto.port)
        self.collector: Collector | None = None

    def start(self, entities: Sequence[Entity], rules: dict[str, Any], clock: ShiftedClock) -> None:
        self.registry.add_all(entities)
        self.clock = clock
        self.gateways = GatewayClient(self.mosquitto.host, self.mosquitto.port, clock.ms)
        doc = {
            "broker": {
                "url": f"mqtt://{self.mosquitto.host}:{self.mosquitto.port}",
                "client_id": unique("collector"),
            },
            "writer": {"kind": "sqlite", "path": str(self.tmp / "records.db")},
            "state": {"path": self.state},
            "rules": {
                "tz": "UTC",
                **rules,
                "gateway": {"health_interval_s": 86400, **rules.get("gateway", {})},
            },
            "alerts": {"escalate_after_s": ESCALATE_AFTER_MS // 1000},
            "notify": {"attempts": 2, "backoff_s": 0.05},
        }
        self.collector = Collector(parse_config(doc, "test.yaml"), clock=clock)
        self.collector.start()
        assert self.collector.wait_connected(10), "collector did not connect"
        time.sleep(0.3)  # SUBACK before anything is published

    @property
    def gw(self) -> GatewayClient:
        assert self.gateways is not None, "start() first"
        return self.gateways

    def close(self) -> None:
        if self.collector is not None:
            self.collector.stop(drain_timeout=5)
        if self.gateways is not None:
            self.gateways.close()
        self.listener.close()
        self.registry.close()

    # --- the proof -------------------------------------------------------------------------

    def raised(self, kind: str, key: str, timeout: float = 10.0) -> str:
        """Wait until ``(kind, key)`` is raised and notified; its alert id."""
        assert until(lambda: len(self.listener.of(kind, key)) >= 2, timeout), (
            f"{kind}/{key} not raised: {self.listener.of(kind, key)}"
        )
        first = self.listener.of(kind, key)[0]
        assert first["state"] == "raised" and first["actor"] == "rules", first
        return str(first["id"])

    def lifecycle(
        self,
        kind: str,
        key: str,
        people: str,
        title: str,
        resolve: Callable[[str], None],
        resolved_by: str = "rules",
    ) -> dict[str, Any]:
        """Raised -> order 0 told -> escalated to order 1 -> ``resolve(alert_id)`` -> all told.

        Returns the ``raised`` event for further checks of its public data.
        """
        alert_id = self.raised(kind, key)
        first, second = f"/{people}/0", f"/{people}/1"

        def mine() -> list[dict[str, Any]]:
            return [e for e in self.listener.of(kind, key) if e["id"] == alert_id]

        def told_twice(path: str) -> bool:
            return len(delivered(self.rx, path, alert_id)) == 2

        raised, notified = mine()[:2]
        assert notified["state"] == "notified" and notified["detail"] == "order 0: 1 contact(s)"
        assert until(lambda: len(delivered(self.rx, first, alert_id)) == 1)
        told = delivered(self.rx, first, alert_id)[0]
        assert told["title"] == f"{title} [{raised['severity']}]"

        # Nobody acknowledges: after escalate_after_s the next contact order hears it.
        assert until(lambda: len(mine()) >= 3, 5), f"{kind}/{key} never escalated: {mine()}"
        escalated = mine()[2]
        assert (escalated["state"], escalated["actor"]) == ("notified", "escalation"), escalated
        assert escalated["detail"] == "escalated to order 1: 1 contact(s)"
        assert escalated["at"] - notified["at"] >= ESCALATE_AFTER_MS
        assert until(lambda: len(delivered(self.rx, second, alert_id)) == 1)
        assert delivered(self.rx, second, alert_id)[0]["title"] == told["title"]
        assert len(delivered(self.rx, first, alert_id)) == 1, "order 0 told twice"

        resolve(alert_id)
        assert until(lambda: len(mine()) >= 4), f"{kind}/{key} never resolved: {mine()}"
        events = mine()
        assert [e["state"] for e in events] == ["raised", "notified", "notified", "resolved"]
        assert events[-1]["actor"] == resolved_by, events[-1]
        for path in (first, second):  # everyone reached hears the resolution, once
            assert until(partial(told_twice, path)), path
            bodies = delivered(self.rx, path, alert_id)
            assert bodies[-1]["title"] == f"Resolved: {told['title']}", bodies
        assert self.collector is not None and self.collector.alert_store is not None
        row = self.collector.alert_store.get(alert_id)
        assert row is not None and row.state == "resolved"
        return raised

    def resolve_by_operator(self, name: str) -> Callable[[str], None]:
        """``shouhu alerts resolve ID --by NAME`` against the running collector's state db."""

        def resolve(alert_id: str) -> None:
            result = CliRunner().invoke(
                main,
                ["alerts", "resolve", alert_id, "--by", name, "--db", self.state, "--wait", "5"],
            )
            assert result.exit_code == 0, result.output
            assert "resolve applied by the running collector" in result.output, result.output

        return resolve


@pytest.fixture
def world(mosquitto: Any, tmp_path: Path) -> Iterator[World]:
    with HttpReceiver() as rx:
        w = World(mosquitto, tmp_path, rx)
        try:
            yield w
        finally:
            w.close()


AMULET = "amulet-ibeacon@1"


def amulet(n: int) -> str:
    return f"ibeacon:fda50693a4e24fb1afcfc6eb07647825:7:{n}"


def sighting(event: str, rssi_avg: float = -80.0) -> dict[str, Any]:
    return {"event": event, "rssi": int(rssi_avg), "rssi_avg": rssi_avg, "count": 3}


# --- wanderer: outside the safe zones (hysteresis), left home ------------------------------------


@pytest.mark.timeout(60)
def test_wanderer_outside_and_left_home(world: World) -> None:
    """``wanderer`` closes after ``resolve_after_s`` back home; ``left_home`` when seen safe."""
    gw_home, gw_market, gw_station = unique("gw-home"), unique("gw-market"), unique("gw-station")
    world.start(
        [
            Gateway(gw_home, "willow-3", "home-w"),
            Gateway(gw_market, "east-market", "market", 31.24, 121.48),
            Gateway(gw_station, "east-station", "station", 31.25, 121.49),
            Wearer(
                "w-out",
                "Grandma Wang",
                amulet(1),
                frozenset({gw_home}),
                contacts=contacts(world.rx, "out"),
            ),
            Wearer(
                "w-left",
                "Old Li",
                amulet(2),
                frozenset({gw_home}),
                contacts=contacts(world.rx, "left"),
            ),
        ],  # fmt: skip
        {
            "wanderer": {
                "min_sightings": 2,
                "min_gateways": 2,
                "window_s": 300,
                "resolve_after_s": 1,
                "left_home_after_s": 1,
            }
        },
        ShiftedClock(),
    )
    gw = world.gw

    # Old Li walks out of the home gateway's range and is not seen anywhere safe.
    gw.send(gw_home, "sighting", AMULET, amulet(2), sighting("enter", -60.0))
    gw.send(gw_home, "sighting", AMULET, amulet(2), sighting("exit"))
    # Grandma Wang is heard by two gateways outside her safe zones.
    gw.send(gw_market, "sighting", AMULET, amulet(1), sighting("enter"))
    gw.send(gw_station, "sighting", AMULET, amulet(1), sighting("enter"))

    back_home_at: list[int] = []

    def back_home(alert_id: str) -> None:
        back_home_at.append(gw.send(gw_home, "sighting", AMULET, amulet(1), sighting("enter")).ts)

    raised = world.lifecycle(
        "wanderer",
        "w-out",
        "out",
        "Wanderer: outside the safe zones during the risk schedule",
        back_home,
    )
    assert raised["severity"] == "critical" and raised["data"]["gw"] == gw_station
    resolved = world.listener.of("wanderer", "w-out")[-1]
    assert resolved["detail"] == "back in a safe zone"
    assert resolved["at"] - back_home_at[0] >= 1000, "resolved before resolve_after_s (hysteresis)"

    def seen_home(alert_id: str) -> None:
        gw.send(gw_home, "sighting", AMULET, amulet(2), sighting("enter", -60.0))

    left = world.lifecycle(
        "wanderer_left_home",
        "w-left",
        "left",
        "Wanderer left home during the risk schedule",
        seen_home,
    )
    assert left["severity"] == "warning" and left["data"]["home_exit"] is not None
    assert world.listener.of("wanderer_left_home", "w-left")[-1]["detail"] == "seen in a safe zone"
    assert world.listener.of("wanderer", "w-left") == [], "Old Li was never outside"


# --- deadlines: not home by, home gateway offline, school not arrived, patrol round missed -------


@pytest.mark.timeout(60)
def test_deadlines_not_home_gateway_offline_school_and_patrol_missed(world: World) -> None:
    """Four alerts raised by the clock at one minute boundary, each closed its own way."""
    clock, deadline = clock_before_minute(lead_s=5.0)
    at = hhmm(deadline)
    gw_home_a, gw_home_b, gw_school, gw_unit = (
        unique("gw-home-a"), unique("gw-home-b"), unique("gw-school"), unique("gw-unit"),
    )  # fmt: skip
    box_a, box_b = "nfc:04a1a1a1a1a1a1", "nfc:04b2b2b2b2b2b2"
    window = Window(ALL_DAYS, hhmm(deadline - 60_000), at)  # closes at the deadline
    world.start(
        [
            Gateway(gw_home_a, "lane-1", "home-a"),
            Gateway(gw_home_b, "lane-2", "home-b"),
            Gateway(gw_school, "willow-primary", "school"),
            Wearer(
                "w-late",
                "Aunt Chen",
                amulet(11),
                frozenset({gw_home_a}),
                home_by=at,
                contacts=contacts(world.rx, "late"),
            ),
            Wearer(
                "w-dark",
                "Uncle Zhao",
                amulet(12),
                frozenset({gw_home_b}),
                home_by=at,
                contacts=contacts(world.rx, "dark"),
            ),
            School(
                "s-1", "Willow Primary", frozenset({gw_school}), not_arrived_by=at, days=ALL_DAYS
            ),
            Student(
                "st-late", "Xiao Ming", "card:late", "s-1", contacts(world.rx, "school", "guardian")
            ),
            Student(
                "st-early",
                "Xiao Hong",
                "card:early",
                "s-1",
                contacts(world.rx, "early", "guardian"),
            ),
            PatrolBox("box-a", box_a, 31.24, 121.48, "market gate"),
            PatrolBox("box-b", box_b, 31.241, 121.481, "market back"),
            PatrolRoute(
                "route-1",
                gw_unit,
                ("box-a", "box-b"),
                (window,),
                contacts=contacts(world.rx, "desk", "police_desk"),
            ),
        ],  # fmt: skip
        {"school": {"debounce_s": 1}},
        clock,
    )
    gw = world.gw
    # Before the deadline: Uncle Zhao's home gateway goes offline (its Last Will), Xiao Hong
    # arrives on time and the unit checks in at box a (box b is left out).
    gw.status(gw_home_b, "offline")
    gw.send(gw_school, "tap", "student-card@1", "card:early", {"event": "tap"})
    gw.send(gw_unit, "tap", "patrol-ntag21x@1", box_a, {"event": "tap", "clone_proof": False})
    assert until(lambda: len(world.rx.at("/early/0")) == 1), "Xiao Hong's arrival not told"
    world.raised("gateway_offline", gw_home_b)
    assert world.listener.of("gateway_offline", gw_home_b)[0]["at"] < deadline, (
        "the collector was too slow to set up before the deadline"
    )

    def seen_home(alert_id: str) -> None:
        gw.send(gw_home_a, "sighting", AMULET, amulet(11), sighting("enter", -60.0))

    not_home = world.lifecycle(
        "wanderer_not_home", "w-late", "late", "Wearer not home by the expected time", seen_home
    )
    assert not_home["at"] >= deadline
    assert world.listener.of("wanderer_not_home", "w-late")[-1]["detail"] == "seen at home"

    # Absence proves nothing while the home gateway is down: this alert instead of "not home".
    dark = world.lifecycle(
        "wanderer_home_gateway_offline",
        "w-dark",
        "dark",
        "Home gateway offline: cannot tell whether the wearer is home",
        lambda alert_id: gw.status(gw_home_b, "online"),
    )
    assert dark["data"] == {"gateways": [gw_home_b], "instead_of": "wanderer_not_home"}
    assert world.listener.of("wanderer_not_home", "w-dark") == []
    assert world.listener.of("gateway_offline", gw_home_b)[-1]["state"] == "resolved"

    def late_arrival(alert_id: str) -> None:
        gw.send(gw_school, "tap", "student-card@1", "card:late", {"event": "tap"})

    school = world.lifecycle(
        "school_not_arrived", "st-late", "school", "Student not arrived at school", late_arrival
    )
    assert school["data"]["deadline"] == deadline
    assert world.listener.of("school_not_arrived", "st-late")[-1]["detail"] == "arrived late"
    assert world.listener.of("school_not_arrived", "st-early") == [], "Xiao Hong came on time"

    # Nobody can prove a missed checkpoint was visited after all: an officer closes it.
    window_start = deadline - 60_000
    missed = world.lifecycle(
        "patrol_missed",
        f"route-1:box-b:{window_start}",
        "desk",
        "Patrol checkpoint missed",
        world.resolve_by_operator("sergeant-3"),
        resolved_by="sergeant-3",
    )
    assert missed["data"]["unit"] == gw_unit and missed["data"]["window_end"] == deadline
    assert world.listener.of("patrol_missed", f"route-1:box-a:{window_start}") == []
    assert world.collector is not None and world.collector.stats().rules_errors == 0


# --- AED: missing (where did it go), battery low (hysteresis) -------------------------------------


@pytest.mark.timeout(60)
def test_aed_missing_and_battery_low(world: World) -> None:
    gw_lobby, gw_street = unique("gw-lobby"), unique("gw-street")
    missing_dev = "eddystone:edd1cebeac0a0a0a0a0a:0000000000b1"
    battery_dev = "eddystone:edd1cebeac0a0a0a0a0a:0000000000b2"
    world.start(
        [
            Gateway(gw_lobby, "town-hall", "lobby"),
            Gateway(gw_street, "high-street", "street", 31.2, 121.4),
            Aed("a-gone", missing_dev, gw_lobby, "town hall lobby", contacts(world.rx, "gone")),
            Aed("a-weak", battery_dev, gw_lobby, "library", contacts(world.rx, "weak")),
        ],
        {"aed": {"missing_after_s": 1}},
        ShiftedClock(),
    )
    gw = world.gw
    # The AED is carried past a street gateway and never heard at its place.
    gw.send(gw_street, "sighting", "aed-eddystone@1", missing_dev, sighting("enter", -70.0))
    # The profile aed-eddystone says battery_low_mv 2500: 2300 mV is low.
    gw.send(gw_lobby, "event", "aed-eddystone@1", battery_dev,
            {"event": "telemetry", "battery_mv": 2300, "temp_c": 21.5})  # fmt: skip

    def heard_at_its_place(alert_id: str) -> None:
        gw.send(gw_lobby, "sighting", "aed-eddystone@1", missing_dev, sighting("update", -55.0))

    gone = world.lifecycle(
        "aed_missing",
        "a-gone",
        "gone",
        "AED not heard at its place: moved or stolen",
        heard_at_its_place,
    )
    assert gone["severity"] == "critical"
    assert gone["data"]["last_elsewhere"][0] == gw_street
    assert world.listener.of("aed_missing", "a-gone")[3]["detail"] == "heard by its gateway again"

    def battery_replaced(alert_id: str) -> None:
        # 2550 mV is above the threshold but inside the hysteresis (100 mV): still low.
        for mv in (2550, 2700):
            gw.send(gw_lobby, "event", "aed-eddystone@1", battery_dev,
                    {"event": "telemetry", "battery_mv": mv})  # fmt: skip

    weak = world.lifecycle(
        "aed_battery_low", "a-weak", "weak", "AED beacon battery low", battery_replaced
    )
    assert weak["data"] == {"battery_mv": 2300, "threshold_mv": 2500}
    assert world.listener.of("aed_battery_low", "a-weak")[3]["detail"] == "battery at 2700 mV"


# --- patrol: an abnormal check-in needs an officer ------------------------------------------------


@pytest.mark.timeout(60)
def test_patrol_abnormal_resolved_by_operator(world: World) -> None:
    """Impossible travel between two boxes 11 km apart in 5 s; closed with ``shouhu alerts``."""
    gw_unit = unique("gw-unit")
    box_x, box_y = "nfc:04c3c3c3c3c3c3", "nfc:04d4d4d4d4d4d4"
    world.start(
        [
            PatrolBox("box-x", box_x, 31.20, 121.47, "north gate"),
            PatrolBox("box-y", box_y, 31.30, 121.47, "south gate"),
            PatrolRoute(
                "route-2",
                gw_unit,
                ("box-x", "box-y"),
                contacts=contacts(world.rx, "watch", "police_desk"),
            ),
        ],  # fmt: skip
        {},
        ShiftedClock(),
    )
    t = world.clock.ms()
    tap = {"event": "tap", "clone_proof": False}
    world.gw.send(gw_unit, "tap", "patrol-ntag21x@1", box_x, tap, t)
    world.gw.send(gw_unit, "tap", "patrol-ntag21x@1", box_y, tap, t + 5000)
    abnormal = world.lifecycle(
        "patrol_abnormal",
        f"{gw_unit}:box-y:{t + 5000}",
        "watch",
        "Abnormal patrol check-in: impossible_travel",
        world.resolve_by_operator("officer-9"),
        resolved_by="officer-9",
    )
    assert abnormal["data"]["reasons"] == ["impossible_travel"]
    assert abnormal["data"]["speed_kmh"] > 60
    assert world.listener.of("patrol_abnormal", f"{gw_unit}:box-x:{t}") == [], "first tap is fine"


# --- gateway: silent, backing up, radio gone ------------------------------------------------------


@pytest.mark.timeout(60)
def test_gateway_silent_backlog_and_radio(world: World) -> None:
    """Three gateways, three faults, the operators' rota; each fault clears by a fresh health."""
    gw_silent, gw_backed, gw_deaf = unique("gw-silent"), unique("gw-backed"), unique("gw-deaf")
    ops = [
        {"id": f"ops-{order}", "name": f"Ops {order}", "url": world.rx.url("json", f"/ops/{order}"),
         "role": "operator", "order": order}
        for order in (0, 1)
    ]  # fmt: skip
    world.start(
        [Gateway(g, f"site-{g}", "street") for g in (gw_silent, gw_backed, gw_deaf)],
        {
            "operators": ops,
            "gateway": {"silent_factor": 2, "max_outbox_depth": 10, "max_outbox_age_s": 60},
        },
        ShiftedClock(),
    )
    gw = world.gw

    def health(g: str, depth: int = 0, present: bool = True, interval_s: int = 86400) -> None:
        data = {
            "outbox_depth": depth,
            "outbox_oldest_age_s": 5 if depth else 0,
            "interval_s": interval_s,
            "sources": {"ble": {"present": present, "frames": 10, "errors": 0}},
        }
        gw.send(g, "health", "gateway@1", f"gw:{g}", data)

    # One health with a 1 s interval, then silence: offline after 2 x 1 s.
    silent_since = gw.send(gw_silent, "health", "gateway@1", f"gw:{gw_silent}",
                           {"outbox_depth": 0, "interval_s": 1, "sources": {}}).ts  # fmt: skip
    health(gw_backed, depth=500)
    health(gw_deaf, present=False)

    offline = world.lifecycle(
        "gateway_offline",
        gw_silent,
        "ops",
        "Gateway offline",
        lambda alert_id: health(gw_silent),
    )
    assert offline["data"]["reason"] == "health silent"
    assert offline["at"] - silent_since > 2000
    assert world.listener.of("gateway_offline", gw_silent)[3]["detail"] == "health received"

    backlog = world.lifecycle(
        "gateway_backlog",
        gw_backed,
        "ops",
        "Gateway outbox backing up",
        lambda alert_id: health(gw_backed, depth=0),
    )
    assert backlog["data"]["outbox_depth"] == 500
    assert world.listener.of("gateway_backlog", gw_backed)[3]["detail"] == "outbox drained"

    radio = world.lifecycle(
        "gateway_radio",
        f"{gw_deaf}:ble",
        "ops",
        "Gateway radio gone",
        lambda alert_id: health(gw_deaf, present=True),
    )
    assert radio["data"] == {"gw": gw_deaf, "source": "ble"}
    assert world.listener.of("gateway_offline", gw_backed) == []
    assert world.listener.of("gateway_offline", gw_deaf) == []
