"""The ``script`` source: a timeline of real frames played at their offsets."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import load_source
from edge_agent.config import parse_config
from edge_agent.decoders.ble import build_ibeacon_ad
from edge_agent.decoders.dispatch import FrameDecoder
from edge_agent.sources.base import SOURCES
from edge_agent.sources.script import ScriptSource, parse_options, timeline
from shouhu.exceptions import ConfigError
from shouhu.model import RawFrame
from shouhu.profiles import load_profiles

AMULET = build_ibeacon_ad("fda50693-a4e2-4fb1-afcf-c6eb07647825", 20001, 7)
SMOKE_ON = "20;0D;FA20RF;ID=97e3b2;SMOKEALERT=ON;"


class Collected:
    """An ``emit`` that keeps what it got, with the monotonic time it got it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.frames: list[tuple[float, RawFrame]] = []

    def __call__(self, frame: RawFrame) -> None:
        with self.lock:
            self.frames.append((time.monotonic(), frame))


def test_the_script_source_is_in_the_sources_table() -> None:
    assert SOURCES["script"] == "edge_agent.sources.script:ScriptSource"
    doc = {
        "gateway": {"id": "gw-script-1"},
        "broker": {"url": "mqtt://127.0.0.1:1883"},
        "sources": [
            {"name": "rf", "type": "script",
             "options": {"transport": "serial", "frames": [{"payload_text": SMOKE_ON}]}},
        ],
    }  # fmt: skip
    config = parse_config(doc, "gw.yaml")
    source = load_source(config.sources[0])
    assert isinstance(source, ScriptSource)
    assert source.transport == "serial"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({}, "sources.s.options.transport"),
        ({"transport": "zigbee"}, "sources.s.options.transport"),
        ({"transport": "ble", "speed": 2}, "sources.s.options.speed"),
        ({"transport": "ble", "frames": "0201"}, "sources.s.options.frames"),
        ({"transport": "ble", "frames": [{"at_s": 1}]}, "sources.s.options.frames[0]"),
        (
            {"transport": "ble", "frames": [{"payload": "02", "payload_text": "x"}]},
            "sources.s.options.frames[0]",
        ),
        ({"transport": "ble", "frames": [{"payload": "zz"}]}, "sources.s.options.frames[0].payload"),
        ({"transport": "ble", "frames": [{"payload": "02", "at_s": -1}]}, "sources.s.options.frames[0].at_s"),
        ({"transport": "ble", "frames": [{"payload": "02", "rssi": 1}]}, "sources.s.options.frames[0].rssi"),
        ({"transport": "ble", "time_scale": 0}, "sources.s.options.time_scale"),
        ({"transport": "ble", "repeat": -1}, "sources.s.options.repeat"),
        (
            {"transport": "ble", "frames": [{"payload": "02", "at_s": 5}], "period_s": 2},
            "sources.s.options.period_s",
        ),
        ({"transport": "serial", "transmit": {"explode": "10;X;"}}, "sources.s.options.transmit"),
        ({"transport": "ble", "file": "/nonexistent/frames.yaml"}, "sources.s.options.file"),
    ],
)  # fmt: skip
def test_bad_options_name_their_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        ScriptSource("s", options)
    assert info.value.field == field


def test_timeline_sorts_scales_and_repeats() -> None:
    opts = parse_options(
        "s",
        {
            "transport": "serial",
            "frames": [{"at_s": 2.0, "payload_text": "b"}, {"at_s": 0.5, "payload_text": "a"}],
            "time_scale": 2.0,
            "repeat": 2,
            "period_s": 4.0,
        },
    )
    played = [(offset, f.payload) for offset, f in timeline(opts)]
    assert played == [(0.25, b"a"), (1.0, b"b"), (2.25, b"a"), (3.0, b"b")]


def test_frames_come_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "frames.yaml"
    path.write_text(f"- {{at_s: 0.1, payload_text: '{SMOKE_ON}', meta: {{port: /dev/ttyACM0}}}}\n")
    opts = parse_options("s", {"transport": "serial", "file": str(path)})
    assert [(f.at_s, f.payload, dict(f.meta)) for f in opts.frames] == [
        (0.1, SMOKE_ON.encode(), {"port": "/dev/ttyACM0"})
    ]


