"""The aggregator from scripted timelines: no clock, no sleeping."""

from __future__ import annotations

import random
from typing import Any

from edge_agent.aggregator import Aggregator
from shouhu.model import Reading

T0 = 1_763_800_000_000
AMULET = "ibeacon:fda50693a4e24fb1afcfc6eb07647825:10001:1"
OTHER = "ibeacon:fda50693a4e24fb1afcfc6eb07647825:10001:2"
PROFILE = "amulet-ibeacon@1"


def adv(ts: int, rssi: int | None = -70, device: str = AMULET) -> Reading:
    """One advertisement as the iBeacon decoder reports it."""
    return Reading(ts, "sighting", PROFILE, device, {"rssi": rssi, "tx_power": -59, "minor": 1})


def tlm(ts: int, battery: int) -> Reading:
    data = {"event": "telemetry", "battery_mv": battery}
    return Reading(ts, "event", "aed-eddystone@1", "eddystone:ns:1", data)


def play(agg: Aggregator, timeline: list[tuple[int, Reading | None]]) -> list[Reading]:
    """Feed readings (or tick when None) at their times; collect everything passed on."""
    out: list[Reading] = []
    for now, reading in timeline:
        if reading is not None:
            out += agg.feed(reading, now)
        out += agg.tick(now)
    return out


def events(out: list[Reading]) -> list[tuple[int, str, Any]]:
    return [(r.ts - T0, r.data.get("event"), r.data.get("count")) for r in out]


def test_enter_updates_exit_of_a_beacon_heard_every_second() -> None:
    agg = Aggregator(update_interval_ms=30_000, away_timeout_ms=20_000, ema_alpha=0.3)
    timeline: list[tuple[int, Reading | None]] = [
        (T0 + s * 1000, adv(T0 + s * 1000)) for s in range(0, 70)
    ]
    timeline += [(T0 + s * 1000, None) for s in range(70, 100)]
    out = play(agg, timeline)
    assert events(out) == [
        (0, "enter", 1),
        (30_000, "update", 31),
        (60_000, "update", 61),
        (69_000, "exit", 70),  # stamped when last heard, decided 20 s later
    ]
    exit_ = out[-1]
    assert exit_.kind == "sighting" and exit_.device == AMULET and exit_.profile == PROFILE
    assert exit_.data["first_seen"] == T0 and exit_.data["last_seen"] == T0 + 69_000
    assert exit_.data["tx_power"] == -59  # decoder data other than rssi is kept


def test_exit_is_decided_at_the_away_timeout_not_before() -> None:
    agg = Aggregator(30_000, 20_000, 0.3)
    assert agg.feed(adv(T0), T0)[0].data["event"] == "enter"
    assert agg.tick(T0 + 19_999) == []
    assert agg.next_deadline() == T0 + 20_000
    (exit_,) = agg.tick(T0 + 20_000)
    assert exit_.data["event"] == "exit" and exit_.ts == T0
    assert agg.tick(T0 + 60_000) == []  # only once
    assert agg.present() == []


def test_bluez_report_gaps_shorter_than_the_timeout_do_not_split_a_visit() -> None:
    agg = Aggregator(30_000, 20_000, 0.3)
    heard = [0, 1, 2, 9, 10, 25, 26, 44]  # gaps of 7, 15 and 18 s
    timeline: list[tuple[int, Reading | None]] = []
    for s in range(0, 80):
        ts = T0 + s * 1000
        timeline.append((ts, adv(ts) if s in heard else None))
    out = play(agg, timeline)
    assert events(out) == [(0, "enter", 1), (44_000, "update", 8), (44_000, "exit", 8)]


def test_updates_never_more_often_than_the_interval() -> None:
    agg = Aggregator(10_000, 20_000, 0.3)
    rng = random.Random(7)
    ts, out = T0, []
    for _ in range(500):  # 10 advertisements a second, jittered
        ts += rng.randint(50, 150)
        out += agg.feed(adv(ts, rssi=rng.randint(-90, -60)), ts)
        out += agg.tick(ts)
    times = [r.ts for r in out]
    assert out[0].data["event"] == "enter"
    assert all(b - a >= 10_000 for a, b in zip(times, times[1:], strict=False))
    assert len(out) == 1 + (ts - T0) // 10_000  # enter, then one update per full interval
    (exit_,) = agg.flush(ts)
    assert exit_.data["count"] == 500  # every advertisement counted


