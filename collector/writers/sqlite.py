"""The no-services time-series store: records in one SQLite file.

Used by ``shouhu demo`` and small sites. WAL with ``synchronous=FULL`` so that a returned
``write()`` survives a power cut: the collector acknowledges MQTT messages only after that.
``UNIQUE(gw, seq)`` with ``INSERT OR IGNORE`` makes a rewrite (redelivery after a crash)
harmless.

Derived points (``collector.derived``: alert events, patrol check-ins, gateway state, school
taps) go to a ``points`` table keyed like an InfluxDB point (measurement, tags, time): writing
the same point again merges its fields, as InfluxDB does. Records are kept as the gateway sent
them, without the gateway's place (no ``gateway_lookup``): the registry sits beside this file,
so a query that needs the place joins it there.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from collector.points import Point
from shouhu.exceptions import ConfigError, StorageError, StorageUnavailable
from shouhu.model import Record

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    gw TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    kind TEXT NOT NULL,
    profile TEXT NOT NULL,
    device TEXT NOT NULL,
    data TEXT NOT NULL,
    stored_ms INTEGER NOT NULL,
    UNIQUE (gw, seq)
);
CREATE INDEX IF NOT EXISTS records_ts ON records (ts);
CREATE TABLE IF NOT EXISTS points (
    measurement TEXT NOT NULL,
    tags TEXT NOT NULL,
    fields TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    PRIMARY KEY (measurement, tags, time_ns)
);
"""
# tags and fields as JSON objects with sorted keys, so equal tag sets are equal text
UPSERT_POINT = (
    "INSERT INTO points (measurement, tags, fields, time_ns) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (measurement, tags, time_ns)"
    " DO UPDATE SET fields = json_patch(points.fields, excluded.fields)"
)

# sqlite3 errors that mean "the store cannot take it now" rather than "this data is bad".
_TRANSIENT_WORDS = ("locked", "busy", "disk i/o", "unable to open", "full", "readonly")


def translate_sqlite_error(exc: sqlite3.Error, what: str) -> StorageError:
    """Map a sqlite3 error onto our tree: transient → StorageUnavailable, else StorageError."""
    text = str(exc).lower()
    if isinstance(exc, sqlite3.OperationalError) and any(w in text for w in _TRANSIENT_WORDS):
        return StorageUnavailable(f"{what}: {exc}")
    if isinstance(exc, (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError)):
        return StorageError(f"{what}: {exc}")
    return StorageUnavailable(f"{what}: {exc}")


def percentile(sorted_values: Sequence[int], p: float) -> int | None:
    """Nearest-rank percentile of already sorted values (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), math.ceil(p / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


class SqliteWriter:
    """Writer (see ``collector.writers.base``) storing records in ``options["path"]``."""

    kind = "sqlite"

    def __init__(self, options: Mapping[str, Any]) -> None:
        path = options.get("path")
        if not isinstance(path, str) or not path:
            raise ConfigError("the sqlite writer needs a file path", field="writer.path")
        self.path = path
        self._lock = threading.Lock()  # one connection, used by the ingest worker and readers
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StorageUnavailable(f"cannot open {path}: {exc}") from exc

    def write(self, gw: str, records: Sequence[Record]) -> None:
        """Store records durably; already stored (gw, seq) are ignored."""
        if not records:
            return
        now = int(time.time() * 1000)
        try:
            rows = [
                (gw, r.seq, r.ts, r.kind, r.profile, r.device, json.dumps(dict(r.data)), now)
                for r in records
            ]
        except (TypeError, ValueError) as exc:
            raise StorageError(f"record data is not JSON: {exc}") from exc
        self._write_rows(
            "INSERT OR IGNORE INTO records (gw, seq, ts, kind, profile, device, data, stored_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    def write_points(self, points: Sequence[Point]) -> None:
        """Store derived points durably; the same point again merges its fields (InfluxDB-like)."""
        if not points:
            return
        try:
            rows = [
                (
                    p.measurement,
                    json.dumps(dict(p.tags), sort_keys=True),
                    json.dumps(dict(p.fields), sort_keys=True, allow_nan=False),
                    p.time_ns,
                )
                for p in points
            ]
        except (TypeError, ValueError) as exc:
            raise StorageError(f"point is not storable: {exc}") from exc
        self._write_rows(UPSERT_POINT, rows)

    def _write_rows(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """One durable transaction of ``executemany``; rolled back whole on any error."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(sql, rows)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise translate_sqlite_error(exc, f"write to {self.path}") from exc

    def ping(self) -> bool:
        with self._lock:
            try:
                self._db.execute("SELECT 1").fetchone()
            except sqlite3.Error:
                return False
        return True

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- queries for the demo summary and tests -----------------------------------------

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise translate_sqlite_error(exc, f"query {self.path}") from exc

    def count(self, gw: str | None = None) -> int:
        """Stored records (distinct (gw, seq) by construction)."""
        if gw is None:
            return int(self._query("SELECT COUNT(*) FROM records")[0][0])
        return int(self._query("SELECT COUNT(*) FROM records WHERE gw = ?", (gw,))[0][0])

    def count_by_gateway(self) -> dict[str, int]:
        return {gw: n for gw, n in self._query("SELECT gw, COUNT(*) FROM records GROUP BY gw")}

    def seqs(self, gw: str) -> list[int]:
        return [
            s for (s,) in self._query("SELECT seq FROM records WHERE gw = ? ORDER BY seq", (gw,))
        ]

    def records(self, gw: str) -> list[Record]:
        rows = self._query(
            "SELECT seq, ts, kind, profile, device, data FROM records WHERE gw = ? ORDER BY seq",
            (gw,),
        )
        return [Record(s, ts, k, p, d, json.loads(data)) for s, ts, k, p, d, data in rows]

    def stored_points(self, measurement: str) -> list[Point]:
        """Stored derived points of one measurement, oldest first."""
        rows = self._query(
            "SELECT tags, fields, time_ns FROM points WHERE measurement = ? ORDER BY time_ns",
            (measurement,),
        )
        return [
            Point(
                measurement,
                tuple(sorted(json.loads(tags).items())),
                tuple(sorted(json.loads(fields).items())),
                t,
            )
            for tags, fields, t in rows
        ]

    def latency_ms(
        self, percentiles: Sequence[float] = (50, 99), *, skip_exits: bool = True
    ) -> dict[float, int | None]:
        """Radio time → stored time, per requested percentile (ms; None when nothing stored).

        An ``exit`` sighting carries the time the beacon was *last heard* (the contract's ``ts``),
        so it is stored an away-timeout later by design; ``skip_exits`` leaves those out.
        """
        sql = "SELECT stored_ms - ts FROM records"
        if skip_exits:
            sql += " WHERE NOT (kind = 'sighting' AND json_extract(data, '$.event') = 'exit')"
        values = [v for (v,) in self._query(sql + " ORDER BY 1")]
        return {p: percentile(values, p) for p in percentiles}
