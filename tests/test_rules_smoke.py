"""Smoke rule: one incident per household, interlinked alarms sounded, supervision."""

from __future__ import annotations

import dataclasses

from test_rules_timeline import (
    MIN,
    SEC,
    TZ,
    Step,
    assert_restart_safe,
    heard,
    kinds,
    play,
    rec,
    t,
    tick,
)

from collector.alerts import AlertBook, DeliverTo, Publish
from collector.domain import Contact, Household, SmokeAlarm
from collector.rules import EngineConfig, RuleEngine, StaticRegistry
from collector.rules.actions import RaiseAlert, Rejected, ResolveAlert, SendCommand
from collector.rules.gateway import GatewayConfig
from collector.rules.smoke import SmokeConfig

KITCHEN = "rflink:FA20RF:97e3b2"
HALL = "rflink:FA20RF:11aa22"
FAMILY = Contact("c-1", "Sun Li", "json://localhost/family", "family", 0)
BRIGADE = Contact("c-fb", "District 4 brigade", "json://localhost/brigade", "fire_brigade", 0)
HOUSE = Household(
    "h-1",
    "12 Willow Lane, flat 3",
    frozenset({"gw-a", "gw-b"}),
    "district-4",
    (SmokeAlarm(KITCHEN, "h-1", "kitchen"), SmokeAlarm(HALL, "h-1", "hall")),
    (FAMILY, BRIGADE),
)
REG = StaticRegistry(households=[HOUSE])
CONFIG = EngineConfig(tz=TZ, gateway=GatewayConfig(health_interval_s=86400))
PROFILE = "smoke-fa20rf@1"


def smoke(gw: str, device: str, event: str, ts: int, kind: str = "alarm", **extra: object) -> Step:
    return heard(gw, rec(kind, device, {"event": event, **extra}, ts, PROFILE))


def test_alarm_heard_twice_is_one_incident_and_sounds_every_gateway() -> None:
    steps = [
        smoke("gw-a", KITCHEN, "alarm", t("03:00")),
        smoke("gw-b", KITCHEN, "alarm", t("03:00") + 200),  # the same alarm, another gateway
        smoke("gw-a", HALL, "alarm", t("03:01")),
        smoke("gw-a", KITCHEN, "alarm_cleared", t("03:10")),
        smoke("gw-b", HALL, "alarm_cleared", t("03:12")),
    ]
    out = assert_restart_safe(CONFIG, REG, steps)
    alert = out[0][0]
    assert isinstance(alert, RaiseAlert) and (alert.kind, alert.key) == ("smoke", "h-1")
    assert alert.severity == "critical" and alert.contacts == (FAMILY, BRIGADE)
    assert "Willow" in alert.message and "Willow" not in alert.title + str(alert.data)
    assert out[0][1:] == [
        SendCommand("gw-a", {"cmd": "sound", "household": "h-1", "device": KITCHEN}),
        SendCommand("gw-b", {"cmd": "sound", "household": "h-1", "device": KITCHEN}),
    ]
    assert kinds(out[1]) == [("RaiseAlert", "smoke")]  # no second round of commands
    second = out[2][0]
    assert isinstance(second, RaiseAlert) and second.data["devices"] == [KITCHEN, HALL]
    assert out[3] == []  # the hall is still alarming
    assert out[4] == [
        ResolveAlert("smoke", "h-1", "all alarms cleared"),
        SendCommand("gw-a", {"cmd": "silence", "household": "h-1", "device": HALL}),
        SendCommand("gw-b", {"cmd": "silence", "household": "h-1", "device": HALL}),
    ]


def test_through_the_alert_book_one_notification() -> None:
    engine, book = RuleEngine(CONFIG), AlertBook()
    effects = []
    for step in [
        smoke("gw-a", KITCHEN, "alarm", t("03:00")),
        smoke("gw-b", KITCHEN, "alarm", t("03:00") + 300),
    ]:
        for action in play(engine, REG, [step])[0]:
            effects += book.apply(action, step[3])
    delivered = [e.contact.id for e in effects if isinstance(e, DeliverTo)]
    assert sorted(delivered) == ["c-1", "c-fb"]
    assert [e.event.state for e in effects if isinstance(e, Publish)] == ["raised", "notified"]
    assert len(book.open_alerts()) == 1 and book.open_alerts()[0].repeats == 1


def test_device_conditions_open_and_close() -> None:
    steps = [
        smoke("gw-a", KITCHEN, "low_battery", t("09:00"), kind="event"),
        smoke("gw-a", KITCHEN, "low_battery", t("10:00"), kind="event"),  # once
        smoke("gw-a", KITCHEN, "heartbeat", t("11:00"), kind="event", battery_ok=True),
        smoke("gw-a", HALL, "fault", t("11:05")),
        smoke("gw-a", HALL, "test", t("11:30")),
        smoke("gw-a", HALL, "tamper", t("12:00")),
        smoke("gw-a", HALL, "hush", t("12:01")),
        smoke("gw-a", HALL, "heartbeat", t("13:00"), kind="event", battery_ok=False),
    ]
    out = assert_restart_safe(CONFIG, REG, steps)
    assert kinds(out[0]) == [("RaiseAlert", "smoke_battery")]
    assert out[1] == []
    assert out[2] == [ResolveAlert("smoke_battery", KITCHEN, "battery ok")]
    assert kinds(out[3]) == [("RaiseAlert", "smoke_fault")]
    assert out[4] == [ResolveAlert("smoke_fault", HALL, "self-test passed")]
    assert kinds(out[5]) == [("RaiseAlert", "smoke_tamper")]
    assert out[6] == []
    assert kinds(out[7]) == [("RaiseAlert", "smoke_battery")]
    assert all(a.key in (KITCHEN, HALL) for o in out for a in o if isinstance(a, RaiseAlert))


def test_supervision_lost_and_regained() -> None:
    cfg = dataclasses.replace(CONFIG, smoke=SmokeConfig(supervision_s={"smoke-fa20rf": 3600}))
    steps = [
        tick(t("08:00")),
        smoke("gw-a", KITCHEN, "heartbeat", t("08:00"), kind="event"),
        tick(t("09:00")),
        tick(t("09:00") + SEC),  # silent for more than an hour
        tick(t("10:00")),
        smoke("gw-b", KITCHEN, "heartbeat", t("10:05"), kind="event"),
    ]
    out = assert_restart_safe(cfg, REG, steps)
    assert out[2] == []
    (lost,) = out[3]  # the hall alarm was never heard: its profile, hence interval, unknown
    assert isinstance(lost, RaiseAlert) and (lost.kind, lost.key) == ("smoke_supervision", KITCHEN)
    assert lost.data["supervision_s"] == 3600
    assert out[4] == []
    assert out[5] == [ResolveAlert("smoke_supervision", KITCHEN, "heard again")]


def test_default_supervision_covers_alarms_never_heard() -> None:
    cfg = dataclasses.replace(CONFIG, smoke=SmokeConfig(default_supervision_s=600))
    out = assert_restart_safe(cfg, REG, [tick(0), tick(10 * MIN + 1)])
    assert sorted(a.key for a in out[1] if isinstance(a, RaiseAlert)) == sorted([HALL, KITCHEN])


def test_unknown_alarm_event_is_rejected_and_strangers_ignored() -> None:
    out = assert_restart_safe(
        CONFIG,
        REG,
        [smoke("gw-a", KITCHEN, "explode", 1), smoke("gw-a", "rflink:FA20RF:ffffff", "alarm", 2)],
    )
    assert len(out[0]) == 1 and isinstance(out[0][0], Rejected) and out[1] == []
