"""The simulated radio: deterministic, realistic enough, and decoded by the real decoders."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter

import pytest

from edge_agent.aggregator import Aggregator
from edge_agent.decoders.dispatch import FrameDecoder
from edge_agent.sources.sim import SimOptions, SimSource, simulate
from shouhu.exceptions import ConfigError
from shouhu.model import RawFrame, Reading
from shouhu.profiles import load_profiles

T0 = 1_763_800_000_000


def frames_for(opts: SimOptions, seconds: int) -> list[RawFrame]:
    return list(
        itertools.takewhile(lambda f: f.ts < T0 + seconds * 1000, simulate(opts, "sim0", T0))
    )


def test_same_seed_same_frames_other_seed_other_frames() -> None:
    a = frames_for(SimOptions(wearers=4, seed=3, aeds=1), 120)
    assert a == frames_for(SimOptions(wearers=4, seed=3, aeds=1), 120)
    assert a != frames_for(SimOptions(wearers=4, seed=4, aeds=1), 120)
    assert all(x.ts <= y.ts for x, y in itertools.pairwise(a))
    assert all(f.source == "sim0" for f in a)


def test_frames_decode_with_the_shipped_profiles() -> None:
    decoder = FrameDecoder(load_profiles())
    kinds: Counter[tuple[str, str]] = Counter()
    devices: set[str] = set()
    for frame in frames_for(SimOptions(wearers=6, seed=1, aeds=2, mean_away_s=20), 600):
        profile, readings = decoder.decode("ble", frame)
        assert profile is not None, frame
        for r in readings:
            kinds[(profile.id, r.kind)] += 1
            devices.add(r.device)
            if r.kind == "sighting":
                assert -110 < r.data["rssi"] < -20
    assert set(kinds) == {
        ("amulet-ibeacon", "sighting"),
        ("aed-eddystone", "sighting"),
        ("aed-eddystone", "event"),
    }
    amulets = {d for d in devices if d.startswith("ibeacon:")}
    assert amulets == {f"ibeacon:fda50693a4e24fb1afcfc6eb07647825:10001:{i}" for i in range(1, 7)}
    assert "eddystone:5368cbe75f7e4a1d8a00:000000000002" in devices


def test_wearers_come_and_go_with_gaps_and_rssi_follows_distance() -> None:
    opts = SimOptions(wearers=1, seed=2, mean_away_s=30, mean_linger_s=30)
    decoder = FrameDecoder(load_profiles())
    agg = Aggregator(update_interval_ms=30_000, away_timeout_ms=20_000)
    out: list[Reading] = []
    frames = frames_for(opts, 1800)
    for frame in frames:
        out += agg.tick(frame.ts)  # the clock moved on before this frame arrived
        _, readings = decoder.decode("ble", frame)
        for r in readings:
            out += agg.feed(r, frame.ts)
    out += agg.tick(T0 + 1_900_000)
    events = [r.data["event"] for r in out]
    assert events.count("enter") >= 5 and events.count("enter") == events.count("exit")
    # not every advertisement is reported: loss and BlueZ-style gaps
    gaps = [b.ts - a.ts for a, b in itertools.pairwise(frames)]
    assert len(frames) < 1800 * 0.9
    assert any(2_000 <= g < 20_000 for g in gaps)
    # nearer (mid-visit) is stronger than at the edge of range
    rssi = [f.meta["rssi"] for f in frames]
    assert max(rssi) - min(rssi) > 15


def test_options_are_checked_and_name_the_field() -> None:
    with pytest.raises(ConfigError, match="sources.s.options.wearer"):
        SimOptions.from_options("s", {"wearer": 5})
    with pytest.raises(ConfigError, match="sources.s.options.wearers"):
        SimOptions.from_options("s", {"wearers": -1})
    with pytest.raises(ConfigError, match="sources.s.options.uuid"):
        SimOptions.from_options("s", {"uuid": "not-a-uuid"})
    assert SimOptions.from_options("s", {"wearers": 3, "time_scale": 2}).time_scale == 2


def test_source_plays_frames_in_scaled_real_time_and_stops() -> None:
    source = SimSource("sim0", {"wearers": 20, "seed": 5, "time_scale": 20, "mean_away_s": 1})
    got: list[RawFrame] = []
    lock = threading.Lock()

    def emit(frame: RawFrame) -> None:
        with lock:
            got.append(frame)

    source.start(emit)
    time.sleep(0.5)  # 10 simulated seconds
    assert source.health()["present"] is True
    source.stop()
    n = len(got)
    assert n > 20 and source.health()["frames"] == n
    assert source.health()["present"] is False
    time.sleep(0.1)
    assert len(got) == n  # nothing after stop
