"""Records → InfluxDB points and line protocol (pure; no database needed)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.points import (
    MEASUREMENTS,
    Point,
    point_time_ns,
    record_to_point,
    records_to_lines,
    to_line_protocol,
)
from shouhu.model import STREAMS, Record

TS = 1_763_800_000_001
GW = "gw-east-017"
AMULET = "ibeacon:fda50693a4e24fb1afcfc6eb07647825:1:2"


def rec(kind: str = "sighting", data: dict[str, Any] | None = None, **kw: Any) -> Record:
    fields: dict[str, Any] = {
        "seq": 4711,
        "ts": TS,
        "kind": kind,
        "profile": "amulet-ibeacon@1",
        "device": AMULET,
        "data": data if data is not None else {},
    }
    fields.update(kw)
    return Record(**fields)


# --- mapping --------------------------------------------------------------------------------


def test_sighting_from_the_wire_example_maps_to_one_exact_point() -> None:
    record = rec(data={"event": "enter", "rssi": -71, "rssi_avg": -73.5, "count": 12})
    assert record_to_point(GW, record, received_ms=TS + 250) == Point(
        measurement="sighting",
        tags=(
            ("device", AMULET),
            ("event", "enter"),
            ("gw", GW),
            ("profile", "amulet-ibeacon"),
        ),
        fields=(
            ("count", 12),
            ("lag_ms", 250),
            ("rssi", -71.0),
            ("rssi_avg", -73.5),
            ("seq", 4711),
        ),
        time_ns=TS * 1_000_000 + 4711,
    )


@pytest.mark.parametrize(
    ("kind", "data", "measurement"),
    [
        ("sighting", {"event": "exit"}, "sighting"),
        ("tap", {"event": "tap", "technology": "type2"}, "tap"),
        ("alarm", {"event": "alarm", "protocol": "FA20RF"}, "alarm"),
        ("event", {"event": "low_battery"}, "event"),
        ("event", {"event": "telemetry", "battery_mv": 2950, "temp_c": 21.5}, "telemetry"),
        ("health", {"source": "ble0", "frames": 10}, "gateway_health"),
    ],
)
def test_measurement_follows_kind_and_event(
    kind: str, data: dict[str, Any], measurement: str
) -> None:
    assert record_to_point(GW, rec(kind, data)).measurement == measurement


def test_every_stream_has_a_measurement() -> None:
    assert set(MEASUREMENTS) == set(STREAMS)


def test_only_allowlisted_short_strings_become_tags() -> None:
    point = record_to_point(
        GW,
        rec(
            "alarm",
            {"event": "alarm", "protocol": "FA20RF", "id": "97e3b2", "channel": "1"},
            profile="smoke-rflink@3",
            device="rflink:fa20rf:97e3b2",
        ),
    )
    assert dict(point.tags) == {
        "gw": GW,
        "device": "rflink:fa20rf:97e3b2",
        "profile": "smoke-rflink",
        "event": "alarm",
        "protocol": "FA20RF",
    }
    assert dict(point.fields) == {"id": "97e3b2", "channel": "1", "seq": 4711}


def test_an_allowlisted_key_with_a_non_string_value_stays_a_field() -> None:
    point = record_to_point(GW, rec(data={"event": 3}))
    assert "event" not in dict(point.tags)
    assert dict(point.fields)["event"] == 3.0


def test_personal_keys_never_reach_the_point() -> None:
    point = record_to_point(GW, rec(data={"name": "Wang Li", "phone": "138", "rssi": -60}))
    text = to_line_protocol(point)
    assert "Wang" not in text and "138" not in text
    assert dict(point.fields) == {"rssi": -60.0, "seq": 4711}


def test_values_keep_their_kind_and_nested_data_is_flattened() -> None:
    data = {
        "battery_ok": False,
        "note": "hi",
        "count": 3,
        "rssi": -70,
        "pos": {"x": 1.5, "y": {"z": 2}},
        "ids": [1, "a"],
        "missing": None,
        "bad": math.nan,
        "time": 5,
    }
    assert dict(record_to_point(GW, rec(data=data)).fields) == {
        "battery_ok": False,
        "note": "hi",
        "count": 3,
        "rssi": -70.0,
        "pos.x": 1.5,
        "pos.y.z": 2.0,
        "ids": '[1,"a"]',
        "time_": 5.0,
        "seq": 4711,
    }


def test_record_keys_in_data_cannot_shadow_the_tags() -> None:
    point = record_to_point(GW, rec(data={"gw": "evil", "device": "x", "seq": 1}))
    assert dict(point.tags)["gw"] == GW
    assert dict(point.fields) == {"seq": 4711}


def test_same_millisecond_readings_get_distinct_times_and_a_rewrite_the_same() -> None:
    a, b = rec(seq=10), rec(seq=11)
    assert record_to_point(GW, a).time_ns != record_to_point(GW, b).time_ns
    assert record_to_point(GW, a) == record_to_point(GW, rec(seq=10))
    assert point_time_ns(TS, 1_000_007) == TS * 1_000_000 + 7
    assert point_time_ns(TS, 999_999) // 1_000_000 == TS  # never spills into the next ms


# --- line protocol ----------------------------------------------------------------------------


def test_line_protocol_of_the_wire_example() -> None:
    record = rec(data={"event": "enter", "rssi": -71, "rssi_avg": -73.5, "count": 12})
    assert records_to_lines(GW, [record]) == [
        f"sighting,device={AMULET},event=enter,gw={GW},profile=amulet-ibeacon "
        f"count=12i,rssi=-71.0,rssi_avg=-73.5,seq=4711i {TS * 1_000_000 + 4711}"
    ]


def test_line_protocol_escapes_names_tags_and_strings() -> None:
    point = Point(
        measurement="my m,x",
        tags=(("dev ice", "a,b=c d"), ("k", "back\\slash\nnl")),
        fields=(("f=1", 'say "hi"\\\n'), ("ok", True), ("n", -3), ("x", 1e20)),
        time_ns=1,
    )
    assert to_line_protocol(point) == (
        r"my\ m\,x,dev\ ice=a\,b\=c\ d,k=back/slash\ nl "
        r'f\=1="say \"hi\"\\\n",ok=true,n=-3i,x=1e+20 1'
    )


def test_a_point_without_fields_is_refused() -> None:
    with pytest.raises(ValueError):
        to_line_protocol(Point("m", (), (), 1))


# --- property: what a line-protocol reader gets back is what the mapping promised ----------


def _parse_line(line: str) -> tuple[str, dict[str, str], dict[str, Any], int]:
    """A reference reader of InfluxDB line protocol (escapes as in the v2 spec)."""
    i = 0

    def until(stops: str) -> str:
        nonlocal i
        out = []
        while i < len(line) and line[i] not in stops:
            if line[i] == "\\" and i + 1 < len(line) and line[i + 1] in ",= ":
                out.append(line[i + 1])
                i += 2
            else:
                out.append(line[i])
                i += 1
        return "".join(out)

    measurement = until(", ")
    tags: dict[str, str] = {}
    while line[i] == ",":
        i += 1
        key = until("=")
        i += 1
        tags[key] = until(", ")
    i += 1
    fields: dict[str, Any] = {}
    while True:
        key = until("=")
        i += 1
        value: Any
        if line[i] == '"':
            i += 1
            chars = []
            while line[i] != '"':
                if line[i] == "\\" and line[i + 1] in '"\\':
                    chars.append(line[i + 1])
                    i += 2
                else:
                    chars.append(line[i])
                    i += 1
            i += 1
            value = "".join(chars)
        else:
            raw = until(", ")
            if raw in ("true", "false"):
                value = raw == "true"
            elif raw.endswith("i"):
                value = int(raw[:-1])
            else:
                value = float(raw)
        fields[key] = value
        if line[i] != ",":
            break
        i += 1
    assert line[i] == " "
    return measurement, tags, fields, int(line[i + 1 :])


def _as_name(text: str) -> str:
    return text.replace("\\", "/").replace("\n", " ").replace("\r", " ").replace("\t", " ")


def _as_stored_string(text: str) -> str:
    return text.replace("\n", "\\n").replace("\r", "\\r")


scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
keys = st.text(min_size=1, max_size=12).filter(
    lambda k: (
        k not in ("gw", "device", "profile", "seq", "lag_ms", "time", "_time")
        and k not in ("_field", "_measurement", "event", "name", "phone", "person")
        and k not in ("wearer", "owner", "email", "address_line", "contact", "count")
    )
)


@settings(max_examples=300, print_blob=True, deadline=None)
@given(
    device=st.text(min_size=1, max_size=40),
    data=st.dictionaries(keys, scalars, max_size=6),
    seq=st.integers(0, 2**63 - 1),
)
def test_line_protocol_reads_back_as_mapped(device: str, data: dict[str, Any], seq: int) -> None:
    record = rec(data=data, device=device, seq=seq)
    line = to_line_protocol(record_to_point(GW, record))
    assert "\n" not in line
    measurement, tags, fields, time_ns = _parse_line(line)
    assert measurement == "sighting"
    assert time_ns == TS * 1_000_000 + seq % 1_000_000
    expected_tags = {"gw": GW, "profile": "amulet-ibeacon"}
    if _as_name(device):
        expected_tags["device"] = _as_name(device)
    assert tags == expected_tags
    expected_fields: dict[str, Any] = {"seq": seq}
    for key, value in data.items():
        if isinstance(value, str):
            value = _as_stored_string(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        expected_fields[_as_name(key)] = value
    assert fields == expected_fields
