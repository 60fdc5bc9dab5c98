"""Derived points (collector.derived): what each fact becomes, whole points asserted."""

from __future__ import annotations

import pytest

from collector.alerts.lifecycle import AlertEvent, AlertState
from collector.derived import (
    alert_event_point,
    enrich_point,
    gateway_state_point,
    patrol_checkin_point,
    school_tap_point,
)
from collector.domain import Gateway
from collector.points import Point, record_to_point, to_line_protocol
from collector.rules.actions import Verdict
from shouhu.model import Record

TS = 1_763_800_000_000
GW = Gateway("gw-east-1", "east", "market", 31.2304, 121.4737)


def test_alert_event_notified_carries_latency() -> None:
    event = AlertEvent("a-17", "smoke", "household:h-7", "notified", TS, "rules", "Alice")
    p = alert_event_point(event, "critical", "d-north", latency_ms=850)
    assert p.measurement == "alert_event"
    assert p.tags == (
        ("district", "d-north"),
        ("kind", "smoke"),
        ("severity", "critical"),
        ("state", "notified"),
    )
    assert p.fields == (
        ("alert_id", "a-17"),
        ("key", "household:h-7"),
        ("latency_ms", 850),
        ("open", 0),
        ("value", 1),
    )
    assert TS * 1_000_000 <= p.time_ns < (TS + 1) * 1_000_000
    assert "Alice" not in to_line_protocol(p)  # the detail is not stored
    # the same transition again is the same point; another alert in that ms is another point
    assert alert_event_point(event, "critical", "d-north", 850) == p
    other = AlertEvent("a-18", "smoke", "household:h-8", "notified", TS, "rules")
    assert alert_event_point(other, "critical", "d-north", 850).time_ns != p.time_ns


def test_alert_open_delta_sums_to_open_alerts() -> None:
    states: tuple[AlertState, ...] = ("raised", "notified", "acknowledged", "resolved")
    deltas = [
        dict(alert_event_point(AlertEvent("a", "smoke", "k", s, TS, "rules"), "info").fields)[
            "open"
        ]
        for s in states
    ]
    assert deltas == [1, 0, 0, -1]
    raised = alert_event_point(AlertEvent("a", "smoke", "k", "raised", TS, "rules"), "info")
    assert dict(raised.tags) == {"kind": "smoke", "severity": "info", "state": "raised"}
    assert "latency_ms" not in dict(raised.fields)


def test_patrol_checkin() -> None:
    v = Verdict("box-2", "route-a", "unit-7", TS, "abnormal", ("stay_too_short", "outside_route"))
    assert patrol_checkin_point(v, lat=31.2, lon=121.4) == Point(
        "patrol_checkin",
        (("box", "box-2"), ("route", "route-a"), ("unit", "unit-7"), ("verdict", "abnormal")),
        (("lat", 31.2), ("lon", 121.4), ("reasons", "stay_too_short,outside_route"), ("value", 1)),
        TS * 1_000_000,
    )
    missed = patrol_checkin_point(
        Verdict("box-1", None, None, TS, "missed", ("missed_checkpoint",))
    )
    assert dict(missed.tags) == {"box": "box-1", "verdict": "missed"}
    assert dict(missed.fields) == {"reasons": "missed_checkpoint", "value": 1}


def test_gateway_state() -> None:
    assert gateway_state_point(GW, False, TS) == Point(
        "gateway_state",
        (("gw", "gw-east-1"), ("site", "east"), ("zone", "market")),
        (("lat", 31.2304), ("lon", 121.4737), ("online", 0)),
        TS * 1_000_000,
    )
    unplaced = gateway_state_point(Gateway("gw-9", "west"), True, TS)
    assert dict(unplaced.fields) == {"online": 1} and dict(unplaced.tags) == {
        "gw": "gw-9",
        "site": "west",
    }


def test_school_tap_points_stay_apart_in_one_ms() -> None:
    a = school_tap_point("school-1", "arrival", TS, seq=1)
    b = school_tap_point("school-1", "arrival", TS, seq=2)
    assert a.tags == (("direction", "arrival"), ("school", "school-1"))
    assert a.fields == (("value", 1),)
    assert a.time_ns != b.time_ns and a.time_ns // 1_000_000 == TS
    with pytest.raises(ValueError, match="direction"):
        school_tap_point("school-1", "lunch", TS)  # type: ignore[arg-type]


def test_enrich_adds_place_and_keeps_what_the_reading_says() -> None:
    record = Record(
        5, TS, "sighting", "amulet-ibeacon@1", "ibeacon:x:1:2", {"event": "update", "rssi": -70}
    )
    raw = record_to_point("gw-east-1", record)
    enriched = enrich_point(raw, GW)
    assert dict(enriched.tags) == {**dict(raw.tags), "site": "east", "zone": "market"}
    assert dict(enriched.fields) == {**dict(raw.fields), "lat": 31.2304, "lon": 121.4737}
    assert enriched.time_ns == raw.time_ns and enriched.measurement == "sighting"
    assert list(enriched.tags) == sorted(enriched.tags)
    assert enrich_point(raw, None) is raw
    own = Record(6, TS, "sighting", "p@1", "d", {"lat": 1.5, "lon": 2.5})
    kept = enrich_point(record_to_point("gw-east-1", own), GW)
    assert (dict(kept.fields)["lat"], dict(kept.fields)["lon"]) == (1.5, 2.5)