def test_rssi_average_is_an_exponential_moving_average() -> None:
    agg = Aggregator(1_000, 20_000, 0.5)
    agg.feed(adv(T0, -80), T0)
    agg.feed(adv(T0 + 400, -60), T0 + 400)  # avg -70
    (update,) = agg.feed(adv(T0 + 1_000, None), T0 + 1_000)  # no rssi: average unchanged
    assert update.data["rssi_avg"] == -70.0
    assert update.data["rssi"] == -60  # last known
    (update,) = agg.feed(adv(T0 + 2_000, -90), T0 + 2_000)
    assert update.data["rssi_avg"] == -80.0 and update.data["count"] == 4


def test_two_beacons_are_independent() -> None:
    agg = Aggregator(30_000, 20_000, 0.3)
    out = agg.feed(adv(T0), T0) + agg.feed(adv(T0 + 5_000, device=OTHER), T0 + 5_000)
    out += agg.tick(T0 + 20_000)
    out += agg.tick(T0 + 25_000)
    assert [(r.device, r.data["event"]) for r in out] == [
        (AMULET, "enter"),
        (OTHER, "enter"),
        (AMULET, "exit"),
        (OTHER, "exit"),
    ]


def test_a_beacon_that_comes_back_enters_again() -> None:
    agg = Aggregator(30_000, 20_000, 0.3)
    out = agg.feed(adv(T0), T0) + agg.tick(T0 + 21_000)
    out += agg.feed(adv(T0 + 22_000), T0 + 22_000)
    assert [r.data["event"] for r in out] == ["enter", "exit", "enter"]
    assert out[-1].data["count"] == 1 and out[-1].data["first_seen"] == T0 + 22_000


def test_flush_on_shutdown_emits_exits_of_everything_present() -> None:
    agg = Aggregator(30_000, 20_000, 0.3)
    agg.feed(adv(T0), T0)
    agg.feed(adv(T0 + 3_000, device=OTHER), T0 + 3_000)
    agg.feed(tlm(T0 + 3_000, 2900), T0 + 3_000)
    agg.feed(tlm(T0 + 4_000, 2800), T0 + 4_000)  # waiting: rate limited
    out = agg.flush(T0 + 5_000)
    exits = [(r.device, r.ts) for r in out if r.kind == "sighting"]
    assert exits == [(AMULET, T0), (OTHER, T0 + 3_000)]
    assert [r.data["battery_mv"] for r in out if r.kind == "event"] == [2800]
    assert agg.present() == [] and agg.flush(T0 + 6_000) == []


def test_telemetry_is_rate_limited_and_the_latest_wins() -> None:
    agg = Aggregator(30_000, 20_000, 0.3)
    out = agg.feed(tlm(T0, 3000), T0)
    assert [r.data["battery_mv"] for r in out] == [3000]  # the first passes at once
    for i, battery in enumerate((2990, 2980, 2970), start=1):
        assert agg.feed(tlm(T0 + i * 9_000, battery), T0 + i * 9_000) == []
    assert agg.tick(T0 + 29_999) == []
    assert agg.next_deadline() == T0 + 30_000
    out = agg.tick(T0 + 30_000)
    assert [r.data["battery_mv"] for r in out] == [2970]
    assert agg.tick(T0 + 90_000) == []  # nothing new waiting


def test_alarms_taps_and_other_events_pass_straight_through() -> None:
    agg = Aggregator(30_000, 20_000, 0.3)
    alarm = Reading(T0, "alarm", "smoke-rflink@1", "rf433:hh-1", {"event": "alarm"})
    tap = Reading(T0, "tap", "patrol-tag@1", "ntag:04aa", {"event": "tap"})
    low = Reading(T0, "event", "smoke-ev1527@1", "rf433:hh-1", {"event": "low_battery"})
    for reading in (alarm, tap, low, alarm, low):
        assert agg.feed(reading, T0) == [reading]
    assert agg.tick(T0 + 100_000) == [] and agg.flush(T0) == []
