"""The outbox: every accepted reading is on disk, numbered, before anything is published.

SQLite in WAL mode with ``synchronous=FULL``: once ``append`` returns, a power cut cannot lose
the readings it accepted. ``append`` numbers them with the gateway's monotonic ``seq`` in the
same transaction (the counter lives in ``meta`` and survives restarts; a seq is never reused,
even after its record was deleted). The publisher deletes records only after the broker's
PUBACK, so a crash anywhere means "published again", never "lost"; the collector drops the
duplicates by ``(gw, seq)``.

The outbox is bounded (``max_records``). When full, it evicts the oldest *routine* records:

    class | records                                              | evicted
    ------+------------------------------------------------------+------------------
      0   | sightings other than ``exit`` (enter/update/...)     | first, oldest first
      1   | telemetry events, gateway health                     | when no class 0 left
      2   | alarms, taps, exits, every other event               | never

If only class 2 remains, the outbox keeps it all (exceeds the bound) and counts ``overflow``.

It also keeps the dead letters of the agent: frames a decoder refused, with raw hex and reason.
Thread-safe: one connection guarded by a lock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from shouhu.exceptions import StorageError
from shouhu.model import Reading, Record, RecordDict

EVICT_ROUTINE: Final = 0
EVICT_TELEMETRY: Final = 1
NEVER_EVICT: Final = 2
MAX_DEAD_LETTERS: Final = 10_000
_CHUNK: Final = 500  # parameters per IN (...) clause

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    kind TEXT NOT NULL,
    evict_class INTEGER NOT NULL,
    body TEXT NOT NULL            -- json of Record.to_dict()
);
CREATE INDEX IF NOT EXISTS records_evict ON records (evict_class, seq);
CREATE INDEX IF NOT EXISTS records_kind ON records (kind, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    source TEXT NOT NULL,
    reason TEXT NOT NULL,
    raw_hex TEXT NOT NULL,
    meta TEXT NOT NULL
);
"""


def evict_class(kind: str, data: Mapping[str, Any]) -> int:
    """Which eviction class a record belongs to (see the table in the module doc)."""
    if kind == "sighting":
        return NEVER_EVICT if data.get("event") == "exit" else EVICT_ROUTINE
    if kind == "health" or (kind == "event" and data.get("event") == "telemetry"):
        return EVICT_TELEMETRY
    return NEVER_EVICT


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth: int  # records waiting for a PUBACK
    accepted: int  # records ever accepted (= last seq assigned)
    evicted: int  # routine records dropped because the outbox was full
    overflow: int  # records kept beyond max_records because none could be evicted
    dead_letters: int  # frames parked in the dead-letter table (kept: newest MAX_DEAD_LETTERS)
    oldest_ts: int | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    ts: int
    source: str
    reason: str
    raw_hex: str
    meta: Mapping[str, Any]


