"""Persistent duplicate filter on ``(gw, seq)``.

Why two steps. MQTT QoS 1 is at-least-once: a gateway republishes a batch whose PUBACK it
missed, and the broker redelivers what the collector had not acknowledged. So the collector

1. ``filter_new(gw, records)`` — drops records whose ``(gw, seq)`` it has seen, and
2. ``commit(gw, records)`` — remembers them, called only AFTER the writer returned.

If the process dies between write and commit, the redelivered batch passes the filter and is
written again; writers are idempotent (SQLite ``INSERT OR IGNORE``, InfluxDB points keyed by
their observation time), so that costs a rewrite, never a loss. Committing *before* the write
would be the opposite trade: a crash there would drop records for good.

Memory stays bounded: the seen set lives in SQLite (the collector state db), not in a Python
set. Rows older than ``max_age_s`` (default 7 days, far beyond any broker redelivery) are
pruned; a duplicate older than that is simply rewritten, idempotently. The per-gateway
high-water mark is kept for the status view (and to notice a gateway whose ``seq`` restarted),
not to filter: a gateway may legitimately send older ``seq`` late (alarms jump the queue).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from shouhu.exceptions import StorageUnavailable
from shouhu.model import Record

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE_S = 7 * 24 * 3600
PRUNE_EVERY_COMMITS = 1000

SCHEMA = """
CREATE TABLE IF NOT EXISTS dedup_seen (
    gw TEXT NOT NULL,
    seq INTEGER NOT NULL,
    seen_ms INTEGER NOT NULL,
    PRIMARY KEY (gw, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedup_seen_age ON dedup_seen (seen_ms);
CREATE TABLE IF NOT EXISTS dedup_high_water (
    gw TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
"""


def open_state_db(path: str) -> sqlite3.Connection:
    """The collector state db (dedup, dead letters, gateway status): WAL, durable commits."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
    except (OSError, sqlite3.Error) as exc:
        raise StorageUnavailable(f"cannot open state db {path}: {exc}") from exc
    return db


class DedupFilter:
    """The ``(gw, seq)`` seen set of one collector (or of several sharing one state db)."""

    def __init__(self, path: str, *, max_age_s: float = DEFAULT_MAX_AGE_S, clock=time.time) -> None:
        self.path = path
        self.max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._commits_since_prune = 0
        self._db = open_state_db(path)
        try:
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot create dedup tables in {path}: {exc}") from exc

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def filter_new(self, gw: str, records: Sequence[Record]) -> tuple[list[Record], int]:
        """Records not seen before (first copy wins within the batch too), and the dup count."""
        if not records:
            return [], 0
        seqs = sorted({r.seq for r in records})
        seen: set[int] = set()
        with self._lock:
            try:
                for i in range(0, len(seqs), 500):  # stay below SQLite's variable limit
                    chunk = seqs[i : i + 500]
                    marks = ",".join("?" * len(chunk))
                    rows = self._db.execute(
                        f"SELECT seq FROM dedup_seen WHERE gw = ? AND seq IN ({marks})",
                        (gw, *chunk),
                    ).fetchall()
                    seen.update(s for (s,) in rows)
            except sqlite3.Error as exc:
                raise StorageUnavailable(f"dedup lookup in {self.path}: {exc}") from exc
        new: list[Record] = []
        for r in records:
            if r.seq in seen:
                continue
            seen.add(r.seq)
            new.append(r)
        return new, len(records) - len(new)

    def commit(self, gw: str, records: Sequence[Record]) -> None:
        """Remember records as stored. Call only after the writer returned (see module doc)."""
        if not records:
            return
        now = self._now_ms()
        top = max(r.seq for r in records)
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(
                        "INSERT OR IGNORE INTO dedup_seen (gw, seq, seen_ms) VALUES (?, ?, ?)",
                        [(gw, r.seq, now) for r in records],
                    )
                    self._db.execute(
                        "INSERT INTO dedup_high_water (gw, seq, updated_ms) VALUES (?, ?, ?)"
                        " ON CONFLICT (gw) DO UPDATE SET seq = max(seq, excluded.seq),"
                        " updated_ms = excluded.updated_ms",
                        (gw, top, now),
                    )
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StorageUnavailable(f"dedup commit in {self.path}: {exc}") from exc
            self._commits_since_prune += 1
            due = self._commits_since_prune >= PRUNE_EVERY_COMMITS
        if due:
            self.prune()

    def prune(self) -> int:
        """Forget seen entries older than ``max_age_s``; returns how many were removed."""
        cutoff = self._now_ms() - int(self.max_age_s * 1000)
        with self._lock:
            self._commits_since_prune = 0
            try:
                cur = self._db.execute("DELETE FROM dedup_seen WHERE seen_ms < ?", (cutoff,))
            except sqlite3.Error as exc:
                log.warning("dedup prune failed (will retry later): %s", exc)
                return 0
        return int(cur.rowcount)

    def high_water(self) -> dict[str, int]:
        """Highest stored ``seq`` per gateway."""
        with self._lock:
            rows = self._db.execute("SELECT gw, seq FROM dedup_high_water").fetchall()
        return {gw: int(seq) for gw, seq in rows}

    def seen_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM dedup_seen").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
