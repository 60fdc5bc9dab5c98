"""AED rule: the beacon must stay at its gateway; its battery must last."""

from __future__ import annotations

import dataclasses

from test_rules_timeline import MIN, TZ, Step, assert_restart_safe, heard, kinds, rec, t, tick

from collector.domain import Aed, Contact
from collector.rules import EngineConfig, StaticRegistry
from collector.rules.actions import RaiseAlert, ResolveAlert
from collector.rules.aed import AedConfig
from collector.rules.gateway import GatewayConfig

BEACON = "eddystone:0102030405060708090a:0000000000aa"
WARDEN = Contact("c-9", "Chen Jie", "json://localhost/warden", "operator", 0)
AED = Aed("aed-1", BEACON, "gw-lobby", "metro exit B", (WARDEN,))
REG = StaticRegistry(aeds=[AED])
CONFIG = EngineConfig(tz=TZ, gateway=GatewayConfig(health_interval_s=86400))


def sighting(gw: str, ts: int, event: str = "update") -> Step:
    return heard(gw, rec("sighting", BEACON, {"event": event, "rssi_avg": -70.0}, ts))


def telemetry(mv: float, ts: int, profile: str = "aed-tlm@1") -> Step:
    data = {"event": "telemetry", "battery_mv": mv, "temperature_c": 21.5}
    return heard("gw-lobby", rec("event", BEACON, data, ts, profile))


def test_moved_away_then_back() -> None:
    steps = [
        tick(t("08:00")),
        sighting("gw-lobby", t("08:01")),
        sighting("gw-lobby", t("08:05"), "exit"),  # an exit is not being heard
        sighting("gw-street", t("08:20")),
        tick(t("08:30")),  # 29 min since heard at its gateway
        tick(t("08:31")),  # 30 min: missing
        tick(t("09:00")),  # still missing: raised once
        sighting("gw-lobby", t("09:10"), "enter"),
    ]
    out = assert_restart_safe(CONFIG, REG, steps)
    assert out[:5] == [[], [], [], [], []]
    (alert,) = out[5]
    assert isinstance(alert, RaiseAlert) and (alert.kind, alert.key) == ("aed_missing", "aed-1")
    assert alert.severity == "critical" and alert.contacts == (WARDEN,)
    assert alert.data["last_elsewhere"] == ["gw-street", t("08:20")]
    assert alert.data["last_heard"] == t("08:01")
    assert out[6] == []
    assert out[7] == [ResolveAlert("aed_missing", "aed-1", "heard by its gateway again")]


def test_never_heard_is_judged_from_the_start() -> None:
    out = assert_restart_safe(CONFIG, REG, [tick(t("08:00")), tick(t("08:29")), tick(t("08:30"))])
    assert out[1] == [] and kinds(out[2]) == [("RaiseAlert", "aed_missing")]


def test_battery_low_with_hysteresis() -> None:
    steps = [
        telemetry(2600, t("08:00")),
        telemetry(2450, t("09:00")),
        telemetry(2400, t("10:00")),  # still low: raised once
        telemetry(2550, t("11:00")),  # above 2500 but under 2500 + 100: not yet
        telemetry(2700, t("12:00")),  # battery replaced
    ]
    out = assert_restart_safe(CONFIG, REG, steps)
    assert out[0] == [] and out[2] == [] and out[3] == []
    (alert,) = out[1]
    assert isinstance(alert, RaiseAlert) and alert.kind == "aed_battery_low"
    assert alert.data == {"battery_mv": 2450.0, "threshold_mv": 2500}
    assert out[4] == [ResolveAlert("aed_battery_low", "aed-1", "battery at 2700 mV")]


def test_threshold_comes_from_the_profile() -> None:
    cfg = dataclasses.replace(CONFIG, aed=AedConfig(battery_low_mv={"aed-tlm": 2800}))
    steps = [
        telemetry(2700, t("08:00")),
        telemetry(2550, t("09:00"), "other@1"),  # default 2500: not low, not yet 2600
        telemetry(2650, t("10:00"), "other@1"),  # 2500 + 100: resolved
    ]
    out = assert_restart_safe(cfg, REG, steps)
    assert kinds(out[0]) == [("RaiseAlert", "aed_battery_low")]
    assert out[1] == []
    assert kinds(out[2]) == [("ResolveAlert", "aed_battery_low")]


def test_telemetry_without_a_number_is_ignored() -> None:
    steps = [
        heard("gw-lobby", rec("event", BEACON, {"event": "telemetry", "battery_mv": "low"}, MIN))
    ]
    assert assert_restart_safe(CONFIG, REG, steps) == [[]]
