"""A wearer's trail: pure table/GeoJSON, the SQLite store, InfluxDB 1.x, and the CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from services import InfluxDB1

from collector.domain import Gateway, Wearer
from collector.registry.store import RegistryStore
from collector.trail import (
    Sighting,
    footprints,
    influx_rows,
    parse_since,
    sightings_from_influx,
    sightings_from_sqlite,
    sightings_query,
    trail_geojson,
    trail_table,
)
from collector.writers.influx_v1 import InfluxV1Writer
from collector.writers.sqlite import SqliteWriter
from shouhu.cli import main
from shouhu.exceptions import ConfigError
from shouhu.model import Record

AMULET = "ibeacon:fda50693a4e24fb1afcfc6eb07647825:1:2"
OTHER = "ibeacon:fda50693a4e24fb1afcfc6eb07647825:1:3"
T0 = 1_763_800_000_000  # 2025-11-22T08:26:40Z
GATEWAYS = {
    "gw-home": Gateway("gw-home", "lane-3", "home-1", 31.2300, 121.4700),
    "gw-gate": Gateway("gw-gate", "lane-3-gate", "street", 31.2320, 121.4720),
    "gw-market": Gateway("gw-market", "market", "street", 31.2330, 121.4730),
}


def walk(base: int) -> list[Record]:
    """Home -> gate -> market, plus another wearer's amulet heard at the gate."""
    return [
        Record(
            1, base, "sighting", "amulet-ibeacon@1", AMULET, {"event": "exit", "rssi_avg": -80.0}
        ),
        Record(
            2,
            base + 60_000,
            "sighting",
            "amulet-ibeacon@1",
            AMULET,
            {"event": "enter", "rssi_avg": -71.5},
        ),
        Record(
            3,
            base + 61_000,
            "sighting",
            "amulet-ibeacon@1",
            OTHER,
            {"event": "enter", "rssi_avg": -60.0},
        ),
        Record(
            4,
            base + 300_000,
            "sighting",
            "amulet-ibeacon@1",
            AMULET,
            {"event": "enter", "rssi_avg": -68.25},
        ),
    ]


GWS = ["gw-home", "gw-gate", "gw-gate", "gw-market"]


def store_walk(path: str, base: int) -> None:
    writer = SqliteWriter({"path": path})
    try:
        for gw, r in zip(GWS, walk(base), strict=True):
            writer.write(gw, [r])
        writer.write(
            "gw-unknown",
            [Record(9, base + 400_000, "sighting", "p@1", AMULET, {"event": "update"})],
        )
    finally:
        writer.close()


def test_parse_since() -> None:
    now = T0
    assert parse_since("2h", now) == now - 7_200_000
    assert parse_since("90m", now) == now - 5_400_000
    assert parse_since("1.5d", now) == now - 129_600_000
    assert parse_since("2025-11-22T08:26:40", now) == T0
    assert parse_since("2025-11-22T16:26:40+08:00", now) == T0
    with pytest.raises(ConfigError, match="not a duration"):
        parse_since("yesterday", now)


def test_table_and_geojson_from_rows() -> None:
    rows = [
        Sighting(T0 + 300_000, "gw-market", "enter", -68.25),
        Sighting(T0, "gw-home", "exit", -80.0),
        Sighting(T0 + 60_000, "gw-gate", "enter", None),
        Sighting(T0 + 90_000, "gw-nowhere", "update", -70.0),
    ]
    steps = footprints(rows, GATEWAYS)
    assert [s.gw for s in steps] == ["gw-home", "gw-gate", "gw-nowhere", "gw-market"]
    table = trail_table(steps, "Asia/Shanghai").splitlines()
    assert table[0].split() == ["time", "gateway", "site", "event", "rssi_avg"]
    assert table[1].split() == ["2025-11-22T16:26:40+08:00", "gw-home", "lane-3", "exit", "-80.0"]
    assert table[2].split() == ["2025-11-22T16:27:40+08:00", "gw-gate", "lane-3-gate", "enter", "-"]
    assert table[3].split()[1:3] == ["gw-nowhere", "?"]

    geo = trail_geojson(steps, "w-1")
    assert geo["type"] == "FeatureCollection"
    points = [f for f in geo["features"] if f["geometry"]["type"] == "Point"]
    assert [p["properties"]["gateway"] for p in points] == ["gw-home", "gw-gate", "gw-market"]
    assert points[0]["geometry"]["coordinates"] == [121.47, 31.23]  # lon, lat
    assert points[0]["properties"]["time"] == "2025-11-22T08:26:40+00:00"
    (line,) = [f for f in geo["features"] if f["geometry"]["type"] == "LineString"]
    assert line["geometry"]["coordinates"] == [
        [121.47, 31.23],
        [121.472, 31.232],
        [121.473, 31.233],
    ]
    assert line["properties"] == {"wearer": "w-1", "points": 3}
    assert trail_geojson(steps[:1], "w-1")["features"][-1]["geometry"]["type"] == "Point"


