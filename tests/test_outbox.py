"""The outbox on a real SQLite file: numbering, durability across reopen, eviction, threads."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from edge_agent.outbox import Outbox
from shouhu.exceptions import StorageError
from shouhu.model import Reading

T0 = 1_763_800_000_000


def sighting(i: int, event: str = "update") -> Reading:
    return Reading(T0 + i, "sighting", "amulet-ibeacon@1", f"ibeacon:x:1:{i}", {"event": event})


def alarm(i: int) -> Reading:
    return Reading(T0 + i, "alarm", "smoke-rflink@1", "rf433:hh-1", {"event": "alarm"})


def telemetry(i: int) -> Reading:
    data: dict[str, Any] = {"event": "telemetry", "battery_mv": 2900}
    return Reading(T0 + i, "event", "aed-eddystone@1", "eddystone:ns:1", data)


def test_append_numbers_records_and_returns_them(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    records = box.append([sighting(1), alarm(2)])
    assert [(r.seq, r.kind, r.ts) for r in records] == [
        (1, "sighting", T0 + 1),
        (2, "alarm", T0 + 2),
    ]
    assert box.pending(10) == records
    assert box.depth() == 2 and box.oldest_ts() == T0 + 1
    assert box.append([]) == []


def test_seq_survives_reopen_and_is_never_reused_after_delete(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path)
    first = box.append([sighting(i) for i in range(5)])
    assert box.delete([r.seq for r in first]) == 5
    box.close()
    box = Outbox(path)
    assert box.depth() == 0
    (again,) = box.append([alarm(9)])
    assert again.seq == 6
    box.close()
    # and a record accepted before a "crash" (no close) is there after reopening
    box = Outbox(path)
    box.append([alarm(10)])
    reopened = Outbox(path)
    assert [r.seq for r in reopened.pending(10)] == [6, 7]
    assert reopened.stats().accepted == 7


def test_durability_settings(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    Outbox(path).append([alarm(1)])
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    box = Outbox(path)
    assert box._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_pending_filters_streams_and_excludes_in_flight(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.append([sighting(1), alarm(2), sighting(3), alarm(4), telemetry(5)])
    assert [r.seq for r in box.pending(10, streams={"alarm"})] == [2, 4]
    assert [r.seq for r in box.pending(10, exclude_seqs={1, 2})] == [3, 4, 5]
    assert [r.seq for r in box.pending(2, streams=("sighting", "event"))] == [1, 3]
    assert box.pending(0) == [] and box.pending(5, streams=()) == []


def test_delete_only_what_is_asked_and_count_what_was_there(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.append([sighting(i) for i in range(1200)])
    assert box.delete(range(1, 1101)) == 1100  # more than one IN (...) chunk
    assert box.delete([1, 2, 1150]) == 1
    assert box.depth() == 99 and box.pending(1)[0].seq == 1101


def test_full_outbox_evicts_oldest_routine_sightings_first(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_records=5)
    box.append([alarm(1), sighting(2), telemetry(3), sighting(4, "exit"), sighting(5)])
    box.append([sighting(6)])  # over by one: the oldest routine sighting (seq 2) goes
    assert [r.seq for r in box.pending(10)] == [1, 3, 4, 5, 6]
    box.append([alarm(7), alarm(8)])  # sightings 5 and 6 go
    assert [r.seq for r in box.pending(10)] == [1, 3, 4, 7, 8]
    box.append([alarm(9)])  # no sighting left: telemetry next
    assert [r.seq for r in box.pending(10)] == [1, 4, 7, 8, 9]
    stats = box.stats()
    assert stats.evicted == 4 and stats.overflow == 0 and stats.depth == 5


def test_alarms_taps_and_exits_are_never_evicted(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_records=3)
    tap = Reading(T0, "tap", "patrol-tag@1", "ntag:04", {"event": "tap"})
    box.append([alarm(1), sighting(2, "exit"), tap])
    box.append([alarm(4), sighting(5, "exit")])  # nothing evictable: kept over the bound
    assert [r.kind for r in box.pending(10)] == ["alarm", "sighting", "tap", "alarm", "sighting"]
    box.append([sighting(6)])  # a new routine sighting is itself the oldest routine one
    assert box.depth() == 5
    stats = box.stats()
    assert stats.overflow == 3 and stats.evicted == 1


def test_eviction_counter_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path, max_records=2)
    box.append([sighting(i) for i in range(5)])
    box.close()
    assert Outbox(path, max_records=2).stats().evicted == 3


def test_concurrent_appends_get_unique_gapless_seqs(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    seqs: list[int] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        for i in range(25):
            got = box.append([sighting(n * 100 + i), alarm(i)])
            with lock:
                seqs.extend(r.seq for r in got)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    deleter = threading.Thread(target=lambda: [box.delete(range(1, 50)) for _ in range(10)])
    for t in [*threads, deleter]:
        t.start()
    for t in [*threads, deleter]:
        t.join()
    assert sorted(seqs) == list(range(1, 201))
    assert box.stats().accepted == 200
    assert box.depth() == len(box.pending(1000))


def test_dead_letters_keep_raw_bytes_and_reason(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.dead_letter("ble0", "iBeacon truncated: 5 of 23 bytes", b"\x02\x01\x06", {"rssi": -70}, T0)
    (letter,) = box.dead_letters()
    assert (letter.source, letter.raw_hex, letter.meta) == ("ble0", "020106", {"rssi": -70})
    assert "truncated" in letter.reason
    assert box.stats().dead_letters == 1 and box.depth() == 0


def test_data_that_is_not_json_is_refused_whole(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    bad = Reading(T0, "event", "x@1", "d", {"value": float("nan")})
    with pytest.raises(StorageError):
        box.append([alarm(1), bad])
    assert box.depth() == 0
    assert box.append([alarm(2)])[0].seq == 1  # the failed call used no seq


def test_unopenable_path_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StorageError, match="cannot open"):
        Outbox(tmp_path / "dir.db")
