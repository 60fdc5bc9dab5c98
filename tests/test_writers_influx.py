"""InfluxDB writers against the real servers: InfluxDB 1.x (v1 API) and VictoriaMetrics (v2 API).

What is checked is what the collector relies on: points are there after ``write`` returns, a
rewrite of a batch changes nothing, an unreachable store raises ``StorageUnavailable`` (retry)
and a refused value ``StorageError`` (dead-letter).
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from services import InfluxDB1, VictoriaMetrics

from collector.points import record_to_point
from collector.writers import WRITERS, make_writer
from collector.writers.base import Writer
from collector.writers.influx_v1 import InfluxV1Writer
from collector.writers.influx_v2 import InfluxV2Writer
from shouhu.exceptions import ConfigError, StorageError, StorageUnavailable
from shouhu.model import Record

TS = 1_763_800_000_000
PROFILE = "amulet-ibeacon@1"
DEVICES = (
    "ibeacon:fda50693a4e24fb1afcfc6eb07647825:1:2",
    "ibeacon:fda50693a4e24fb1afcfc6eb07647825:1:3",
)


def sightings(per_device: int, *, first_seq: int = 1, same_ms: bool = True) -> list[Record]:
    """``per_device`` sightings of each device; with ``same_ms`` pairs share a millisecond."""
    records = []
    seq = first_seq
    for n in range(per_device):
        for device in DEVICES:
            ts = TS + (n // 2 if same_ms else n) * 1000
            data = {"event": "update", "rssi": -60 - n, "rssi_avg": -61.5, "count": n + 1}
            records.append(Record(seq, ts, "sighting", PROFILE, device, data))
            seq += 1
    return records


def counts_by_device(writer: InfluxV1Writer, measurement: str = "sighting") -> dict[str, int]:
    results = writer.query(f'SELECT count(seq) FROM "{measurement}" GROUP BY device')
    return {
        series["tags"]["device"]: series["values"][0][1] for series in results[0].get("series", [])
    }


@pytest.fixture
def v1(influxdb1: InfluxDB1, unique_db: str) -> Iterator[InfluxV1Writer]:
    writer = InfluxV1Writer({"url": influxdb1.url, "database": unique_db, "create_database": True})
    yield writer
    writer.close()


# --- InfluxDB 1.x through the v1 API -------------------------------------------------------------


@pytest.mark.services
def test_v1_points_are_there_when_write_returns_and_a_rewrite_changes_nothing(
    v1: InfluxV1Writer,
) -> None:
    batch = sightings(5)  # readings of one device two by two in the same millisecond
    v1.write("gw-east-017", batch)
    assert counts_by_device(v1) == {DEVICES[0]: 5, DEVICES[1]: 5}

    v1.write("gw-east-017", batch)
    v1.write("gw-east-017", list(reversed(batch[:4])))
    assert counts_by_device(v1) == {DEVICES[0]: 5, DEVICES[1]: 5}

    v1.write("gw-east-017", sightings(1, first_seq=100))  # new records do add up
    assert counts_by_device(v1) == {DEVICES[0]: 6, DEVICES[1]: 6}


@pytest.mark.services
def test_v1_stored_values_are_the_mapped_ones(v1: InfluxV1Writer) -> None:
    record = Record(
        7,
        TS,
        "alarm",
        "smoke-rflink@2",
        'rflink:odd id, "x"=1',
        {"event": "alarm", "protocol": "FA20RF", "battery_ok": False, "note": 'a "b"\\ c,d=e'},
    )
    v1.write("gw-1", [record])
    (series,) = v1.query('SELECT * FROM "alarm"')[0]["series"]
    stored = dict(zip(series["columns"], series["values"][0], strict=True))
    point = record_to_point("gw-1", record)
    assert stored == {"time": point.time_ns, **dict(point.tags), **dict(point.fields)}


@pytest.mark.services
def test_v1_gzip_write(influxdb1: InfluxDB1, unique_db: str) -> None:
    writer = InfluxV1Writer(
        {"url": influxdb1.url, "database": unique_db, "create_database": True, "gzip": True}
    )
    try:
        writer.write("gw-1", sightings(3, same_ms=False))
        assert counts_by_device(writer) == {DEVICES[0]: 3, DEVICES[1]: 3}
    finally:
        writer.close()


@pytest.mark.services
def test_v1_a_value_of_the_wrong_type_is_refused_for_good(v1: InfluxV1Writer) -> None:
    v1.write("gw-1", [Record(1, TS, "event", PROFILE, DEVICES[0], {"event": "x", "v": "text"})])
    with pytest.raises(StorageError) as info:
        v1.write("gw-1", [Record(2, TS, "event", PROFILE, DEVICES[0], {"event": "x", "v": 1.5})])
    assert not isinstance(info.value, StorageUnavailable)
    assert "400" in str(info.value)


@pytest.mark.services
def test_v1_missing_database_is_retried_not_dead_lettered(influxdb1: InfluxDB1) -> None:
    writer = InfluxV1Writer({"url": influxdb1.url, "database": "never_created"})
    try:
        with pytest.raises(StorageUnavailable, match="404"):
            writer.write("gw-1", sightings(1))
    finally:
        writer.close()


@pytest.mark.services
def test_v1_outage_raises_unavailable_and_writes_resume_after_restart(tmp_path: Path) -> None:
    with InfluxDB1(tmp_path / "influx") as server:
        writer = make_writer(
            "influx_v1",
            {"url": server.url, "database": "outage", "create_database": True, "timeout_s": 2},
        )
        try:
            assert writer.ping()
            writer.write("gw-1", sightings(2, same_ms=False))

            server.kill()
            assert not writer.ping()
            with pytest.raises(StorageUnavailable):
                writer.write("gw-1", sightings(1, first_seq=50))

            server.start()
            assert writer.ping()
            writer.write("gw-1", sightings(1, first_seq=50))
            assert isinstance(writer, InfluxV1Writer)
            assert counts_by_device(writer) == {DEVICES[0]: 3, DEVICES[1]: 3}
        finally:
            writer.close()


# --- VictoriaMetrics through the v2 API (influxdb-client) ---------------------------------------


def vm_export(vm: VictoriaMetrics, selector: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"match[]": selector})
    with urllib.request.urlopen(f"{vm.url}/api/v1/export?{query}", timeout=10) as resp:
        return [json.loads(line) for line in resp.read().splitlines() if line.strip()]


def vm_wait_for(vm: VictoriaMetrics, selector: str, samples: int) -> list[dict[str, Any]]:
    """VictoriaMetrics buffers for up to a second: flush, then poll briefly (bounded)."""
    deadline = time.monotonic() + 5
    while True:
        vm.force_flush()
        series = vm_export(vm, selector)
        if sum(len(s["values"]) for s in series) >= samples or time.monotonic() > deadline:
            return series
        time.sleep(0.1)


@pytest.fixture
def v2_vm(victoria: VictoriaMetrics) -> Iterator[InfluxV2Writer]:
    writer = InfluxV2Writer({"url": victoria.url, "bucket": "shouhu"})
    yield writer
    writer.close()


@pytest.mark.services
def test_v2_to_victoria_metrics(v2_vm: InfluxV2Writer, victoria: VictoriaMetrics) -> None:
    gw = f"gw-{uuid.uuid4().hex[:8]}"
    batch = sightings(4, same_ms=False)  # VictoriaMetrics keeps milliseconds only
    v2_vm.write(gw, batch)
    v2_vm.write(gw, batch)  # rewrite: deduplicated (-dedup.minScrapeInterval=1ms)

    series = vm_wait_for(victoria, f'sighting_seq{{gw="{gw}"}}', samples=8)
    by_device = {s["metric"]["device"]: s for s in series}
    assert set(by_device) == set(DEVICES)
    for device, s in by_device.items():
        assert s["metric"] == {
            "__name__": "sighting_seq",
            "gw": gw,
            "device": device,
            "profile": "amulet-ibeacon",
            "event": "update",
        }
        expected = sorted((r.ts, r.seq) for r in batch if r.device == device)
        assert sorted(zip(s["timestamps"], s["values"], strict=True)) == expected
    assert v2_vm.ping()


@pytest.mark.services
def test_v2_outage_raises_unavailable_and_writes_resume_after_restart(tmp_path: Path) -> None:
    with VictoriaMetrics(tmp_path / "vm") as vm:
        writer = make_writer("influx_v2", {"url": vm.url, "bucket": "shouhu", "timeout_s": 2})
        try:
            vm.stop()
            assert not writer.ping()
            with pytest.raises(StorageUnavailable):
                writer.write("gw-9", sightings(1))
            vm.start()
            writer.write("gw-9", sightings(1))
            assert len(vm_wait_for(vm, 'sighting_seq{gw="gw-9"}', samples=2)) == 2
        finally:
            writer.close()


# --- options ---------------------------------------------------------------------------------------


def test_writers_table_names_the_known_writers() -> None:
    assert {"influx_v1", "influx_v2", "sqlite"} <= set(WRITERS)
    assert WRITERS["sqlite"] == "collector.writers.sqlite:SqliteWriter"


@pytest.mark.parametrize(
    ("kind", "options", "field"),
    [
        ("influx_v1", {"database": "x"}, "influx_v1.url"),
        ("influx_v1", {"url": "http://127.0.0.1:1", "database": 3}, "influx_v1.database"),
        ("influx_v2", {"url": "http://127.0.0.1:1"}, "influx_v2.bucket"),
        (
            "influx_v2",
            {"url": "http://127.0.0.1:1", "bucket": "b", "gzip": "yes"},
            "influx_v2.gzip",
        ),
        ("nope", {}, "writer"),
    ],
)
def test_bad_options_are_config_errors(kind: str, options: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_writer(kind, options)
    assert info.value.field == field


def test_writers_satisfy_the_protocol_and_an_empty_batch_needs_no_server() -> None:
    for kind, options in (
        ("influx_v1", {"url": "http://127.0.0.1:1", "database": "x"}),
        ("influx_v2", {"url": "http://127.0.0.1:1", "bucket": "x"}),
    ):
        writer = make_writer(kind, options)
        try:
            assert isinstance(writer, Writer)
            writer.write("gw-1", [])
            assert writer.ping() is False
            with pytest.raises(StorageUnavailable):
                writer.write("gw-1", sightings(1))
        finally:
            writer.close()
