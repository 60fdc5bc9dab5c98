"""Wanderer rule: scripted timelines of amulet sightings, gateway status and clock ticks."""

from __future__ import annotations

import dataclasses
import json

from test_rules_timeline import (
    ALL_DAYS,
    TZ,
    Step,
    assert_restart_safe,
    heard,
    kinds,
    play,
    rec,
    status,
    t,
    tick,
)

from collector.domain import Contact, Gateway, Wearer, Window
from collector.rules import EngineConfig, RuleEngine, StaticRegistry
from collector.rules.actions import Notice, RaiseAlert, ResolveAlert
from collector.rules.gateway import GatewayConfig

AMULET = "ibeacon:fda50693a4e24fb1afcfc6eb07647825:1:2"
DAUGHTER = Contact("c-1", "Wang Fang", "json://localhost/daughter", "family", 0)
NEIGHBOUR = Contact("c-2", "Zhao Min", "json://localhost/neighbour", "family", 1)
WEARER = Wearer(
    id="w-1",
    name="Li Wei",
    device=AMULET,
    home_gateways=frozenset({"gw-home"}),
    safe_zones=frozenset({"home-1", "care"}),
    risk_schedule=(Window(ALL_DAYS, "20:00", "07:00"),),
    home_by="18:00",
    contacts=(DAUGHTER, NEIGHBOUR),
)
GATEWAYS = [
    Gateway("gw-home", "lane-3", "home-1", 31.2300, 121.4700),
    Gateway("gw-care", "centre", "care", 31.2310, 121.4710),
    Gateway("gw-street-1", "lane-3-gate", "street", 31.2320, 121.4720),
    Gateway("gw-street-2", "market", "street", 31.2330, 121.4730),
]
# Gateway silence is not part of most stories here: a generous health interval.
CONFIG = EngineConfig(tz=TZ, gateway=GatewayConfig(health_interval_s=86400))


def registry(wearer: Wearer = WEARER) -> StaticRegistry:
    return StaticRegistry(gateways=GATEWAYS, wearers=[wearer])


def seen(gw: str, ts: int, event: str = "update", rssi_avg: float = -80.0) -> Step:
    return heard(
        gw, rec("sighting", AMULET, {"event": event, "rssi": -80, "rssi_avg": rssi_avg}, ts)
    )


def test_gateways_agree_then_hysteresis_resolves() -> None:
    steps = [
        tick(t("20:59")),
        seen("gw-street-1", t("21:00")),
        seen("gw-street-1", t("21:01")),
        seen("gw-street-2", t("21:02")),  # third sighting, second gateway: outside
        seen("gw-street-2", t("21:03")),  # refresh of the open alert
        seen("gw-home", t("21:10")),  # back: the clock for the hysteresis starts
        seen("gw-street-1", t("21:12")),  # out again: clock reset
        seen("gw-care", t("21:14")),
        tick(t("21:18")),  # 4 min safe: not yet
        tick(t("21:19")),  # 5 min safe: resolved
    ]
    out = assert_restart_safe(CONFIG, registry(), steps)
    assert [kinds(o) for o in out[1:3]] == [[], []]
    raised = out[3][0]
    assert isinstance(raised, RaiseAlert) and raised.kind == "wanderer" and raised.key == "w-1"
    assert raised.severity == "critical" and raised.contacts == (DAUGHTER, NEIGHBOUR)
    assert "Li Wei" in raised.message
    assert "Li Wei" not in raised.title + json.dumps(dict(raised.data))
    assert raised.data["gw"] == "gw-street-2" and raised.data["lat"] == 31.2330
    assert kinds(out[4]) == [("RaiseAlert", "wanderer")]
    assert out[5] == [] and kinds(out[6]) == [("RaiseAlert", "wanderer")]
    assert out[7:9] == [[], []]
    assert out[9] == [ResolveAlert("wanderer", "w-1", "back in a safe zone")]


def test_one_gateway_or_outside_the_risk_schedule_is_not_enough() -> None:
    steps = [
        seen("gw-street-1", t("21:00")),
        seen("gw-street-1", t("21:01")),
        seen("gw-street-1", t("21:02")),
        seen("gw-street-1", t("21:03")),  # many sightings, one gateway, weak signal
        seen("gw-street-1", t("12:00", day=1)),
        seen("gw-street-2", t("12:01", day=1)),
        seen("gw-street-1", t("12:02", day=1)),  # two gateways but midday: no risk
        seen("gw-street-2", t("21:00", day=1)),
        seen("gw-street-1", t("21:30", day=1)),
        seen("gw-street-2", t("22:00", day=1)),  # spread wider than the 5 min window
    ]
    out = assert_restart_safe(CONFIG, registry(), steps)
    assert all(o == [] for o in out)