def test_plays_frames_at_their_offsets_stamped_with_the_wall_clock() -> None:
    source = ScriptSource(
        "air",
        {
            "transport": "ble",
            "frames": [
                {"at_s": 0.0, "payload": AMULET.hex(), "meta": {"rssi": -60, "address": "C3:1"}},
                {"at_s": 0.3, "payload": AMULET.hex(), "meta": {"rssi": -70, "address": "C3:1"}},
            ],
        },
    )
    got = Collected()
    before_ms = int(time.time() * 1000)
    t0 = time.monotonic()
    source.start(got)
    assert source.wait_done(5)
    after_ms = int(time.time() * 1000)
    assert source.health() == {"frames": 2, "errors": 0, "present": True, "sent": 0}
    source.stop()
    assert source.health()["present"] is False
    (m1, f1), (m2, f2) = got.frames
    assert [f.meta["rssi"] for f in (f1, f2)] == [-60, -70]
    assert f1.source == "air" and f1.payload == AMULET
    assert before_ms <= f1.ts <= f2.ts <= after_ms
    assert m1 - t0 < 0.2
    assert 0.25 <= m2 - t0 < 0.8  # the second frame waited for its offset
    assert 250 <= f2.ts - f1.ts < 800


def test_stop_ends_a_long_timeline_at_once() -> None:
    source = ScriptSource(
        "slow", {"transport": "serial", "frames": [{"at_s": 60, "payload_text": SMOKE_ON}]}
    )
    got = Collected()
    source.start(got)
    t0 = time.monotonic()
    source.stop()
    assert time.monotonic() - t0 < 1.0
    assert got.frames == []
    assert source.health()["frames"] == 0


def test_repeat_zero_plays_until_stopped() -> None:
    source = ScriptSource(
        "loop",
        {"transport": "serial", "frames": [{"payload_text": SMOKE_ON}], "repeat": 0,
         "period_s": 0.01},
    )  # fmt: skip
    got = Collected()
    source.start(got)
    deadline = time.monotonic() + 5
    while len(got.frames) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not source.wait_done(0)  # an endless timeline is never done
    source.stop()
    assert len(got.frames) >= 20


def test_a_failing_consumer_is_counted_and_the_radio_goes_on() -> None:
    source = ScriptSource(
        "rf",
        {"transport": "serial",
         "frames": [{"at_s": 0, "payload_text": "a"}, {"at_s": 0.01, "payload_text": "b"}]},
    )  # fmt: skip
    seen: list[bytes] = []

    def emit(frame: RawFrame) -> None:
        seen.append(frame.payload)
        if frame.payload == b"a":
            raise RuntimeError("consumer bug")

    source.start(emit)
    assert source.wait_done(5)
    source.stop()
    assert seen == [b"a", b"b"]
    assert source.health()["errors"] == 1 and source.health()["frames"] == 1


def test_played_frames_go_through_the_real_decoders() -> None:
    decoder = FrameDecoder(load_profiles())
    source = ScriptSource(
        "rf",
        {"transport": "serial",
         "frames": [{"payload_text": SMOKE_ON, "meta": {"port": "/dev/ttyACM0"}},
                    {"at_s": 0.01, "payload_text": "20;00;Nodo RadioFrequencyLink;"}]},
    )  # fmt: skip
    got = Collected()
    source.start(got)
    assert source.wait_done(5)
    source.stop()
    decoded = [decoder.decode(source.transport, f) for _, f in got.frames]
    (profile, readings), (nobody, nothing) = decoded
    assert profile is not None and profile.id == "smoke-rflink"
    assert [(r.kind, r.device, r.data["event"]) for r in readings] == [
        ("alarm", "rflink:fa20rf:97e3b2", "alarm")
    ]
    assert readings[0].ts == got.frames[0][1].ts
    assert nobody is None and nothing == []


def test_transmit_lines_are_recorded_for_the_agent_commands() -> None:
    source = ScriptSource(
        "rf",
        {"transport": "serial", "transmit": {"sound": "10;FA20RF;5c81d0;1;ON;"}},
    )
    assert source.transmit == {"sound": b"10;FA20RF;5c81d0;1;ON;\r\n"}
    before = int(time.time() * 1000)
    source.send(source.transmit["sound"])
    [(at, line)] = source.sent()
    assert line == b"10;FA20RF;5c81d0;1;ON;\r\n" and at >= before
    assert source.health()["sent"] == 1
