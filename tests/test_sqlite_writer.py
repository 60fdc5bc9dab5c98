"""SqliteWriter: durable, idempotent on (gw, seq), and honest about what it refuses."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from collector.writers.sqlite import SqliteWriter, percentile
from shouhu.exceptions import StorageError, StorageUnavailable
from shouhu.model import Record

TS = 1_763_800_000_000


def rec(seq: int, ts: int = TS, **data: object) -> Record:
    return Record(
        seq, ts + seq, "sighting", "amulet-ibeacon@1", "ibeacon:x:1:2", data or {"rssi": -70}
    )


def test_write_and_read_back(tmp_path: Path) -> None:
    w = SqliteWriter({"path": str(tmp_path / "r.db")})
    w.write("gw-1", [rec(1), rec(2, rssi=-80)])
    assert w.count() == 2
    assert w.records("gw-1") == [rec(1), rec(2, rssi=-80)]
    w.close()


def test_rewrite_is_idempotent(tmp_path: Path) -> None:
    w = SqliteWriter({"path": str(tmp_path / "r.db")})
    w.write("gw-1", [rec(1), rec(2)])
    w.write("gw-1", [rec(2), rec(3)])
    w.write("gw-2", [rec(2)])  # same seq, other gateway: a different record
    assert w.seqs("gw-1") == [1, 2, 3]
    assert w.count_by_gateway() == {"gw-1": 3, "gw-2": 1}
    w.close()


def test_survives_reopen_with_wal_and_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    w = SqliteWriter({"path": str(path)})
    w.write("gw-1", [rec(7)])
    w.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    again = SqliteWriter({"path": str(path)})
    assert again.seqs("gw-1") == [7]
    again.close()


def test_latency_is_stored_minus_radio_time(tmp_path: Path) -> None:
    w = SqliteWriter({"path": str(tmp_path / "r.db")})
    now = int(time.time() * 1000)
    w.write(
        "gw-1",
        [Record(1, now - 1000, "tap", "p@1", "d", {}), Record(2, now - 10, "tap", "p@1", "d", {})],
    )
    lat = w.latency_ms((50, 99))
    assert lat[99] is not None and 1000 <= lat[99] < 1000 + 5000
    assert lat[50] is not None and 10 <= lat[50] <= lat[99]
    w.close()


def test_percentile_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([5], 99) == 5
    assert percentile([], 50) is None


def test_data_that_is_not_json_is_refused_for_good(tmp_path: Path) -> None:
    w = SqliteWriter({"path": str(tmp_path / "r.db")})
    with pytest.raises(StorageError) as info:
        w.write("gw-1", [rec(1, blob=object())])
    assert not isinstance(info.value, StorageUnavailable)
    assert w.count() == 0
    w.close()


def test_unopenable_path_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(StorageUnavailable):
        SqliteWriter({"path": str(tmp_path)})  # a directory


def test_ping(tmp_path: Path) -> None:
    w = SqliteWriter({"path": str(tmp_path / "r.db")})
    assert w.ping() is True
    w.close()
    assert w.ping() is False
