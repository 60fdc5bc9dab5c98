"""Serial smoke-alarm decoders from real and documented receiver lines, and BurstFilter.

RFLink lines follow RFLink's published protocol reference; rtl_433 objects carry the fields
of merbanan/rtl_433 src/devices/{smoke_gs558,cavius,interlogix,honeywell}.c.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.decoders import get_decoder
from edge_agent.decoders.serial import (
    SMOKE_EVENTS,
    BurstFilter,
    decode_fixed_code,
    decode_rflink,
    decode_rtl433,
)
from shouhu.exceptions import DecodeError
from shouhu.model import RawFrame, Reading
from shouhu.profiles import Profile

TS = 1763800000123

RFLINK = Profile(
    id="smoke-rflink",
    version=1,
    transport="serial",
    decoder="rflink",
    match={"protocols": ["FA20RF", "KD101"]},
    options={"cmd_alarm_protocols": ["KD101"]},
)
RFLINK_ANY = Profile(id="rflink-any", version=2, transport="serial", decoder="rflink")
RTL433 = Profile(
    id="smoke-rtl433",
    version=1,
    transport="serial",
    decoder="rtl433-json",
    match={
        "models": ["Smoke-GS558", "Cavius-Security", "Interlogix-Security", "Honeywell-Security"]
    },
)
EV1527 = Profile(
    id="smoke-ev1527",
    version=3,
    transport="serial",
    decoder="fixed-code",
    options={
        "codes": {
            "a1b2c": {"device": "hh-0042-kitchen", "events": {"8": "alarm", "4": "low_battery"}},
            "5F3E01": {"device": "hh-0042-hall", "event": "alarm"},
            "00c0f": {"events": {"1": "test"}},
        }
    },
)


def frame(line: str | bytes) -> RawFrame:
    payload = line.encode() if isinstance(line, str) else line
    return RawFrame("rf0", TS, payload, {"port": "/dev/ttyACM0"})


def reading(kind: str, profile: Profile, device: str, **data: Any) -> Reading:
    return Reading(TS, kind, profile.ref, device, data)  # type: ignore[arg-type]


def test_decoders_are_registered_under_their_profile_names() -> None:
    assert get_decoder("rflink") is decode_rflink
    assert get_decoder("rtl433-json") is decode_rtl433
    assert get_decoder("fixed-code") is decode_fixed_code


# --- RFLink ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "20;0D;FA20RF;ID=97e3b2;SMOKEALERT=ON;",
            [
                reading(
                    "alarm",
                    RFLINK,
                    "rflink:fa20rf:97e3b2",
                    protocol="FA20RF",
                    id="97e3b2",
                    event="alarm",
                )
            ],
        ),
        (
            "20;4F;FA20RF;ID=97E3B2;SMOKEALERT=OFF;BAT=LOW;",
            [
                reading(
                    "alarm",
                    RFLINK,
                    "rflink:fa20rf:97e3b2",
                    protocol="FA20RF",
                    id="97e3b2",
                    battery_ok=False,
                    event="alarm_cleared",
                ),
                reading(
                    "event",
                    RFLINK,
                    "rflink:fa20rf:97e3b2",
                    protocol="FA20RF",
                    id="97e3b2",
                    battery_ok=False,
                    event="low_battery",
                ),
            ],
        ),
        (
            "20;1A;KD101;ID=e5a7;SWITCH=1;CMD=ON;",
            [
                reading(
                    "alarm",
                    RFLINK,
                    "rflink:kd101:e5a7",
                    protocol="KD101",
                    id="e5a7",
                    channel="1",
                    event="alarm",
                )
            ],
        ),
    ],
)
def test_rflink_smoke_lines(line: str, expected: list[Reading]) -> None:
    assert decode_rflink(frame(line), RFLINK) == expected


@pytest.mark.parametrize(
    "line",
    [
        "20;00;Nodo RadioFrequencyLink - RFLink Gateway V1.1 - R46;",  # banner
        "20;01;MySensors=OFF;NO NRF24L01;",  # status
        "20;02;setGPIO=ON;",
        "20;9A;OK;",
        "20;03;Cresta;ID=3001;TEMP=00b4;HUM=50;BAT=OK;",  # protocol not in match
        "20;06;NewKaku;ID=008440e6;SWITCH=a;CMD=OFF;",
        "10;FA20RF;97e3b2;ON;",  # host -> gateway command echoed back
        "",
        "hello",
    ],
)
def test_rflink_lines_that_are_not_smoke_readings(line: str) -> None:
    assert decode_rflink(frame(line), RFLINK) == []


def test_rflink_any_protocol_profile_ignores_sensors_without_smoke_fields() -> None:
    assert decode_rflink(frame("20;04;Cresta;ID=3001;TEMP=80c3;HUM=50;BAT=OK;"), RFLINK_ANY) == []
    # a weather sensor with a flat battery is still a low_battery event of that device
    [low] = decode_rflink(frame("20;04;Cresta;ID=3001;TEMP=80c3;HUM=50;BAT=LOW;"), RFLINK_ANY)
    assert low.kind == "event"
    assert low.profile == "rflink-any@2"
    assert low.data["temperature_c"] == -19.5
    assert low.data["event"] == "low_battery"


def test_rflink_match_ids() -> None:
    profile = Profile(
        id="one", version=1, transport="serial", decoder="rflink", match={"ids": ["97E3B2"]}
    )
    assert decode_rflink(frame("20;0D;FA20RF;ID=97e3b2;SMOKEALERT=ON;"), profile)
    assert decode_rflink(frame("20;0D;FA20RF;ID=111111;SMOKEALERT=ON;"), profile) == []


@pytest.mark.parametrize(
    "line",
    [
        "20;0D;FA20RF;ID=97e3b2;SMOKEAL",  # truncated mid-field
        "20;0D;FA20RF;ID=97e3",  # truncated mid-id
        "20;0D;FA20RF;ID=97zz;SMOKEALERT=ON;",
        "20;0D;FA20RF;ID=97e3b2;SMOKEALERT=MAYBE;",
        "20;0D;FA20RF;ID=97e3b2;BAT=HALF;",
        "20;0D;FA20RF;ID=97e3b2;NOEQUALS;",
        "20;0D;FA20RF;ID=97e3b2;TEMP=hot;SMOKEALERT=ON;",
    ],
)
def test_rflink_malformed_lines_of_a_matched_protocol(line: str) -> None:
    with pytest.raises(DecodeError):
        decode_rflink(frame(line), RFLINK)


def test_non_utf8_line_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode_rflink(frame(b"20;0D;FA20RF;ID=\xff;"), RFLINK)


# --- rtl_433 --------------------------------------------------------------------------------


def rtl(obj: dict[str, Any]) -> RawFrame:
    return frame(json.dumps({"time": "2026-11-20 19:32:10", **obj}))


def test_rtl433_gs558_alarm_and_pairing() -> None:
    obj = {"model": "Smoke-GS558", "id": 12026, "unit": 21, "learn": 0, "code": "35df55"}
    assert decode_rtl433(rtl(obj), RTL433) == [
        reading(
            "alarm",
            RTL433,
            "rtl433:Smoke-GS558:12026:21",
            protocol="Smoke-GS558",
            id="12026",
            unit=21,
            code="35df55",
            event="alarm",
        )
    ]
    assert decode_rtl433(rtl({**obj, "learn": 1}), RTL433) == []


@pytest.mark.parametrize(
    ("message", "battery_ok", "text", "events"),
    [
        (0x20, 1, "Fire alarm", ["alarm"]),
        (0x40, 1, "Test alarm", ["test"]),
        (0x04, 1, "Alarm muted", ["hush"]),
        (0x10, 1, "Warning/Water detected", ["alarm"]),
        (0x00, 0, "Battery low", ["low_battery"]),
        (0x20, 0, "Fire alarm", ["alarm", "low_battery"]),
        (0x80, 1, "Pairing", []),
    ],
)
def test_rtl433_cavius(message: int, battery_ok: int, text: str, events: list[str]) -> None:
    obj = {
        "model": "Cavius-Security",
        "id": 1234567,
        "battery_ok": battery_ok,
        "net_id": 98765432,
        "message": message,
        "text": text,
        "mic": "CRC",
    }
    out = decode_rtl433(rtl(obj), RTL433)
    assert [r.data["event"] for r in out] == events
    assert [r.kind for r in out] == [SMOKE_EVENTS[e] for e in events]
    assert all(r.device == "rtl433:Cavius-Security:1234567" for r in out)
    assert all(r.data["battery_ok"] is bool(battery_ok) for r in out)


def test_rtl433_cavius_older_build_with_text_only() -> None:
    obj = {"model": "Cavius-Security", "id": 7, "net_id": 1, "text": "Battery low"}
    [low] = decode_rtl433(rtl(obj), RTL433)
    assert (low.kind, low.data["event"], low.data["battery_ok"]) == ("event", "low_battery", False)
    with pytest.raises(DecodeError):
        decode_rtl433(rtl({**obj, "text": "Unknown"}), RTL433)
    with pytest.raises(DecodeError):
        decode_rtl433(rtl({"model": "Cavius-Security", "id": 7, "message": 0x01}), RTL433)


def test_rtl433_interlogix_alarm_tamper_supervision() -> None:
    base = {
        "model": "Interlogix-Security",
        "subtype": "unknown",
        "id": "A1B2C3",
        "raw_message": "4c2a10",
        "battery": "OK",
        "switch1": "CLOSED",
        "switch2": "CLOSED",
        "switch3": "CLOSED",
        "switch4": "CLOSED",
        "switch5": "CLOSED",
    }
    events = lambda **kw: [r.data["event"] for r in decode_rtl433(rtl({**base, **kw}), RTL433)]  # noqa: E731
    assert events(switch1="OPEN") == ["alarm"]
    assert events(switch3="OPEN", battery="LOW") == ["tamper", "low_battery"]
    assert events() == ["heartbeat"]
    [sup] = decode_rtl433(rtl(base), RTL433)
    assert sup.device == "rtl433:Interlogix-Security:a1b2c3"
    assert sup.data["alarm"] is False and sup.data["battery_ok"] is True
    with pytest.raises(DecodeError):
        decode_rtl433(rtl({**base, "switch1": "AJAR"}), RTL433)


def test_rtl433_honeywell_5800_smoke() -> None:
    base = {
        "model": "Honeywell-Security",
        "id": 641697,
        "channel": 8,
        "event": 20,
        "state": "closed",
        "contact_open": 0,
        "reed_open": 0,
        "alarm": 1,
        "tamper": 0,
        "battery_ok": 1,
        "heartbeat": 1,
        "mic": "CRC",
    }
    assert decode_rtl433(rtl(base), RTL433) == [
        reading(
            "alarm",
            RTL433,
            "rtl433:Honeywell-Security:641697",
            protocol="Honeywell-Security",
            id="641697",
            raw_event=20,
            raw_state="closed",
            battery_ok=True,
            channel=8,
            event="alarm",
        )
    ]
    events = lambda **kw: [r.data["event"] for r in decode_rtl433(rtl({**base, **kw}), RTL433)]  # noqa: E731
    assert events(alarm=0) == ["heartbeat"]
    assert events(alarm=0, heartbeat=0) == ["alarm_cleared"]
    assert events(alarm=0, heartbeat=0, tamper=1, battery_ok=0) == ["tamper", "low_battery"]


@pytest.mark.parametrize(
    "line",
    [
        "",
        "rtl_433 version 23.11 branch  at 202311281352",
        '{"time" : "2026-11-20 19:33:00", "model" : "Acurite-Tower", "id" : 2570, "battery_ok" : 1}',
        "[1, 2, 3]",
        '{"no_model": true}',
    ],
)
def test_rtl433_lines_that_are_not_for_the_profile(line: str) -> None:
    assert decode_rtl433(frame(line), RTL433) == []


@pytest.mark.parametrize(
    "line",
    [
        '{"time" : "2026-11-20 19:32:13", "model" : "Honeywell-Security", "id" : 6416',  # truncated
        '{"model" : "Honeywell-Security", "channel" : 8, "alarm" : 1}',  # no id
        '{"model" : "Honeywell-Security", "id" : 1, "state" : "closed"}',  # no smoke fields
        '{"model" : "Honeywell-Security", "id" : 1, "alarm" : "yes"}',
        '{"model" : "Smoke-GS558", "id" : [1]}',
    ],
)
def test_rtl433_malformed_objects_of_a_matched_model(line: str) -> None:
    with pytest.raises(DecodeError):
        decode_rtl433(frame(line), RTL433)


# --- EV1527 fixed codes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "kind", "device", "event", "code"),
    [
        ("RX:A1B2C8", "alarm", "rf433:hh-0042-kitchen", "alarm", "a1b2c8"),
        ("0xa1b2c4", "event", "rf433:hh-0042-kitchen", "low_battery", "a1b2c4"),
        ("A1B2C8", "alarm", "rf433:hh-0042-kitchen", "alarm", "a1b2c8"),
        ("LC: 5F3E01", "alarm", "rf433:hh-0042-hall", "alarm", "5f3e01"),
        ("RX:00C0F1", "alarm", "rf433:00c0f", "test", "00c0f1"),  # no device name: address
    ],
)
def test_fixed_code_lines(line: str, kind: str, device: str, event: str, code: str) -> None:
    assert decode_fixed_code(frame(line), EV1527) == [
        reading(kind, EV1527, device, protocol="ev1527", code=code, key=code[-1], event=event)
    ]


@pytest.mark.parametrize("line", ["RX:123456", "RX:A1B2", "hello", "", "RX:A1B2C8D"])
def test_fixed_code_lines_not_for_the_profile(line: str) -> None:
    assert decode_fixed_code(frame(line), EV1527) == []


def test_fixed_code_known_transmitter_unknown_key_is_an_error() -> None:
    with pytest.raises(DecodeError, match="key 1"):
        decode_fixed_code(frame("RX:A1B2C1"), EV1527)


def test_fixed_code_custom_line_pattern_and_decimal_codes() -> None:
    rcswitch = Profile(
        id="custom",
        version=1,
        transport="serial",
        decoder="fixed-code",
        options={
            "line_pattern": r"^Received (?P<code>\d+) / 24bit",  # rc-switch ReceiveDemo
            "code_base": 10,
            "codes": EV1527.options["codes"],
        },
    )
    [r] = decode_fixed_code(frame("Received 6241793 / 24bit Protocol: 1"), rcswitch)
    assert (r.device, r.data["code"], r.data["event"]) == ("rf433:hh-0042-hall", "5f3e01", "alarm")
    with pytest.raises(DecodeError, match="longer than 24 bits"):
        decode_fixed_code(frame("Received 99999999 / 24bit Protocol: 1"), rcswitch)
    custom = Profile(
        id="custom",
        version=1,
        transport="serial",
        decoder="fixed-code",
        options={"line_pattern": r"code=(?P<code>[0-9a-f]{6})", "codes": EV1527.options["codes"]},
    )
    [r] = decode_fixed_code(frame("rx ok code=a1b2c8 rssi=-60"), custom)
    assert r.device == "rf433:hh-0042-kitchen"


@pytest.mark.parametrize(
    "options",
    [
        {"line_pattern": "(", "codes": {}},
        {"line_pattern": "(?P<nocode>.*)", "codes": {}},
        {"codes": ["a1b2c"]},
        {"codes": {"a1b2c": {"device": "d", "events": "alarm"}}},
        {"codes": {"a1b2c": {"device": "d", "events": {"8": "fire"}}}},
        {"code_base": 2, "codes": {}},
    ],
)
def test_fixed_code_bad_profile_options_are_decode_errors(options: dict[str, Any]) -> None:
    profile = Profile(
        id="bad", version=1, transport="serial", decoder="fixed-code", options=options
    )
    with pytest.raises(DecodeError):
        decode_fixed_code(frame("RX:A1B2C8"), profile)


# --- never anything but DecodeError -----------------------------------------------------------

DECODERS = [(decode_rflink, RFLINK), (decode_rflink, RFLINK_ANY), (decode_rtl433, RTL433)]
DECODERS += [(decode_fixed_code, EV1527)]
rflinkish = st.lists(
    st.one_of(
        st.sampled_from(
            ["20", "FA20RF", "KD101", "ID=97e3b2", "SMOKEALERT=ON", "BAT=LOW", "CMD=ON"]
        ),
        st.sampled_from(["TEMP=80c3", "SWITCH=1", "ID=", "=", ""]),
        st.text(max_size=12),
    ),
    max_size=8,
).map(";".join)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
rtl433ish = st.fixed_dictionaries(
    {"model": st.sampled_from(list(RTL433.match["models"]) + ["Other"])},
    optional={
        k: json_value
        for k in ("id", "unit", "learn", "message", "text", "battery_ok", "battery", "alarm")
        + ("tamper", "heartbeat", "switch1", "switch3", "channel", "rssi")
    },
).map(json.dumps)


@settings(max_examples=300, deadline=None, print_blob=True)
@given(
    payload=st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200).map(str.encode),
        rflinkish.map(str.encode),
        rtl433ish.map(str.encode),
        st.from_regex(r"(RX:|0x)?[0-9A-Fa-f]{4,8}", fullmatch=True).map(str.encode),
    ),
    which=st.sampled_from(range(len(DECODERS))),
)
def test_decoders_raise_only_decode_error(payload: bytes, which: int) -> None:
    decode, profile = DECODERS[which]
    try:
        out = decode(frame(payload), profile)
    except DecodeError:
        return
    for r in out:
        assert r.ts == TS and r.profile == profile.ref
        assert r.data["event"] in SMOKE_EVENTS and r.kind == SMOKE_EVENTS[r.data["event"]]
        assert r.device.split(":")[0] in ("rflink", "rtl433", "rf433")


# --- BurstFilter ------------------------------------------------------------------------------


def alarm_at(ts: int, device: str = "rflink:fa20rf:97e3b2", event: str = "alarm") -> Reading:
    return Reading(ts, SMOKE_EVENTS[event], "smoke-rflink@1", device, {"event": event})


def test_burst_of_repeats_is_one_reading() -> None:
    burst = BurstFilter(window_s=2)
    # an FA20RF repeats its frame about every 150 ms while it sounds; then silence, then again
    accepted = [burst.accept(alarm_at(TS + i * 150)) for i in range(20)]
    assert accepted == [True] + [False] * 19
    assert burst.accept(alarm_at(TS + 19 * 150 + 2000)) is True  # a new burst after the gap
    assert burst.suppressed == 19


def test_burst_filter_keys_on_device_and_event() -> None:
    burst = BurstFilter(window_s=2)
    assert burst.accept(alarm_at(TS)) is True
    assert burst.accept(alarm_at(TS + 10, device="rflink:fa20rf:000001")) is True
    assert burst.accept(alarm_at(TS + 20, event="low_battery")) is True
    assert burst.accept(alarm_at(TS + 30, event="hush")) is True
    assert burst.accept(alarm_at(TS + 40)) is False


def test_burst_filter_lets_a_continuing_alarm_through_every_refresh() -> None:
    burst = BurstFilter(window_s=2, refresh_s=10)
    accepted = [ts for ts in range(TS, TS + 25_000, 500) if burst.accept(alarm_at(ts))]
    assert accepted == [TS, TS + 10_000, TS + 20_000]


def test_burst_filter_window_zero_passes_everything_and_old_keys_are_forgotten() -> None:
    assert all(BurstFilter(0).accept(alarm_at(TS)) for _ in range(3))
    burst = BurstFilter(window_s=1)
    for i in range(5000):
        burst.accept(alarm_at(TS + i * 10, device=f"rf433:{i:05x}"))
    assert len(burst._seen) < 5000
    with pytest.raises(ValueError):
        BurstFilter(-1)


# --- shouhu decode serial -------------------------------------------------------------------


def test_cli_prints_the_reading_as_json() -> None:
    from click.testing import CliRunner

    from edge_agent.decoders.serial_cli import serial

    line = "20;0D;FA20RF;ID=97e3b2;SMOKEALERT=ON;"
    result = CliRunner().invoke(serial, ["--profile", "smoke-rflink", "--ts", str(TS), line])
    assert result.exit_code == 0, result.output
    assert [json.loads(x) for x in result.stdout.splitlines()] == [
        {
            "ts": TS,
            "kind": "alarm",
            "profile": "smoke-rflink@1",
            "device": "rflink:fa20rf:97e3b2",
            "data": {"event": "alarm", "protocol": "FA20RF", "id": "97e3b2"},
        }
    ]


def test_cli_exit_codes() -> None:
    from click.testing import CliRunner

    from edge_agent.decoders.serial_cli import serial

    runner = CliRunner()
    banner = "20;00;Nodo RadioFrequencyLink - RFLink Gateway V1.1 - R46;"
    result = runner.invoke(serial, ["--profile", "smoke-rflink", banner])
    assert result.exit_code == 1
    assert "matches nothing in profile smoke-rflink@1" in result.stderr
    result = runner.invoke(serial, ["--profile", "smoke-rflink", "20;0D;FA20RF;ID=97e3b2;SMOKE"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: RFLink line truncated")
    result = runner.invoke(serial, ["--profile", "no-such-profile", "x"])
    assert result.exit_code == 2
    assert "no-such-profile" in result.stderr


def test_cli_reads_stdin_line_by_line_past_bad_lines() -> None:
    from click.testing import CliRunner

    from edge_agent.decoders.serial_cli import serial

    stdin = "RX:A1B2C8\nRX:A1B2C1\nnoise\n0xA1B2C4\n"
    result = CliRunner().invoke(serial, ["--profile", "smoke-ev1527", "-"], input=stdin)
    assert result.exit_code == 0
    events = [json.loads(x)["data"]["event"] for x in result.stdout.splitlines()]
    assert events == ["alarm", "low_battery"]
    assert "key 1" in result.stderr


# --- profile validation (validate_profile, run by shouhu.profiles on load) --------------------


def ev1527_doc(**options: Any) -> dict[str, Any]:
    return {
        "id": "smoke-ev1527-test",
        "version": 1,
        "transport": "serial",
        "decoder": "fixed-code",
        "options": {"codes": {"a1b2c": {"device": "hh-1", "events": {"8": "alarm"}}}, **options},
        "readings": ["alarm", "event"],
    }


def test_shipped_serial_profiles_load() -> None:
    from shouhu.profiles import load_profiles

    profiles = load_profiles()
    for name in ("smoke-rflink", "smoke-rtl433", "smoke-ev1527"):
        assert profiles[name].transport == "serial"


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ({"codes": {12345: {"event": "alarm"}}}, "options.codes.12345"),
        ({"codes": {"a1b2c": {"events": {"8": "fire"}}}}, "options.codes.a1b2c.events.8"),
        ({"codes": {"a1b2c": {"events": {"88": "alarm"}}}}, "options.codes.a1b2c.events.88"),
        (
            {"codes": {"5f3e01": {"device": "Mrs Wang", "event": "alarm"}}},
            "options.codes.5f3e01.device",
        ),
        ({"codes": {"xyz": {"event": "alarm"}}}, "options.codes.xyz"),
        ({"line_pattern": "RX:(\\w+)"}, "options.line_pattern: needs"),
        ({"line_pattern": "RX:("}, "options.line_pattern: not a regex"),
        ({"code_base": 8}, "options.code_base"),
        ({"framing": "9Q1"}, "options.framing"),
        ({"baud": "fast"}, "options.baud"),
        ({"line_terminator": ";"}, "options.line_terminator"),
        ({"codez": {}}, "options.codez"),
    ],
)
def test_bad_serial_profiles_are_refused_naming_the_field(
    options: dict[str, Any], where: str
) -> None:
    from shouhu.exceptions import ProfileError
    from shouhu.profiles import parse_profile

    with pytest.raises(ProfileError) as info:
        parse_profile(ev1527_doc(**options), "test.yaml")
    assert where in info.value.message


def test_rflink_and_rtl433_profile_checks() -> None:
    from shouhu.exceptions import ProfileError
    from shouhu.profiles import parse_profile

    doc = {
        "id": "r",
        "version": 1,
        "transport": "serial",
        "decoder": "rflink",
        "readings": ["alarm"],
    }
    assert parse_profile({**doc, "match": {"protocols": ["FA20RF"], "ids": ["97e3b2"]}}, "t").match
    with pytest.raises(ProfileError, match="match.ids"):
        parse_profile({**doc, "match": {"ids": ["zz"]}}, "t")
    with pytest.raises(ProfileError, match="match.models"):
        parse_profile({**doc, "match": {"models": ["x"]}}, "t")
    with pytest.raises(ProfileError, match="transport"):
        parse_profile({**doc, "transport": "ble"}, "t")
    doc = {**doc, "decoder": "rtl433-json"}
    with pytest.raises(ProfileError, match="options.alarm_switch"):
        parse_profile({**doc, "options": {"alarm_switch": "switch9"}}, "t")
