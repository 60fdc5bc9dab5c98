"""Scripted timelines for the rule engine, shared by the rule tests; schedule and engine tests.

A timeline is a list of steps (records heard, status changes, clock ticks) played against a
``RuleEngine`` with an explicit clock: no sleeping. ``assert_restart_safe`` replays it cut at
every step through ``to_state`` -> JSON -> ``from_state`` and demands the same outputs.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.domain import Contact, Gateway, Household, SmokeAlarm, Wearer, Window
from collector.rules import EngineConfig, RuleEngine, StaticRegistry
from collector.rules.actions import Action, RaiseAlert, Rejected
from collector.rules.patrol import SunVerifier
from collector.rules.registry_view import RegistryView
from collector.rules.schedule import (
    at_ms,
    in_window,
    next_deadline,
    occurrences,
    parse_hhmm,
)
from shouhu.exceptions import ConfigError, StorageError
from shouhu.model import Record
from shouhu.profiles import AlertSemantics, Profile

TZ = "Asia/Shanghai"  # UTC+8, no daylight saving
MONDAY = date(2026, 11, 23)
SEC = 1000
MIN = 60 * SEC
ALL_DAYS = frozenset(range(7))
_seq = itertools.count(1)

Step = tuple[Any, ...]


def t(hhmm: str, day: int = 0) -> int:
    """Milliseconds of local ``hhmm`` on MONDAY + ``day`` days."""
    return at_ms(MONDAY + timedelta(days=day), hhmm, TZ)


def rec(kind: str, device: str, data: dict[str, Any], ts: int, profile: str = "p@1") -> Record:
    return Record(next(_seq), ts, kind, profile, device, data)  # type: ignore[arg-type]


def heard(gw: str, record: Record, now: int | None = None) -> Step:
    return ("rec", gw, record, record.ts if now is None else now)


def tick(now: int) -> Step:
    return ("tick", now)


def status(gw: str, state: str, now: int) -> Step:
    return ("status", gw, state, now)


def play(engine: RuleEngine, reg: RegistryView, steps: Sequence[Step]) -> list[list[Action]]:
    out: list[list[Action]] = []
    for step in steps:
        if step[0] == "rec":
            out.append(engine.handle(step[1], step[2], step[3], reg))
        elif step[0] == "tick":
            out.append(engine.tick(step[1], reg))
        else:
            out.append(engine.on_status(step[1], step[2], step[3], reg))
    return out


def assert_restart_safe(
    config: EngineConfig,
    reg: RegistryView,
    steps: Sequence[Step],
    verify_sun: SunVerifier | None = None,
) -> list[list[Action]]:
    """Play the timeline whole, then cut at every step through a JSON state round trip."""
    full = play(RuleEngine(config, verify_sun), reg, steps)
    for cut in range(1, len(steps)):
        first_engine = RuleEngine(config, verify_sun)
        first = play(first_engine, reg, steps[:cut])
        state = json.loads(json.dumps(first_engine.to_state()))
        second = RuleEngine.from_state(config, state, verify_sun)
        assert first + play(second, reg, steps[cut:]) == full, f"differs when cut at {cut}"
    return full


def kinds(actions: Sequence[Action]) -> list[tuple[str, str]]:
    """(type, kind) of each action: a compact picture of a step's output."""
    return [(type(a).__name__, getattr(a, "kind", getattr(a, "verdict", ""))) for a in actions]


# -- schedule ---------------------------------------------------------------------------------


def test_window_inside_same_day() -> None:
    w = Window(frozenset({0}), "08:00", "17:00")
    assert in_window(w, t("08:00"), TZ)
    assert in_window(w, t("16:59"), TZ)
    assert not in_window(w, t("17:00"), TZ)
    assert not in_window(w, t("07:59"), TZ)
    assert not in_window(w, t("09:00", day=1), TZ)  # Tuesday is not in the window


def test_window_crossing_midnight_belongs_to_its_start_day() -> None:
    monday_night = Window(frozenset({0}), "21:00", "06:00")
    assert in_window(monday_night, t("23:30"), TZ)
    assert in_window(monday_night, t("03:00", day=1), TZ)  # Tuesday early morning
    assert not in_window(monday_night, t("03:00"), TZ)  # Monday early = Sunday's night
    assert not in_window(monday_night, t("06:00", day=1), TZ)
    assert not in_window(monday_night, t("12:00"), TZ)