def test_sqlite_store_reads_only_the_wearers_device_since(tmp_path: Path) -> None:
    path = str(tmp_path / "records.sqlite")
    store_walk(path, T0)
    rows = sightings_from_sqlite(path, AMULET, T0 + 1)
    assert rows == [
        Sighting(T0 + 60_000, "gw-gate", "enter", -71.5),
        Sighting(T0 + 300_000, "gw-market", "enter", -68.25),
        Sighting(T0 + 400_000, "gw-unknown", "update", None),
    ]
    assert sightings_from_sqlite(path, AMULET, T0, T0 + 60_000) == [
        Sighting(T0, "gw-home", "exit", -80.0)
    ]


def test_influx_answer_parsing_and_query_quoting() -> None:
    body = {
        "results": [
            {
                "statement_id": 0,
                "series": [
                    {
                        "name": "sighting",
                        "columns": ["time", "rssi_avg", "event", "gw"],
                        "values": [
                            [T0, -80.0, "exit", "gw-home"],
                            [T0 + 60_000, None, "enter", "gw-gate"],
                        ],
                    }
                ],
            }
        ]
    }
    assert influx_rows(body) == [
        Sighting(T0, "gw-home", "exit", -80.0),
        Sighting(T0 + 60_000, "gw-gate", "enter", None),
    ]
    assert influx_rows({"results": [{"statement_id": 0}]}) == []
    q = sightings_query("it's", T0)
    assert "\"device\" = 'it\\'s'" in q and f"time >= {T0}ms" in q


def test_influxdb1_round_trip(influxdb1: InfluxDB1, unique_db: str) -> None:
    url = influxdb1.url
    writer = InfluxV1Writer({"url": url, "database": unique_db, "create_database": True})
    try:
        for gw, r in zip(GWS, walk(T0), strict=True):
            writer.write(gw, [r])
    finally:
        writer.close()
    rows = sightings_from_influx(url, unique_db, AMULET, T0)
    assert rows == [
        Sighting(T0, "gw-home", "exit", -80.0),
        Sighting(T0 + 60_000, "gw-gate", "enter", -71.5),
        Sighting(T0 + 300_000, "gw-market", "enter", -68.25),
    ]


def test_cli_trail_table_and_geojson(tmp_path: Path) -> None:
    registry = str(tmp_path / "registry.sqlite")
    records = str(tmp_path / "records.sqlite")
    with RegistryStore(registry) as reg:
        reg.add_all([*GATEWAYS.values(), Wearer("w-1", "Li Wei", AMULET, frozenset({"gw-home"}))])
    base = int(time.time() * 1000) - 3_600_000  # an hour ago
    store_walk(records, base)
    runner = CliRunner()
    result = runner.invoke(
        main, ["wearer", "trail", "w-1", "--since", "2h", "--db", registry, "--store", records]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[1] for line in lines[1:]] == [
        "gw-home",
        "gw-gate",
        "gw-market",
        "gw-unknown",
    ]
    assert "Li Wei" not in result.output

    result = runner.invoke(
        main,
        [
            "wearer",
            "trail",
            "w-1",
            "--since",
            "2h",
            "--geojson",
            "--db",
            registry,
            "--store",
            records,
        ],
    )
    geo = json.loads(result.output)
    assert [f["geometry"]["type"] for f in geo["features"]] == [
        "Point",
        "Point",
        "Point",
        "LineString",
    ]

    result = runner.invoke(
        main, ["wearer", "trail", "w-1", "--since", "10m", "--db", registry, "--store", records]
    )
    assert result.exit_code == 0 and "no sightings of wearer w-1" in result.output
    result = runner.invoke(main, ["wearer", "trail", "w-9", "--db", registry, "--store", records])
    assert result.exit_code == 1 and "no wearer 'w-9'" in result.output
    result = runner.invoke(main, ["wearer", "trail", "w-1", "--db", registry])
    assert result.exit_code == 2 and "--store" in result.output
