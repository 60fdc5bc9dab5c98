"""The dead-letter store: what broke the wire contract or was refused by the database.

Bad input must never crash the collector nor vanish silently. Each parked message keeps its
topic, gateway, a stable ``reason`` (for counting and alerting) and a ``detail`` (the first
thing a person needs to fix the sender), plus the raw bytes. Each reason is logged once per
process; after that it is only counted, so a misbehaving gateway cannot flood the log.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Final

from collector.dedup import open_state_db
from shouhu.exceptions import StorageUnavailable

log = logging.getLogger(__name__)

# Stable reasons; anything else is accepted too, but these are what the collector produces.
BAD_TOPIC: Final = "bad-topic"
BAD_ENVELOPE: Final = "bad-envelope"
BAD_RECORD: Final = "bad-record"
BAD_STATUS: Final = "bad-status"
STORAGE_REJECTED: Final = "storage-rejected"

SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    topic TEXT NOT NULL,
    gw TEXT,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_reason ON dead_letters (reason);
"""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One parked message (or one record of a batch, as JSON bytes)."""

    id: int
    ts: int  # when it was parked, ms since the epoch
    topic: str
    gw: str | None
    reason: str
    detail: str
    payload: bytes


class DeadLetters:
    """SQLite-backed dead letters in the collector state db."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._logged: set[str] = set()
        self._session_counts: Counter[str] = Counter()
        self._db = open_state_db(path)
        try:
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot create dead_letters in {path}: {exc}") from exc

    def add(self, *, topic: str, gw: str | None, reason: str, detail: str, payload: bytes) -> None:
        """Park one message. Raises StorageUnavailable if the state db cannot take it now."""
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO dead_letters (ts, topic, gw, reason, detail, payload)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (int(time.time() * 1000), topic, gw, reason, detail, bytes(payload)),
                )
            except sqlite3.Error as exc:
                raise StorageUnavailable(f"dead letter to {self.path}: {exc}") from exc
            self._session_counts[reason] += 1
            first = reason not in self._logged
            self._logged.add(reason)
        if first:
            log.warning(
                "dead letter (%s) from %s on %s: %s (further %s are only counted)",
                reason,
                gw or "?",
                topic,
                detail,
                reason,
            )

    def session_counts(self) -> dict[str, int]:
        """Dead letters parked by this process, per reason."""
        with self._lock:
            return dict(self._session_counts)

    def count(self, reason: str | None = None) -> int:
        """All parked messages in the store (optionally of one reason)."""
        sql, params = "SELECT COUNT(*) FROM dead_letters", ()
        if reason is not None:
            sql, params = sql + " WHERE reason = ?", (reason,)  # type: ignore[assignment]
        with self._lock:
            return int(self._db.execute(sql, params).fetchone()[0])

    def counts(self) -> dict[str, int]:
        """All parked messages in the store, per reason."""
        with self._lock:
            rows = self._db.execute(
                "SELECT reason, COUNT(*) FROM dead_letters GROUP BY reason ORDER BY reason"
            ).fetchall()
        return {r: int(n) for r, n in rows}

    def list(self, *, reason: str | None = None, limit: int = 50) -> list[DeadLetter]:
        """Newest first."""
        sql = "SELECT id, ts, topic, gw, reason, detail, payload FROM dead_letters"
        params: tuple[object, ...] = ()
        if reason is not None:
            sql += " WHERE reason = ?"
            params = (reason,)
        sql += " ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*params, limit)).fetchall()
        return [DeadLetter(i, ts, t, g, r, d, bytes(p)) for i, ts, t, g, r, d, p in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