class Outbox:
    """A durable, bounded, numbered queue of records (see the module doc)."""

    def __init__(self, path: str | Path, max_records: int = 200_000) -> None:
        if max_records < 1:
            raise ValueError("max_records must be >= 1")
        self.path = str(path)
        self.max_records = max_records
        self._lock = threading.Lock()
        self._closed: OutboxStats | None = None
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            for key in ("next_seq", "evicted", "overflow", "dead_letters"):
                self._db.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                    (key, 1 if key == "next_seq" else 0),
                )
            (self._depth,) = self._db.execute("SELECT COUNT(*) FROM records").fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"outbox {self.path}: cannot open: {exc}") from exc

    # --- writing --------------------------------------------------------------------------

    def append(self, readings: Iterable[Reading]) -> list[Record]:
        """Number and store ``readings`` in one transaction; return the records.

        Raises StorageError when the database refuses (disk full, I/O error); nothing of the
        call is then stored.
        """
        items = list(readings)
        if not items:
            return []
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    seq = self._meta("next_seq")
                    records = [Record.from_reading(seq + i, r) for i, r in enumerate(items)]
                    self._db.executemany(
                        "INSERT INTO records (seq, ts, kind, evict_class, body) VALUES (?,?,?,?,?)",
                        [
                            (
                                rec.seq,
                                rec.ts,
                                rec.kind,
                                evict_class(rec.kind, rec.data),
                                json.dumps(rec.to_dict(), separators=(",", ":"), allow_nan=False),
                            )
                            for rec in records
                        ],
                    )
                    self._set_meta("next_seq", seq + len(records))
                    depth = self._depth + len(records)
                    depth = self._evict(depth, len(records))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except (sqlite3.Error, TypeError, ValueError) as exc:
                raise StorageError(f"outbox {self.path}: append failed: {exc}") from exc
            self._depth = depth
            return records

    def _evict(self, depth: int, appended: int) -> int:
        """Inside the append transaction: bring ``depth`` down to ``max_records``."""
        excess = depth - self.max_records
        for cls in (EVICT_ROUTINE, EVICT_TELEMETRY):
            if excess <= 0:
                break
            cur = self._db.execute(
                "DELETE FROM records WHERE seq IN "
                "(SELECT seq FROM records WHERE evict_class = ? ORDER BY seq LIMIT ?)",
                (cls, excess),
            )
            removed = cur.rowcount
            if removed:
                self._add_meta("evicted", removed)
            depth -= removed
            excess -= removed
        if excess > 0:
            self._add_meta("overflow", min(excess, appended))
        return depth

    def delete(self, seqs: Collection[int]) -> int:
        """Forget records the broker acknowledged; return how many were still there."""
        if not seqs:
            return 0
        ordered = sorted(seqs)
        removed = 0
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for i in range(0, len(ordered), _CHUNK):
                        chunk = ordered[i : i + _CHUNK]
                        marks = ",".join("?" * len(chunk))
                        cur = self._db.execute(f"DELETE FROM records WHERE seq IN ({marks})", chunk)
                        removed += cur.rowcount
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StorageError(f"outbox {self.path}: delete failed: {exc}") from exc
            self._depth -= removed
        return removed

    def dead_letter(
        self, source: str, reason: str, raw: bytes, meta: Mapping[str, Any], ts: int
    ) -> None:
        """Park a frame nobody could decode, with its raw bytes and the reason."""
        meta_json = json.dumps(dict(meta), default=str, separators=(",", ":"))
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute(
                        "INSERT INTO dead_letters (ts, source, reason, raw_hex, meta) "
                        "VALUES (?,?,?,?,?)",
                        (ts, source, reason[:500], raw.hex(), meta_json),
                    )
                    self._add_meta("dead_letters", 1)
                    self._db.execute(
                        "DELETE FROM dead_letters WHERE id <= "
                        "(SELECT MAX(id) FROM dead_letters) - ?",
                        (MAX_DEAD_LETTERS,),
                    )
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StorageError(f"outbox {self.path}: dead letter failed: {exc}") from exc

    # --- reading --------------------------------------------------------------------------

    def pending(
        self,
        limit: int,
        streams: Collection[str] | None = None,
        exclude_seqs: Collection[int] = (),
    ) -> list[Record]:
        """Up to ``limit`` records in seq order, of ``streams`` (all if None), skipping
        ``exclude_seqs`` (the ones in flight)."""
        if limit <= 0:
            return []
        sql = "SELECT seq, body FROM records"
        params: list[Any] = []
        if streams is not None:
            kinds = sorted(set(streams))
            if not kinds:
                return []
            sql += f" WHERE kind IN ({','.join('?' * len(kinds))})"
            params += kinds
        sql += " ORDER BY seq"
        excluded = exclude_seqs if isinstance(exclude_seqs, set | frozenset) else set(exclude_seqs)
        out: list[Record] = []
        with self._lock:
            try:
                for seq, body in self._db.execute(sql, params):
                    if seq in excluded:
                        continue
                    d: RecordDict = json.loads(body)
                    out.append(Record.from_dict(d))
                    if len(out) >= limit:
                        break
            except sqlite3.Error as exc:
                raise StorageError(f"outbox {self.path}: read failed: {exc}") from exc
        return out

    def depth(self) -> int:
        with self._lock:
            return self._depth

    def oldest_ts(self) -> int | None:
        if self._closed is not None:
            return self._closed.oldest_ts
        with self._lock:
            row = self._db.execute("SELECT ts FROM records ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else int(row[0])

    def stats(self) -> OutboxStats:
        """Counters; after ``close()`` the last ones before closing."""
        if self._closed is not None:
            return self._closed
        with self._lock:
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            depth = self._depth
        return OutboxStats(
            depth=depth,
            accepted=meta["next_seq"] - 1,
            evicted=meta["evicted"],
            overflow=meta["overflow"],
            dead_letters=meta["dead_letters"],
            oldest_ts=self.oldest_ts(),
        )

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, ts, source, reason, raw_hex, meta FROM dead_letters "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [DeadLetter(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    def close(self) -> None:
        if self._closed is not None:
            return
        final = self.stats()
        with self._lock:
            self._db.close()
            self._closed = final

    # --- meta counters (call with the lock held, inside a transaction) ---------------------

    def _meta(self, key: str) -> int:
        (value,) = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(value)

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))

    def _add_meta(self, key: str, delta: int) -> None:
        self._db.execute("UPDATE meta SET value = value + ? WHERE key = ?", (delta, key))