def test_deadlines_and_occurrences() -> None:
    assert next_deadline("18:00", t("17:00"), TZ) == t("18:00")
    assert next_deadline("18:00", t("18:00"), TZ) == t("18:00")
    assert next_deadline("18:00", t("18:01"), TZ) == t("18:00", day=1)
    assert next_deadline("08:30", t("09:00", day=4), TZ, days={0, 1, 2, 3, 4}) == t("08:30", day=7)
    night = Window(ALL_DAYS, "22:00", "02:00")
    assert occurrences([night], t("21:00"), t("03:00", day=1), TZ) == [
        (t("22:00"), t("02:00", day=1))
    ]
    assert occurrences([night], t("02:00", day=1), t("03:00", day=1), TZ) == []


def test_daylight_saving_day_is_23_hours() -> None:
    berlin = "Europe/Berlin"  # 2026-03-29: clocks go from 02:00 to 03:00
    day = date(2026, 3, 29)
    assert (
        at_ms(day + timedelta(days=1), "00:00", berlin) - at_ms(day, "00:00", berlin)
        == 23 * 3600 * SEC
    )
    assert in_window(Window(ALL_DAYS, "01:00", "04:00"), at_ms(day, "03:30", berlin), berlin)


@pytest.mark.parametrize("bad", ["24:00", "7:5", "ab:cd", "12:60", "", "1200"])
def test_bad_times_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_hhmm(bad)


# -- engine -----------------------------------------------------------------------------------


def test_config_from_dict_names_the_wrong_field() -> None:
    cfg = EngineConfig.from_dict(
        {
            "tz": TZ,
            "wanderer": {"min_gateways": 3},
            "operators": [{"id": "op", "name": "Desk", "url": "json://localhost"}],
        }
    )
    assert cfg.wanderer.min_gateways == 3 and cfg.operators[0].id == "op"
    with pytest.raises(ConfigError, match=r"rules\.wanderer\.min_gatways"):
        EngineConfig.from_dict({"wanderer": {"min_gatways": 3}})
    with pytest.raises(ConfigError, match="rules.tz"):
        EngineConfig.from_dict({"tz": "Mars/Olympus"})
    with pytest.raises(ConfigError, match=r"rules\.smoke\.silence_on_clear"):
        EngineConfig.from_dict({"smoke": {"silence_on_clear": "yes"}})


def test_profiles_fill_thresholds_but_config_wins() -> None:
    profiles = [
        Profile("smoke-fa20rf", 1, "serial", "rflink", alerts=AlertSemantics(supervision_s=3600)),
        Profile("aed-tlm", 1, "ble", "eddystone", alerts=AlertSemantics(battery_low_mv=2600)),
        Profile("amulet", 1, "ble", "ibeacon", alerts=AlertSemantics(battery_low_mv=2100)),
    ]
    cfg = EngineConfig.from_dict({"aed": {"battery_low_mv": {"amulet": 2300}}}).with_profiles(
        profiles
    )
    assert cfg.smoke.supervision_s == {"smoke-fa20rf": 3600}
    assert cfg.aed.battery_low_mv == {"aed-tlm": 2600, "amulet": 2300}


def test_damaged_state_is_a_storage_error() -> None:
    with pytest.raises(StorageError):
        RuleEngine.from_state(EngineConfig(), {"v": 99})
    with pytest.raises(StorageError):
        RuleEngine.from_state(EngineConfig(), {"v": 1, "wanderer": {}})


FAMILY = Contact("c-1", "Wang Fang", "json://localhost/family", "family", 0)
FUZZ_REG = StaticRegistry(
    gateways=[Gateway("gw-1", "s", "street")],
    wearers=[Wearer("w-1", "Li Wei", "ibeacon:x:1:2", frozenset({"gw-home"}), contacts=(FAMILY,))],
    households=[
        Household("h-1", "1 Road", frozenset({"gw-1"}), alarms=(SmokeAlarm("rflink:X:1", "h-1"),))
    ],
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None, print_blob=True)
@given(
    kind=st.sampled_from(["sighting", "tap", "alarm", "event", "health"]),
    device=st.sampled_from(["ibeacon:x:1:2", "rflink:X:1", "gw:gw-1", "card:zz", "nfc:00"]),
    data=st.dictionaries(
        st.sampled_from(
            ["event", "rssi_avg", "battery_ok", "sources", "outbox_depth", "battery_mv"]
        ),
        json_values,
    ),
    ts=st.integers(min_value=0, max_value=4_000_000_000_000),
)
def test_arbitrary_record_data_never_raises(
    kind: str, device: str, data: dict[str, Any], ts: int
) -> None:
    engine = RuleEngine(EngineConfig(tz=TZ))
    actions = engine.handle("gw-1", rec(kind, device, data, ts), ts, FUZZ_REG)
    actions += engine.tick(ts + 10 * MIN, FUZZ_REG)
    json.dumps(engine.to_state())
    for a in actions:
        assert isinstance(a, Rejected) or not isinstance(a, RaiseAlert) or "Li Wei" not in a.title