def test_one_strong_gateway_for_k_updates_decides() -> None:
    steps = [
        seen("gw-street-1", t("21:00"), "enter", -60.0),
        seen("gw-street-1", t("21:01"), rssi_avg=-61.0),
        seen("gw-street-1", t("21:02"), rssi_avg=-75.0),  # weak: the run restarts
        seen("gw-street-1", t("21:03"), rssi_avg=-62.0),
        seen("gw-street-1", t("21:04"), rssi_avg=-62.0),
        seen("gw-street-1", t("21:05"), rssi_avg=-63.0),
    ]
    cfg = dataclasses.replace(
        CONFIG, wanderer=dataclasses.replace(CONFIG.wanderer, min_sightings=99)
    )
    out = assert_restart_safe(cfg, registry(), steps)
    assert [len(o) for o in out] == [0, 0, 0, 0, 0, 1]
    assert isinstance(out[5][0], RaiseAlert) and "strong" in out[5][0].data["decided_by"]


def test_not_home_by_deadline_then_resolved_when_home() -> None:
    steps = [
        tick(t("16:00")),
        seen("gw-home", t("17:00"), "enter"),
        seen("gw-home", t("17:30"), "exit"),
        tick(t("17:59")),
        tick(t("18:00")),
        tick(t("18:05")),  # judged once a day
        seen("gw-home", t("18:20"), "enter"),
    ]
    out = assert_restart_safe(CONFIG, registry(), steps)
    assert out[3] == []
    assert kinds(out[4]) == [("RaiseAlert", "wanderer_not_home")]
    assert out[5] == []
    assert out[6] == [ResolveAlert("wanderer_not_home", "w-1", "seen at home")]


def test_present_at_home_at_the_deadline_is_quiet() -> None:
    steps = [tick(t("16:00")), seen("gw-home", t("17:50")), tick(t("18:00")), tick(t("18:00", 1))]
    out = assert_restart_safe(CONFIG, registry(), steps)
    assert out[2] == []
    # next day: not seen at home since yesterday 17:50 -> not home
    assert kinds(out[3]) == [("RaiseAlert", "wanderer_not_home")]


def test_home_gateway_offline_is_said_instead_of_not_home() -> None:
    steps = [
        tick(t("16:00")),
        status("gw-home", "offline", t("17:00")),
        tick(t("18:00")),
        status("gw-home", "online", t("18:30")),
    ]
    out = assert_restart_safe(CONFIG, registry(), steps)
    assert kinds(out[1]) == [("RaiseAlert", "gateway_offline")]
    assert kinds(out[2]) == [("RaiseAlert", "wanderer_home_gateway_offline")]
    alert = out[2][0]
    assert isinstance(alert, RaiseAlert) and alert.data["gateways"] == ["gw-home"]
    assert ResolveAlert("wanderer_home_gateway_offline", "w-1", "home gateways online") in out[3]
    assert ResolveAlert("gateway_offline", "gw-home", "status online") in out[3]


def test_silent_home_gateway_also_blocks_left_home() -> None:
    steps = [
        tick(t("20:00")),
        seen("gw-home", t("20:30"), "exit"),
        tick(t("20:45")),  # gateways silent 45 min > 3 x 60 s: all offline
        tick(t("20:46")),
    ]
    reg = registry()
    out = assert_restart_safe(EngineConfig(tz=TZ), reg, steps)
    offline = [a for a in out[2] if isinstance(a, RaiseAlert) and a.kind == "gateway_offline"]
    assert {a.key for a in offline} == {g.id for g in GATEWAYS}
    assert ("RaiseAlert", "wanderer_home_gateway_offline") in kinds(out[2])
    assert ("RaiseAlert", "wanderer_left_home") not in kinds(out[2] + out[3])


def test_left_home_during_risk_schedule() -> None:
    steps = [
        seen("gw-home", t("20:30"), "exit"),
        tick(t("20:35")),
        tick(t("20:40")),  # 10 min after the exit
        tick(t("20:50")),
        seen("gw-care", t("20:55"), "enter"),
    ]
    out = assert_restart_safe(CONFIG, registry(), steps)
    assert out[1] == [] and out[3] == []
    assert kinds(out[2]) == [("RaiseAlert", "wanderer_left_home")]
    assert out[4] == [ResolveAlert("wanderer_left_home", "w-1", "seen in a safe zone")]


def test_missing_wearer_leaves_footprints() -> None:
    missing = dataclasses.replace(WEARER, missing=True)
    engine = RuleEngine(CONFIG)
    out = play(engine, registry(missing), [seen("gw-street-2", t("10:00"), "enter", -70.0)])
    (notice,) = out[0]
    assert isinstance(notice, Notice) and notice.kind == "footprint"
    assert notice.contacts == (DAUGHTER, NEIGHBOUR)
    assert notice.data["lat"] == 31.2330 and notice.data["lon"] == 121.4730
    assert notice.data["subject"] == "wearer:w-1" and notice.data["ts"] == t("10:00")
    assert "Li Wei" in notice.message and "Li Wei" not in notice.title


def test_unknown_devices_and_bad_events() -> None:
    engine = RuleEngine(CONFIG)
    reg = registry()
    assert (
        engine.handle(
            "gw-street-1", rec("sighting", "ibeacon:other:1:1", {"event": "enter"}, 1), 1, reg
        )
        == []
    )
    (bad,) = engine.handle("gw-street-1", rec("sighting", AMULET, {"event": "teleport"}, 1), 1, reg)
    assert type(bad).__name__ == "Rejected"
