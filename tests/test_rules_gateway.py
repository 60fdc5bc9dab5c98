"""Gateway rule: offline (status or silence), outbox backlog, radio gone."""

from __future__ import annotations

from typing import Any

from test_rules_timeline import (
    SEC,
    TZ,
    Step,
    assert_restart_safe,
    heard,
    kinds,
    rec,
    status,
    t,
    tick,
)

from collector.domain import Contact, Gateway
from collector.rules import EngineConfig, StaticRegistry
from collector.rules.actions import RaiseAlert, Rejected, ResolveAlert

OPS = Contact("c-ops", "Ops rota", "json://localhost/ops", "operator", 0)
REG = StaticRegistry(gateways=[Gateway("gw-1", "lane-3"), Gateway("gw-2", "market")])
CONFIG = EngineConfig(tz=TZ, operators=(OPS,))


def health(gw: str, ts: int, **data: Any) -> Step:
    base: dict[str, Any] = {"uptime_s": 100, "outbox_depth": 0, "outbox_oldest_age_s": 0}
    base["sources"] = {"ble0": {"frames": 10, "errors": 0, "present": True}}
    return heard(gw, rec("health", f"gw:{gw}", {**base, **data}, ts, "gateway@1"))


def test_status_offline_and_back() -> None:
    steps = [
        tick(t("10:00")),
        health("gw-1", t("10:00")),
        health("gw-2", t("10:00")),
        status("gw-1", "offline", t("10:01")),
        status("gw-1", "offline", t("10:01") + SEC),  # retained again: once
        status("gw-1", "online", t("10:02")),
    ]
    out = assert_restart_safe(CONFIG, REG, steps)
    assert out[:3] == [[], [], []]
    (down,) = out[3]
    assert isinstance(down, RaiseAlert) and (down.kind, down.key) == ("gateway_offline", "gw-1")
    assert down.contacts == (OPS,) and down.data["reason"] == "status offline"
    assert out[4] == []
    assert out[5] == [ResolveAlert("gateway_offline", "gw-1", "status online")]


def test_health_silence_uses_the_reported_interval() -> None:
    steps = [
        tick(t("10:00")),
        health("gw-1", t("10:00"), interval_s=30),
        health("gw-2", t("10:00")),
        tick(t("10:01") + 30 * SEC),  # gw-1: 90 s = 3 x 30 s, not more
        tick(t("10:01") + 31 * SEC),  # gw-1 silent
        tick(t("10:03") + SEC),  # gw-2 silent (3 x 60 s)
        health("gw-1", t("10:05")),
    ]
    out = assert_restart_safe(CONFIG, REG, steps)
    assert out[3] == []
    assert [(a.kind, a.key) for a in out[4]] == [("gateway_offline", "gw-1")]  # type: ignore[union-attr]
    assert [(a.kind, a.key) for a in out[5]] == [("gateway_offline", "gw-2")]  # type: ignore[union-attr]
    assert out[6] == [ResolveAlert("gateway_offline", "gw-1", "health received")]


def test_backlog_and_radio() -> None:
    gone = {"ble0": {"frames": 10, "errors": 3, "present": False}, "serial0": {"present": True}}
    steps = [
        health("gw-1", t("10:00"), outbox_depth=5000, outbox_oldest_age_s=30),
        health("gw-1", t("10:01"), outbox_depth=900, outbox_oldest_age_s=700),  # still: too old
        health("gw-1", t("10:02"), outbox_depth=10, outbox_oldest_age_s=5),
        health("gw-1", t("10:03"), sources=gone),
        health("gw-1", t("10:04"), sources=gone),
        health("gw-1", t("10:05")),
    ]
    out = assert_restart_safe(CONFIG, REG, steps)
    assert kinds(out[0]) == [("RaiseAlert", "gateway_backlog")]
    assert out[1] == []
    assert out[2] == [ResolveAlert("gateway_backlog", "gw-1", "outbox drained")]
    (radio,) = out[3]
    assert isinstance(radio, RaiseAlert) and radio.key == "gw-1:ble0"
    assert radio.data == {"gw": "gw-1", "source": "ble0"}
    assert out[4] == []
    assert out[5] == [ResolveAlert("gateway_radio", "gw-1:ble0", "radio present again")]


def test_malformed_health_is_rejected() -> None:
    (bad,) = assert_restart_safe(CONFIG, REG, [health("gw-1", t("10:00"), sources=[1, 2])])[0]
    assert isinstance(bad, Rejected) and bad.rule == "gateway"
