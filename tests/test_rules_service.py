"""Rules service end to end: registry db -> rules -> alert store, apprise, MQTT publishes."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from http_receiver import HttpReceiver

from collector.alerts import LifecycleConfig
from collector.alerts.notifier import Notifier
from collector.alerts.store import AlertStore
from collector.domain import Contact, Gateway, Household, SmokeAlarm
from collector.points import Point
from collector.registry.store import RegistryStore
from collector.rules import EngineConfig, Rejected, StaticRegistry
from collector.rules.gateway import GatewayConfig
from collector.rules_service import RulesService
from shouhu.cli import main
from shouhu.model import Record

KITCHEN = "rflink:FA20RF:97e3b2"
PROFILE = "smoke-fa20rf@1"
CONFIG = EngineConfig(gateway=GatewayConfig(health_interval_s=86400))
_seq = itertools.count(1)


@dataclass
class Published:
    """The collector's MQTT publish, captured: (topic, payload, qos, retain)."""

    messages: list[tuple[str, bytes, int, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        with self.lock:
            self.messages.append((topic, payload, qos, retain))

    def on(self, topic: str) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(p) for t, p, _, _ in self.messages if t == topic]


@dataclass
class PointSink:
    """A writer that keeps derived points (the ``write_points`` half of InfluxV1Writer)."""

    points: list[Point] = field(default_factory=list)

    def write_points(self, points: Sequence[Point]) -> None:
        self.points.extend(points)

    def of(self, measurement: str) -> list[Point]:
        return [p for p in self.points if p.measurement == measurement]


class Clock:
    """Real time plus an offset the test moves forward (the CLI reads real time)."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset_s


def alarm(event: str = "alarm", ts: int | None = None) -> Record:
    ts = int(time.time() * 1000) if ts is None else ts
    return Record(next(_seq), ts, "alarm", PROFILE, KITCHEN, {"event": event})


@pytest.fixture
def rx() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture
def registry(tmp_path: Path, rx: HttpReceiver) -> Iterator[RegistryStore]:
    with RegistryStore(tmp_path / "registry.sqlite") as store:
        store.add_all(
            [
                Gateway("gw-a", "willow-3", "home", 31.23, 121.47),
                Gateway("gw-b", "willow-3-hall", "home", 31.2301, 121.4701),
                Household(
                    "h-1",
                    "12 Willow Lane, flat 3",
                    frozenset({"gw-a", "gw-b"}),
                    "district-4",
                    (SmokeAlarm(KITCHEN, "h-1", "kitchen"),),
                    (
                        Contact("c-1", "Sun Li", rx.url("json", "/family"), "family", 0),
                        Contact("c-fb", "Brigade", rx.url("form", "/brigade"), "fire_brigade", 1),
                    ),
                ),
            ]
        )
        yield store


def service(
    tmp_path: Path, registry: Any, clock: Clock, published: Published, sink: PointSink
) -> tuple[RulesService, Notifier, AlertStore]:
    store = AlertStore(str(tmp_path / "state.sqlite"), clock=clock)
    notifier = Notifier(store, backoff_s=0.05, clock=clock)
    svc = RulesService(
        CONFIG,
        registry,
        store,
        notifier,
        published,
        sink,
        clock,
        lifecycle=LifecycleConfig(escalate_after_s=60),
    )
    return svc, notifier, store


def test_smoke_alarm_raises_notifies_commands_escalates_and_is_acked_from_the_cli(
    tmp_path: Path, rx: HttpReceiver, registry: RegistryStore
) -> None:
    clock, published, sink = Clock(), Published(), PointSink()
    svc, notifier, store = service(tmp_path, registry, clock, published, sink)
    svc.handle("gw-a", [alarm()])

    # the family hears first, with the address; the public event never carries it
    (family,) = rx.wait_for(1, "/family")
    assert "Willow Lane" in family.json()["message"]
    events = published.on("shouhu/v1/alerts/smoke")
    assert [e["state"] for e in events] == ["raised", "notified"]
    assert all("Willow" not in json.dumps(e) for e in events)
    command = {"cmd": "sound", "household": "h-1", "device": KITCHEN}
    sent = published.on("shouhu/v1/gw/gw-a/down/cmd") + published.on("shouhu/v1/gw/gw-b/down/cmd")
    assert [{k: v for k, v in c.items() if k != "id"} for c in sent] == [command, command]
    assert len({c["id"] for c in sent}) == 2  # every command has its own id (executed once)
    (row,) = store.list_alerts()
    assert (row.kind, row.key, row.state) == ("smoke", "h-1", "notified")
    assert rx.at("/brigade") == []

    # nobody acknowledges for a minute: the brigade (order 1) is told
    clock.offset_s = 61
    svc.tick()
    (brigade,) = rx.wait_for(1, "/brigade")
    assert "Willow Lane" in brigade.form()["message"]
    assert notifier.wait_idle(10)
    detail = store.show(row.id)
    assert [(e.state, e.actor) for e in detail.events][-1] == ("notified", "escalation")
    assert {(d.contact_id, d.channel, d.ok) for d in detail.deliveries} == {
        ("c-1", "json", True),
        ("c-fb", "form", True),
    }

    # derived points: raised/notified (with latency once delivered), district from the household
    alert_points = sink.of("alert_event")
    assert {dict(p.tags)["district"] for p in alert_points} == {"district-4"}
    assert any(dict(p.fields).get("latency_ms") is not None for p in alert_points)

    # an operator acknowledges through the CLI while this collector runs: a pending action
    svc.start()
    try:
        result = CliRunner().invoke(
            main,
            ["alerts", "ack", row.id, "--by", "officer-7", "--db", store.path, "--wait", "5"],
        )
        assert result.exit_code == 0, result.output
        assert "applied by the running collector" in result.output
    finally:
        svc.stop()
    assert svc.book.get(row.id) is not None and svc.book.get(row.id).state == "acknowledged"  # type: ignore[union-attr]
    assert published.on("shouhu/v1/alerts/smoke")[-1]["state"] == "acknowledged"
    notifier.stop()
    store.close()


def test_restart_keeps_open_alerts_and_timers(
    tmp_path: Path, rx: HttpReceiver, registry: RegistryStore
) -> None:
    clock, published, sink = Clock(), Published(), PointSink()
    svc, notifier, store = service(tmp_path, registry, clock, published, sink)
    svc.handle("gw-a", [alarm()])
    rx.wait_for(1, "/family")
    notifier.stop()
    store.close()

    # a new collector process on the same state db
    svc2, notifier2, store2 = service(tmp_path, registry, clock, published, sink)
    (alert,) = svc2.book.open_alerts()
    assert (alert.kind, alert.key, alert.state) == ("smoke", "h-1", "notified")
    assert svc2.engine.to_state() == svc.engine.to_state()
    clock.offset_s = 61
    svc2.tick()  # the escalation timer survived the restart
    rx.wait_for(1, "/brigade")
    # the alarm clears: resolved, the gateways told to silence
    svc2.handle("gw-b", [alarm("alarm_cleared")])
    assert svc2.book.open_alerts() == ()
    assert published.on("shouhu/v1/gw/gw-b/down/cmd")[-1]["cmd"] == "silence"
    assert store2.list_alerts() == []
    assert store2.list_alerts(open_only=False)[0].state == "resolved"
    notifier2.stop()
    store2.close()


def test_cli_ack_without_a_collector_changes_the_saved_book(
    tmp_path: Path, rx: HttpReceiver, registry: RegistryStore
) -> None:
    clock, published, sink = Clock(), Published(), PointSink()
    svc, notifier, store = service(tmp_path, registry, clock, published, sink)
    svc.handle("gw-a", [alarm()])
    notifier.wait_idle(10)
    svc.stop()  # never started: only clears the heartbeat
    (row,) = store.list_alerts()
    result = CliRunner().invoke(main, ["alerts", "ack", row.id, "--by", "desk", "--db", store.path])
    assert result.exit_code == 0, result.output
    assert "no collector running" in result.output
    again = CliRunner().invoke(main, ["alerts", "ack", row.id, "--by", "desk", "--db", store.path])
    assert again.exit_code == 1 and "cannot ack when acknowledged" in again.output
    svc2, notifier2, store2 = service(tmp_path, registry, clock, published, sink)
    assert svc2.book.get(row.id).acked_by == "desk"  # type: ignore[union-attr]
    for n, s in ((notifier, store), (notifier2, store2)):
        n.stop()
        s.close()


def test_rejected_records_go_to_the_dead_letter_callable_once_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reg = StaticRegistry(
        households=[Household("h-1", "x", frozenset({"gw-a"}), "", (SmokeAlarm(KITCHEN, "h-1"),))]
    )
    dead: list[Rejected] = []
    clock = Clock()
    store = AlertStore(str(tmp_path / "s.sqlite"), clock=clock)
    svc = RulesService(
        CONFIG, reg, store, Notifier(store), Published(), None, clock, dead_letter=dead.append
    )
    bad = [
        Record(next(_seq), int(time.time() * 1000), "alarm", PROFILE, KITCHEN, {"event": 7})
        for _ in range(3)
    ]
    with caplog.at_level("WARNING", logger="collector.rules_service"):
        svc.handle("gw-a", bad)
    assert [(r.rule, r.gw, r.reason) for r in dead] == [
        ("smoke", "gw-a", "smoke event 7 unknown")
    ] * 3
    assert sum("cannot read record" in m for m in caplog.messages) == 1
    assert svc.counts["rejected"] == 3
    store.close()
